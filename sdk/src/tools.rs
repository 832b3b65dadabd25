//! Host tools: calls the host mediates, checks against policy and counts.
//!
//! Which tools an agent may call is decided by the workflow (`tools = [...]` on the agent),
//! never by the guest; an ungranted call fails with [`ToolError::Denied`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::wasm_orch::agent::tools::ToolError as WitToolError;

/// Why a tool call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolError {
    /// The host has no tool of that name.
    NotFound(String),
    /// Policy does not grant this agent the tool, or its quota is spent.
    Denied(String),
    /// The tool rejected the input.
    InvalidInput(String),
    /// The tool ran and failed.
    Failed(String),
    /// The input could not be serialized or the output did not have the expected shape.
    Encoding(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(m) => write!(f, "tool not found: {m}"),
            Self::Denied(m) => write!(f, "tool call denied: {m}"),
            Self::InvalidInput(m) => write!(f, "tool rejected its input: {m}"),
            Self::Failed(m) => write!(f, "tool failed: {m}"),
            Self::Encoding(m) => write!(f, "tool data: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl From<WitToolError> for ToolError {
    fn from(e: WitToolError) -> Self {
        match e {
            WitToolError::NotFound(m) => Self::NotFound(m),
            WitToolError::Denied(m) => Self::Denied(m),
            WitToolError::InvalidInput(m) => Self::InvalidInput(m),
            WitToolError::Failed(m) => Self::Failed(m),
        }
    }
}

/// Call the tool `name` with a typed input; returns its typed output.
pub fn invoke<I, O>(name: &str, input: &I) -> Result<O, ToolError>
where
    I: Serialize + ?Sized,
    O: DeserializeOwned,
{
    let input = serde_json::to_string(input).map_err(|e| ToolError::Encoding(e.to_string()))?;
    let output = invoke_raw(name, &input)?;
    serde_json::from_str(&output).map_err(|e| ToolError::Encoding(e.to_string()))
}

/// Call the tool `name` with JSON text; returns its JSON text.
pub fn invoke_raw(name: &str, input: &str) -> Result<String, ToolError> {
    crate::host::tool(name, input).map_err(ToolError::from)
}

/// Wait for `duration` in the host (the built-in `sleep` tool): the guest uses no fuel while it
/// waits, and the host can run other tasks meanwhile.
pub fn sleep(duration: Duration) -> Result<(), ToolError> {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let _: serde_json::Value = invoke("sleep", &serde_json::json!({ "ms": ms }))?;
    Ok(())
}
