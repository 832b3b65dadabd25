//! `counter`: increments the blackboard key `key` `times` times, each with a read and a
//! compare-and-swap, so concurrent counters never lose an update.

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, blackboard, status};

#[derive(Deserialize)]
struct Params {
    key: String,
    times: u64,
}

struct Counter;

impl Agent for Counter {
    type Params = Params;
    type Output = u64;
    const CAPABILITIES: &'static [&'static str] = &["blackboard.count"];

    fn run(cx: Context<Params>) -> Result<u64, Error> {
        let mut last = 0;
        for i in 0..cx.params.times {
            last = blackboard::update(&cx.params.key, |n: Option<u64>| n.unwrap_or(0) + 1)?.value;
            if i % 100 == 99 {
                status::progress((i + 1) as f32 / cx.params.times as f32, format!("{last}"));
            }
        }
        Ok(last)
    }
}

wasm_orch_sdk::export!(Counter);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::testing::TestRun;

    use super::Counter;

    #[test]
    fn counts_on_from_what_the_blackboard_holds() {
        let outcome = TestRun::new(json!({ "key": "shared/n", "times": 250 }))
            .blackboard("shared/n", 750)
            .run::<Counter>();
        assert_eq!(outcome.output::<u64>(), 1000);
        assert_eq!(outcome.blackboard["shared/n"], 1000);
        assert_eq!(outcome.progress.len(), 2, "every 100 increments");
    }
}
