//! Host tools: what a guest may call through the `tools` interface.
//!
//! Owns the [`Tool`] trait, the built-in tools and the per-task check of grants. A guest calls
//! a tool by name; the host decides (from the workflow's grants, never from the guest) whether
//! the agent may, then calls it with the identity of the task.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

/// A boxed future, as returned by [`Tool::call`].
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Json, ToolError>> + Send + 'a>>;

/// A tool the host offers to guests.
///
/// ```
/// use wasm_orch::{Tool, ToolCall, ToolError, ToolFuture};
///
/// /// Echoes its input back.
/// struct Echo;
///
/// impl Tool for Echo {
///     fn call(&self, call: ToolCall) -> ToolFuture<'_> {
///         Box::pin(async move { Ok(call.input) })
///     }
/// }
/// ```
pub trait Tool: Send + Sync + 'static {
    /// Runs the tool. Dropping the future cancels the call (the task timed out or the run was
    /// cancelled), so hold no state that must outlive it.
    fn call(&self, call: ToolCall) -> ToolFuture<'_>;
}

/// One call of a tool: who calls and with what.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolCall {
    pub tenant: String,
    pub run_id: String,
    pub node: String,
    pub agent: String,
    pub attempt: u32,
    /// The guest's input (JSON).
    pub input: Json,
}

/// Why a tool call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolError {
    /// The input does not suit the tool.
    InvalidInput(String),
    /// The tool ran and failed.
    Failed(String),
    /// The call is not allowed.
    Denied(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::Failed(m) => write!(f, "failed: {m}"),
            Self::Denied(m) => write!(f, "denied: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// The tools of a runtime, by name.
#[derive(Clone)]
pub(crate) struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    /// The built-in tools: `sleep`.
    pub(crate) fn with_builtins() -> Self {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        tools.insert("sleep".to_owned(), Arc::new(Sleep));
        Self { tools }
    }

    pub(crate) fn insert(&mut self, name: String, tool: Arc<dyn Tool>) {
        self.tools.insert(name, tool);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}

/// `sleep`: waits `{"ms": N}` milliseconds (at most an hour) without using guest fuel.
struct Sleep;

const MAX_SLEEP: Duration = Duration::from_secs(3600);

impl Tool for Sleep {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(async move {
            let ms = call.input.get("ms").and_then(Json::as_u64).ok_or_else(|| {
                ToolError::InvalidInput("expected {\"ms\": <milliseconds>}".into())
            })?;
            let duration = Duration::from_millis(ms);
            if duration > MAX_SLEEP {
                return Err(ToolError::InvalidInput(format!(
                    "at most {} ms",
                    MAX_SLEEP.as_millis()
                )));
            }
            tokio::time::sleep(duration).await;
            Ok(serde_json::json!({ "slept_ms": ms }))
        })
    }
}
