//! `wait`: waits `ms` milliseconds in a host tool call, like an agent awaiting a remote API.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
struct Params {
    ms: u64,
}

#[derive(Serialize)]
struct Waited {
    waited_ms: u64,
}

struct Wait;

impl Agent for Wait {
    type Params = Params;
    type Output = Waited;
    const CAPABILITIES: &'static [&'static str] = &["io.wait"];

    fn run(cx: Context<Params>) -> Result<Waited, Error> {
        status::progress(0.0, format!("waiting {} ms", cx.params.ms));
        tools::sleep(Duration::from_millis(cx.params.ms))?;
        status::progress(1.0, "done");
        Ok(Waited {
            waited_ms: cx.params.ms,
        })
    }
}

wasm_orch_sdk::export!(Wait);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Wait;

    #[test]
    fn waits_in_the_sleep_tool() {
        let outcome = TestRun::new(json!({ "ms": 250 }))
            .sleep_tool()
            .run::<Wait>();
        assert_eq!(outcome.output::<Value>(), json!({ "waited_ms": 250 }));
        assert_eq!(outcome.tool_calls.len(), 1);
        assert_eq!(outcome.tool_calls[0].0, "sleep");
        assert_eq!(outcome.progress.len(), 2);
    }

    #[test]
    fn without_the_sleep_tool_it_fails() {
        let outcome = TestRun::new(json!({ "ms": 10 })).run::<Wait>();
        assert!(
            outcome.error().message().contains("not granted"),
            "{}",
            outcome.error()
        );
    }
}
