//! Host tools: what a guest may call through the `tools` interface.
//!
//! Owns the [`Tool`] trait, the built-in tools and the per-task check of grants. A guest calls
//! a tool by name; the host decides (from the workflow's grants, never from the guest) whether
//! the agent may, then calls it with the identity of the task.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod access;
mod host;
mod http_get;
mod kv;
mod sleep;

#[cfg(feature = "nats")]
pub(crate) use self::access::ToolRelay;
pub(crate) use self::access::{Caller, RunQuotas, ToolAccess};
#[cfg(feature = "nats")]
pub(crate) use self::host::invoke;
pub(crate) use self::host::{ToolsView, add_to_linker};
use self::http_get::HttpGet;
use self::kv::Kv;
#[cfg(feature = "fuzzing")]
pub(crate) use self::kv::parse as parse_kv_request;
use self::sleep::Sleep;

use serde_json::Value as Json;

use crate::redact::Redactor;

/// A boxed future, as returned by [`Tool::call`].
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Json, ToolError>> + Send + 'a>>;

/// A tool the host offers to guests.
///
/// ```
/// use wasm_orch::tools::{Tool, ToolCall, ToolError, ToolFuture};
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
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolCall {
    pub tenant: String,
    pub run_id: String,
    pub node: String,
    pub agent: String,
    pub attempt: u32,
    /// The guest's input (JSON).
    pub input: Json,
    /// The secret values handed to the run's guests so far.
    pub(crate) secrets: Arc<Redactor>,
}

impl ToolCall {
    /// Whether `value` holds a secret value that was handed to a guest of this run. A tool
    /// that keeps or forwards what it is given (beyond the call itself) should refuse it:
    /// what it keeps would outlive the run's redaction.
    pub fn holds_secret(&self, value: &Json) -> bool {
        !self.secrets.is_empty()
            && matches!(
                self.secrets.text(&value.to_string()),
                std::borrow::Cow::Owned(_)
            )
    }
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
    pub(crate) fn empty() -> Self {
        Self {
            tools: BTreeMap::new(),
        }
    }

    /// The built-in tools: `sleep`, `kv` (kept in the journal's database) and `http_get` (reaching
    /// only the hosts each tenant's policy allows).
    pub(crate) fn with_builtins(
        journal: Arc<crate::journal::Journal>,
        http_allow: HashMap<String, Vec<String>>,
    ) -> Self {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        tools.insert("sleep".to_owned(), Arc::new(Sleep));
        tools.insert("kv".to_owned(), Arc::new(Kv::new(journal)));
        tools.insert("http_get".to_owned(), Arc::new(HttpGet::new(http_allow)));
        Self { tools }
    }

    pub(crate) fn insert(&mut self, name: String, tool: Arc<dyn Tool>) {
        self.tools.insert(name, tool);
    }

    /// Adds (or replaces) every tool of `other`.
    pub(crate) fn extend(&mut self, other: ToolRegistry) {
        self.tools.extend(other.tools);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}
