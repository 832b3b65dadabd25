//! `add-v02`: a component built against the previous contract, `wasm-orch:agent@0.2.0`
//! (`wit/0.2/`), with wit-bindgen alone, as components were before 0.3. The host must keep
//! running it unchanged.
//!
//! The sum of its parameters `a` and `b` and of every upstream output. It reports progress,
//! writes its sum to the blackboard and reads it back (so it uses the 0.2 imports), and
//! fails naming every upstream failure by the status and kind strings 0.2 gives.

use serde_json::Value;

wit_bindgen::generate!({
    world: "sub-agent",
    path: "../../wit/0.2",
});

use exports::wasm_orch::agent::agent::{Guest, Info};
use wasm_orch::agent::types::{AgentError, TaskInput, UpstreamOutcome};
use wasm_orch::agent::{blackboard, status};

struct AddV02;

impl Guest for AddV02 {
    fn describe() -> Info {
        Info {
            name: "add-v02".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Adds numbers, built against wasm-orch:agent@0.2.0".into(),
            capabilities: vec!["math.add".into()],
        }
    }

    fn run(input: TaskInput) -> Result<String, AgentError> {
        let params: Value = serde_json::from_str(&input.params)
            .map_err(|e| AgentError::InvalidInput(format!("parameters: {e}")))?;
        let mut sum = ["a", "b"]
            .iter()
            .map(|k| params.get(k).and_then(Value::as_i64).unwrap_or(0))
            .sum::<i64>();
        let mut failed = Vec::new();
        for up in &input.upstream {
            match &up.outcome {
                UpstreamOutcome::Output(json) => {
                    sum += serde_json::from_str::<i64>(json).map_err(|e| {
                        AgentError::InvalidInput(format!("upstream `{}`: {e}", up.node))
                    })?;
                }
                // In 0.2, status and kind are strings.
                UpstreamOutcome::Failed(f) => failed.push(format!(
                    "`{}` ended {} ({}): {}",
                    up.node, f.status, f.kind, f.message
                )),
            }
        }
        if !failed.is_empty() {
            return Err(AgentError::Failed(failed.join("; ")));
        }
        status::progress(0.5, &format!("sum = {sum}"));
        let version = blackboard::put("sum", &sum.to_string())
            .map_err(|e| AgentError::Failed(format!("blackboard put: {e:?}")))?;
        let read = blackboard::get("sum")
            .map_err(|e| AgentError::Failed(format!("blackboard get: {e:?}")))?
            .ok_or_else(|| AgentError::Failed("blackboard: `sum` is gone".into()))?;
        if read.version != version || read.value != sum.to_string() {
            return Err(AgentError::Failed(format!(
                "blackboard: wrote {sum} at version {version}, read {} at {}",
                read.value, read.version
            )));
        }
        status::progress(1.0, "done");
        Ok(sum.to_string())
    }
}

export!(AddV02);
