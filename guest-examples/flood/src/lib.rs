//! `flood`: misbehaves by calling the status interface in a tight loop (progress, logs and
//! partial results); the host must keep its event stream bounded.

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    #[serde(default = "default_iterations")]
    iterations: u64,
}

fn default_iterations() -> u64 {
    200_000
}

struct Flood;

impl Agent for Flood {
    type Params = Params;
    type Output = u64;

    fn run(cx: Context<Params>) -> Result<u64, Error> {
        let n = cx.params.iterations;
        for i in 0..n {
            status::progress(i as f32 / n as f32, "flooding");
            status::info(format!("flood line {i}"));
            status::partial(&i);
        }
        Ok(n)
    }
}

wasm_orch_sdk::export!(Flood);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::testing::TestRun;

    use super::Flood;

    #[test]
    fn emits_a_progress_a_log_and_a_partial_per_iteration() {
        let outcome = TestRun::new(json!({ "iterations": 1000 })).run::<Flood>();
        assert_eq!(outcome.output::<u64>(), 1000);
        assert_eq!(outcome.progress.len(), 1000);
        assert_eq!(outcome.logs.len(), 1000);
        assert_eq!(outcome.partials.len(), 1000);
        assert_eq!(outcome.partials[999], json!(999));
        assert_eq!(outcome.logs[7].1, "flood line 7");
    }
}
