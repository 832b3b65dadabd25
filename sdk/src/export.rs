//! The [`Agent`] trait and the glue between it and the exported WIT `agent` interface.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::exports::wasm_orch::agent::agent::Info;
use crate::wit::wasm_orch::agent::types::{AgentError, TaskInput};
use crate::{Context, Error};

/// A sub-agent: turns typed parameters (and upstream outputs) into a typed output.
///
/// Export it with [`export!`](crate::export!). The agent's name, version and description
/// shown by `wasm-orch inspect` come from the guest crate's `Cargo.toml`.
pub trait Agent {
    /// The task's parameters (`with` in the workflow file), deserialized from JSON.
    /// A mismatch ends the task with `invalid-input` before [`Agent::run`] is called.
    type Params: DeserializeOwned;

    /// The task's output, serialized to JSON for the host and for dependent tasks.
    type Output: Serialize;

    /// What this agent can do (for example `math.add`), for capability-based assignment.
    const CAPABILITIES: &'static [&'static str] = &[];

    /// Run one task.
    fn run(cx: Context<Self::Params>) -> Result<Self::Output, Error>;
}

/// Exports an [`Agent`] implementation as this component's `wasm-orch:agent/agent`.
///
/// Call it once, at the top level of the guest crate: `wasm_orch_sdk::export!(MyAgent);`.
#[macro_export]
macro_rules! export {
    ($agent:ty) => {
        #[doc(hidden)]
        pub struct __WasmOrchExport;

        impl $crate::wit::exports::wasm_orch::agent::agent::Guest for __WasmOrchExport {
            fn describe() -> $crate::wit::exports::wasm_orch::agent::agent::Info {
                $crate::__private::describe::<$agent>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }

            fn run(
                input: $crate::wit::wasm_orch::agent::types::TaskInput,
            ) -> ::core::result::Result<
                ::std::string::String,
                $crate::wit::wasm_orch::agent::types::AgentError,
            > {
                $crate::__private::run::<$agent>(input)
            }
        }

        $crate::wit::__export_sub_agent!(__WasmOrchExport with_types_in $crate::wit);
    };
}

#[doc(hidden)]
pub fn describe<A: Agent>(name: &str, version: &str, description: &str) -> Info {
    Info {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        capabilities: A::CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
    }
}

#[doc(hidden)]
pub fn run<A: Agent>(input: TaskInput) -> Result<String, AgentError> {
    let params: A::Params = serde_json::from_str(&input.params)
        .map_err(|e| AgentError::InvalidInput(format!("parameters do not fit this agent: {e}")))?;
    let cx = Context::new(params, input.task, input.upstream);
    let output = A::run(cx).map_err(Error::into_wit)?;
    serde_json::to_string(&output)
        .map_err(|e| AgentError::Failed(format!("the output could not be serialized: {e}")))
}
