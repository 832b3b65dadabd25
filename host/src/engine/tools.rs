//! Host side of `wasm-orch:agent/tools`: every call is checked against the agent's grant, the
//! tenant's policy, the run's quota and the tenant's rate limit, then made with the identity of
//! the task (never the guest's word for it), and every call, allowed or denied, is an audit
//! record. Dropping the call (timeout, cancel) drops the tool's future.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasData, Linker};

use super::bindings::wasm_orch::agent::tools as wit;
use super::state::{SharedEmitter, TaskState, lock};
use crate::bus::{AuditResource, Decision};
use crate::govern::FuelBucket;
use crate::policy::TenantAccess;
use crate::tools::{ToolCall, ToolError, ToolRegistry};

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
    pub(crate) caller: ToolCall,
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
            caller: ToolCall::default(),
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
    fn take(&self, tool: &str, limit: Option<u64>) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let count = used.entry(tool.to_owned()).or_insert(0);
        if limit.is_some_and(|limit| *count >= limit) {
            return false;
        }
        *count += 1;
        true
    }
}

pub(crate) struct ToolsView<'a> {
    access: &'a ToolAccess,
    events: &'a SharedEmitter,
}

struct HasTools;

impl HasData for HasTools {
    type Data<'a> = ToolsView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<TaskState, HasTools>(linker, |s| ToolsView {
        access: &s.tools,
        events: &s.events,
    })
}

impl ToolsView<'_> {
    fn audit(&self, resource: AuditResource, tool: &str, decision: Decision, reason: &str) {
        lock(self.events).audit(resource, tool, decision, reason);
    }

    fn deny(&self, resource: AuditResource, tool: &str, reason: String) -> wit::ToolError {
        self.audit(resource, tool, Decision::Denied, &reason);
        wit::ToolError::Denied(reason)
    }
}

impl wit::Host for ToolsView<'_> {
    async fn invoke(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, wit::ToolError>> {
        let access = self.access;
        let Some(tool) = access.registry.get(&name) else {
            let reason = format!("no tool named `{name}`");
            self.audit(AuditResource::Tool, &name, Decision::Denied, &reason);
            return Ok(Err(wit::ToolError::NotFound(reason)));
        };
        if !access.granted.contains(&name) {
            let reason = format!(
                "agent `{}` is not granted tool `{name}`",
                access.caller.agent
            );
            return Ok(Err(self.deny(AuditResource::Tool, &name, reason)));
        }
        if !access.tenant.allows_tool(&name) {
            let reason = format!(
                "tenant `{}` may not use tool `{name}`",
                access.caller.tenant
            );
            return Ok(Err(self.deny(AuditResource::Tool, &name, reason)));
        }
        let limit = access
            .tenant
            .tool_limits
            .get(&name)
            .copied()
            .unwrap_or_default();
        if !access.quotas.take(&name, limit.per_run) {
            let reason = format!(
                "quota spent: {} calls of `{name}` per run",
                limit.per_run.unwrap_or(0)
            );
            return Ok(Err(self.deny(AuditResource::Quota, &name, reason)));
        }
        if let Some(wait) = access.rates.get(&name).and_then(|bucket| bucket.draw(1)) {
            self.audit(
                AuditResource::Quota,
                &name,
                Decision::Allowed,
                &format!("rate limited: waited {} ms", wait.as_millis()),
            );
            tokio::time::sleep(wait).await;
        }
        let input = match serde_json::from_str(&input) {
            Ok(input) => input,
            Err(e) => {
                let reason = format!("input is not JSON: {e}");
                self.audit(AuditResource::Tool, &name, Decision::Denied, &reason);
                return Ok(Err(wit::ToolError::InvalidInput(reason)));
            }
        };
        let call = ToolCall {
            input,
            ..access.caller.clone()
        };
        let result = tool.call(call).await;
        Ok(match result {
            Ok(output) => {
                self.audit(AuditResource::Tool, &name, Decision::Allowed, "called");
                Ok(output.to_string())
            }
            Err(ToolError::Denied(reason)) => Err(self.deny(AuditResource::Tool, &name, reason)),
            Err(ToolError::InvalidInput(m)) => {
                self.audit(
                    AuditResource::Tool,
                    &name,
                    Decision::Allowed,
                    &format!("called; the tool rejected its input: {m}"),
                );
                Err(wit::ToolError::InvalidInput(m))
            }
            Err(ToolError::Failed(m)) => {
                self.audit(
                    AuditResource::Tool,
                    &name,
                    Decision::Allowed,
                    &format!("called; the tool failed: {m}"),
                );
                Err(wit::ToolError::Failed(m))
            }
        })
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
