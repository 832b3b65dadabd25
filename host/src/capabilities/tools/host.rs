//! Host side of `wasm-orch:agent/tools`: every call is checked against the agent's grant, the
//! tenant's policy, the run's quota and the tenant's rate limit, then made with the identity of
//! the task (never the guest's word for it), and every call, allowed or denied, is an audit
//! record. Dropping the call (timeout, cancel) drops the tool's future.

use wasmtime::component::{HasData, Linker};

use super::ToolError;
use super::access::ToolAccess;
use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};
use crate::wit::v2::wasm_orch::agent::tools as v2;
use crate::wit::v3::wasm_orch::agent::tools as wit;

/// The largest input a guest may pass to a tool.
pub(crate) const MAX_INPUT_BYTES: usize = 1 << 20;

pub(crate) struct ToolsView<'a> {
    access: &'a ToolAccess,
    events: &'a SharedEmitter,
}

impl<'a> ToolsView<'a> {
    pub(crate) fn new(access: &'a ToolAccess, events: &'a SharedEmitter) -> Self {
        Self { access, events }
    }
}

struct HasTools;

impl HasData for HasTools {
    type Data<'a> = ToolsView<'a>;
}

/// Links `tools`, in both versions of the contract; `get` gives a store's view of its task's tool access and emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ToolsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasTools>(linker, get)?;
    v2::add_to_linker::<T, HasTools>(linker, get)
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
        // On a worker: the coordinator checks and makes the call.
        if let Some(relay) = &self.access.relay {
            if input.len() > MAX_INPUT_BYTES {
                return Ok(Err(wit::ToolError::InvalidInput(format!(
                    "the input has {} bytes, over the {MAX_INPUT_BYTES} a tool call may pass",
                    input.len()
                ))));
            }
            return Ok(relay.invoke(name, input).await);
        }
        Ok(invoke(self.access, self.events, name, input).await)
    }
}

/// A call of tool `name` by the task `access` names: checked, made and audited on `events`.
pub(crate) async fn invoke(
    access: &ToolAccess,
    events: &SharedEmitter,
    name: String,
    input: String,
) -> Result<String, wit::ToolError> {
    let view = ToolsView { access, events };
    view.checked(name, input).await
}

impl ToolsView<'_> {
    async fn checked(&self, name: String, input: String) -> Result<String, wit::ToolError> {
        let access = self.access;
        let Some(tool) = access.registry.get(&name) else {
            let reason = format!("no tool named `{name}`");
            self.audit(AuditResource::Tool, &name, Decision::Denied, &reason);
            return Err(wit::ToolError::NotFound(reason));
        };
        if !access.granted.contains(&name) {
            let reason = format!(
                "agent `{}` is not granted tool `{name}`",
                access.caller.agent
            );
            return Err(self.deny(AuditResource::Tool, &name, reason));
        }
        if !access.tenant.allows_tool(&name) {
            let reason = format!(
                "tenant `{}` may not use tool `{name}`",
                access.caller.tenant
            );
            return Err(self.deny(AuditResource::Tool, &name, reason));
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
            return Err(self.deny(AuditResource::Quota, &name, reason));
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
        // Bounded before it is parsed (a JSON value takes several times its text's size).
        if input.len() > MAX_INPUT_BYTES {
            let reason = format!(
                "the input has {} bytes, over the {MAX_INPUT_BYTES} a tool call may pass",
                input.len()
            );
            self.audit(AuditResource::Tool, &name, Decision::Denied, &reason);
            return Err(wit::ToolError::InvalidInput(reason));
        }
        let input = match serde_json::from_str(&input) {
            Ok(input) => input,
            Err(e) => {
                let reason = format!("input is not JSON: {e}");
                self.audit(AuditResource::Tool, &name, Decision::Denied, &reason);
                return Err(wit::ToolError::InvalidInput(reason));
            }
        };
        let call = access.caller.call(input);
        let result = tool.call(call).await;
        match result {
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
        }
    }
}

/// `wasm-orch:agent@0.2.0`: the same call, with the old package's types.
impl v2::Host for ToolsView<'_> {
    async fn invoke(
        &mut self,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<String, v2::ToolError>> {
        Ok(wit::Host::invoke(self, name, input)
            .await?
            .map_err(|e| match e {
                wit::ToolError::NotFound(m) => v2::ToolError::NotFound(m),
                wit::ToolError::Denied(m) => v2::ToolError::Denied(m),
                wit::ToolError::InvalidInput(m) => v2::ToolError::InvalidInput(m),
                wit::ToolError::Failed(m) => v2::ToolError::Failed(m),
            }))
    }
}
