//! `add`: the sum of its parameters `a` and `b` and of every upstream output.

use std::time::Duration;

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    a: i64,
    #[serde(default)]
    b: i64,
    /// Simulated latency (a host `sleep` call), to make the schedule visible.
    delay_ms: Option<u64>,
}

struct Add;

impl Agent for Add {
    type Params = Params;
    type Output = i64;
    const CAPABILITIES: &'static [&'static str] = &["math.add"];

    fn run(cx: Context<Params>) -> Result<i64, Error> {
        if let Some(ms) = cx.params.delay_ms {
            status::progress(0.0, "thinking");
            tools::sleep(Duration::from_millis(ms))?;
        }
        let sum = [cx.params.a, cx.params.b]
            .into_iter()
            .chain(cx.upstream_all::<i64>()?)
            .try_fold(0i64, i64::checked_add)
            .ok_or_else(|| Error::invalid_input("the sum overflows a 64-bit integer"))?;
        status::progress(1.0, format!("sum = {sum}"));
        Ok(sum)
    }
}

wasm_orch_sdk::export!(Add);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::ErrorKind;
    use wasm_orch_sdk::testing::TestRun;

    use super::Add;

    #[test]
    fn adds_its_parameters_and_every_upstream_output() {
        let outcome = TestRun::new(json!({ "a": 1, "b": 2 }))
            .upstream("left", 10)
            .upstream("right", 100)
            .run::<Add>();
        assert_eq!(outcome.output::<i64>(), 113);
        assert_eq!(
            outcome.progress.last().map(|p| p.1.as_str()),
            Some("sum = 113")
        );
    }

    #[test]
    fn sleeps_in_the_host_when_asked_for_latency() {
        let outcome = TestRun::new(json!({ "a": 3, "delay_ms": 400 }))
            .sleep_tool()
            .run::<Add>();
        assert_eq!(outcome.output::<i64>(), 3);
        assert_eq!(
            outcome.tool_calls,
            vec![("sleep".to_owned(), json!({ "ms": 400 }))]
        );
        // Without the grant, the call is denied and the task fails.
        let denied = TestRun::new(json!({ "delay_ms": 1 })).run::<Add>();
        assert_eq!(denied.error().kind(), ErrorKind::Failed);
    }

    #[test]
    fn an_overflow_is_invalid_input_not_a_panic() {
        let outcome = TestRun::new(json!({ "a": i64::MAX, "b": 1 })).run::<Add>();
        assert_eq!(outcome.error().kind(), ErrorKind::InvalidInput);
        let wrong = TestRun::new(json!({ "a": "one" })).run::<Add>();
        assert_eq!(wrong.error().kind(), ErrorKind::InvalidInput);
    }
}
