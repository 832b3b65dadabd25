//! `collect`: gathers how its upstream tasks ended, outputs and failures alike. Run with
//! `on_upstream_failure = "run"`, it reports on a workflow whose optional parts failed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use wasm_orch_sdk::{Agent, Context, Error, NoParams};

#[derive(Serialize)]
struct Collected {
    succeeded: BTreeMap<String, Value>,
    failed: BTreeMap<String, String>,
}

struct Collect;

impl Agent for Collect {
    type Params = NoParams;
    type Output = Collected;
    const CAPABILITIES: &'static [&'static str] = &["collect"];

    fn run(cx: Context<NoParams>) -> Result<Collected, Error> {
        let mut collected = Collected {
            succeeded: BTreeMap::new(),
            failed: BTreeMap::new(),
        };
        for up in cx.upstream_outcomes::<Value>()? {
            match up.outcome {
                Ok(output) => {
                    collected.succeeded.insert(up.node, output);
                }
                Err(f) => {
                    collected
                        .failed
                        .insert(up.node, format!("{}: {}", f.status, f.message));
                }
            }
        }
        Ok(collected)
    }
}

wasm_orch_sdk::export!(Collect);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;
    use wasm_orch_sdk::{FailureKind, TaskStatus};

    use super::Collect;

    #[test]
    fn reports_outputs_and_failures_by_their_contract_names() {
        let out: Value = TestRun::new(json!({}))
            .upstream("left", 6)
            .upstream_failed(
                "right",
                TaskStatus::OutOfFuel,
                FailureKind::OutOfFuel,
                "fuel ran out",
            )
            .run::<Collect>()
            .output();
        assert_eq!(out["succeeded"], json!({ "left": 6 }));
        assert_eq!(
            out["failed"],
            json!({ "right": "out-of-fuel: fuel ran out" })
        );
    }
}
