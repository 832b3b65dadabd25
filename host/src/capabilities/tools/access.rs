//! The tools policy: which tools a task may call (its agent's grant, within its tenant's
//! policy), how many calls its run may make (quotas), and how fast its tenant may call
//! (rates). The host implementation checks every call against this before making it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{ToolCall, ToolRegistry};
use crate::govern::FuelBucket;
use crate::model::Name;
use crate::policy::TenantAccess;
use crate::redact::Redactor;

/// The tools one task may call, and who it is when it calls them.
#[derive(Debug, Clone)]
pub(crate) struct ToolAccess {
    pub(crate) registry: Arc<ToolRegistry>,
    /// Tools the agent is granted (by its registry or workflow).
    pub(crate) granted: Arc<[String]>,
    /// What the tenant's policy allows.
    pub(crate) tenant: Arc<TenantAccess>,
    /// Calls made by the run so far, per tool.
    pub(crate) quotas: Arc<RunQuotas>,
    /// The tenant's call-rate buckets, per tool.
    pub(crate) rates: Arc<HashMap<String, Arc<FuelBucket>>>,
    /// Who calls: the task's identity, from the host.
    pub(crate) caller: Caller,
    /// On a worker: where calls go instead (the coordinator, which checks them as above).
    pub(crate) relay: Option<Arc<dyn ToolRelay>>,
}

/// Makes a task's tool calls elsewhere: a worker's calls go home to their coordinator.
pub(crate) trait ToolRelay: Send + Sync + std::fmt::Debug {
    fn invoke(
        &self,
        name: String,
        input: String,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<String, crate::wit::v3::wasm_orch::agent::tools::ToolError>,
                > + Send
                + '_,
        >,
    >;
}

/// The identity of the task that calls a tool (set by the host, never by the guest).
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub(crate) tenant: Name,
    pub(crate) run_id: Name,
    pub(crate) node: Name,
    pub(crate) agent: Name,
    pub(crate) attempt: u32,
    /// The secret values handed to the run's guests so far.
    pub(crate) secrets: Arc<Redactor>,
}

impl Caller {
    /// A call of a tool by this task with `input`.
    pub(crate) fn call(&self, input: serde_json::Value) -> ToolCall {
        ToolCall {
            tenant: self.tenant.to_string(),
            run_id: self.run_id.to_string(),
            node: self.node.to_string(),
            agent: self.agent.to_string(),
            attempt: self.attempt,
            input,
            secrets: Arc::clone(&self.secrets),
        }
    }
}

impl ToolAccess {
    /// No tools at all (for `describe`).
    pub(crate) fn none() -> Self {
        Self {
            registry: Arc::new(ToolRegistry::empty()),
            granted: Arc::from([]),
            tenant: Arc::default(),
            quotas: Arc::default(),
            rates: Arc::default(),
            caller: Caller::default(),
            relay: None,
        }
    }

    /// A task's tools on a worker: every call goes to `relay`.
    #[cfg(feature = "nats")]
    pub(crate) fn relayed(relay: Arc<dyn ToolRelay>) -> Self {
        Self {
            relay: Some(relay),
            ..Self::none()
        }
    }

    /// The tools this task may call: its agent's grant, within its tenant's.
    pub(crate) fn effective(&self) -> Vec<String> {
        self.granted
            .iter()
            .filter(|t| self.tenant.allows_tool(t))
            .cloned()
            .collect()
    }
}

/// The calls a run has made of each tool (for per-run quotas).
#[derive(Debug, Default)]
pub(crate) struct RunQuotas {
    used: Mutex<HashMap<String, u64>>,
}

impl RunQuotas {
    /// Counts a call of `tool`, unless `limit` calls were made already.
    pub(crate) fn take(&self, tool: &str, limit: Option<u64>) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let count = used.entry(tool.to_owned()).or_insert(0);
        if limit.is_some_and(|limit| *count >= limit) {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_run_quotas_count_calls() {
        let q = RunQuotas::default();
        assert!(q.take("kv", Some(2)));
        assert!(q.take("kv", Some(2)));
        assert!(!q.take("kv", Some(2)));
        assert!(q.take("other", None));
    }
}
