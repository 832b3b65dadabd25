//! Host side of `wasm-orch:agent/tools`: grants checked, then the tool called with the task's
//! identity. Dropping the call (timeout, cancel) drops the tool's future.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::bindings::wasm_orch::agent::tools as wit;
use super::state::TaskState;
use crate::tools::{ToolCall, ToolError, ToolRegistry};

/// The tools one task may call, and who it is when it calls them.
#[derive(Debug, Clone)]
pub(crate) struct ToolAccess {
    pub(crate) registry: Arc<ToolRegistry>,
    pub(crate) granted: Arc<[String]>,
    pub(crate) caller: ToolCall,
}

pub(crate) struct ToolsView<'a>(&'a ToolAccess);

struct HasTools;

impl HasData for HasTools {
    type Data<'a> = ToolsView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<TaskState, HasTools>(linker, |s| ToolsView(&s.tools))
}

impl wit::Host for ToolsView<'_> {
    async fn invoke(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, wit::ToolError>> {
        let access = self.0;
        let Some(tool) = access.registry.get(&name) else {
            return Ok(Err(wit::ToolError::NotFound(format!(
                "no tool named `{name}`"
            ))));
        };
        if !access.granted.contains(&name) {
            return Ok(Err(wit::ToolError::Denied(format!(
                "agent `{}` is not granted tool `{name}`",
                access.caller.agent
            ))));
        }
        let input = match serde_json::from_str(&input) {
            Ok(input) => input,
            Err(e) => {
                return Ok(Err(wit::ToolError::InvalidInput(format!(
                    "input is not JSON: {e}"
                ))));
            }
        };
        let call = ToolCall {
            input,
            ..access.caller.clone()
        };
        Ok(match tool.call(call).await {
            Ok(output) => Ok(output.to_string()),
            Err(ToolError::InvalidInput(m)) => Err(wit::ToolError::InvalidInput(m)),
            Err(ToolError::Failed(m)) => Err(wit::ToolError::Failed(m)),
            Err(ToolError::Denied(m)) => Err(wit::ToolError::Denied(m)),
        })
    }
}
