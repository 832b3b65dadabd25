//! `noop`: does nothing, so what a run of it costs is the host's own per-task overhead.

use wasm_orch_sdk::{Agent, Context, Error, NoParams};

struct Noop;

impl Agent for Noop {
    type Params = NoParams;
    type Output = ();

    fn run(_cx: Context<NoParams>) -> Result<(), Error> {
        Ok(())
    }
}

wasm_orch_sdk::export!(Noop);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Noop;

    #[test]
    fn does_nothing_and_says_nothing() {
        let outcome = TestRun::new(json!({})).run::<Noop>();
        assert_eq!(outcome.output::<Value>(), Value::Null);
        assert!(outcome.progress.is_empty() && outcome.partials.is_empty());
        assert!(outcome.logs.is_empty() && outcome.tool_calls.is_empty());
    }

    #[test]
    fn refuses_parameters_that_are_not_json() {
        let outcome = TestRun::with_raw_params("{not json").run::<Noop>();
        assert_eq!(
            outcome.error().kind(),
            wasm_orch_sdk::ErrorKind::InvalidInput
        );
    }
}
