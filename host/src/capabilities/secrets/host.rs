//! Host side of `wasm-orch:agent/secrets`: a secret is handed out only under the run's valid
//! credential, and only if the tenant's policy grants it to the agent; the value joins the
//! run's redactor before the guest sees it. Every read, allowed or denied, is audited (by
//! name: never the value).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{Credential, SecretBackend, SecretFuture};
use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};
use crate::wit::v2::wasm_orch::agent::secrets as v2;
use crate::wit::v3::wasm_orch::agent::secrets as wit;

/// The secrets one task may read.
#[derive(Clone)]
pub(crate) struct SecretAccess {
    pub(crate) backend: Arc<dyn SecretBackend>,
    pub(crate) credential: Arc<Credential>,
    /// Secret names the policy grants the task's agent.
    pub(crate) granted: Arc<[String]>,
}

impl SecretAccess {
    /// No secrets at all (for `describe`).
    pub(crate) fn none() -> Self {
        let credential = Credential::issue("none", "", std::time::Duration::ZERO);
        credential.revoke("no secrets here");
        Self {
            backend: Arc::new(NoSecrets),
            credential: Arc::new(credential),
            granted: Arc::from([]),
        }
    }
}

struct NoSecrets;

impl SecretBackend for NoSecrets {
    fn read(&self, _: &str, _: &str) -> SecretFuture<'_> {
        Box::pin(async { Ok(None) })
    }
}

impl std::fmt::Debug for SecretAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretAccess")
            .field("credential", &self.credential.id())
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

/// The longest secret name.
const MAX_NAME: usize = 256;

pub(crate) struct SecretsView<'a> {
    access: &'a SecretAccess,
    events: &'a SharedEmitter,
}

impl<'a> SecretsView<'a> {
    pub(crate) fn new(access: &'a SecretAccess, events: &'a SharedEmitter) -> Self {
        Self { access, events }
    }
}

struct HasSecrets;

impl HasData for HasSecrets {
    type Data<'a> = SecretsView<'a>;
}

/// Links `secrets`, in both versions of the contract; `get` gives a store's view of its task's secret access and emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SecretsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSecrets>(linker, get)?;
    v2::add_to_linker::<T, HasSecrets>(linker, get)
}

impl SecretsView<'_> {
    fn audit(&self, name: &str, decision: Decision, reason: &str) {
        lock(self.events).audit(
            AuditResource::Secret,
            &format!("get {name}"),
            decision,
            reason,
        );
    }
}

impl wit::Host for SecretsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, wit::SecretError>> {
        let access = self.access;
        if name.len() > MAX_NAME {
            let why = format!("secret names have at most {MAX_NAME} bytes");
            self.audit(
                crate::model::text::truncate(&name, MAX_NAME),
                Decision::Denied,
                &why,
            );
            return Ok(Err(wit::SecretError::Denied(why)));
        }
        if !access.granted.contains(&name) {
            let why = "the tenant's policy does not grant this secret to this agent";
            self.audit(&name, Decision::Denied, why);
            return Ok(Err(wit::SecretError::Denied(why.to_owned())));
        }
        if let Err(why) = access.credential.check() {
            self.audit(&name, Decision::Denied, &why);
            return Ok(Err(wit::SecretError::Revoked(why)));
        }
        match access.backend.read(access.credential.tenant(), &name).await {
            Ok(Some(value)) => {
                lock(self.events).redactor().add(&name, &value);
                self.audit(&name, Decision::Allowed, "read under the run's credential");
                Ok(Ok(value))
            }
            Ok(None) => {
                let why = "no such secret";
                self.audit(&name, Decision::Denied, why);
                Ok(Err(wit::SecretError::Denied(why.to_owned())))
            }
            Err(e) => {
                let why = format!("the secret backend failed: {e}");
                self.audit(&name, Decision::Denied, &why);
                Ok(Err(wit::SecretError::Denied(why)))
            }
        }
    }
}

/// `wasm-orch:agent@0.2.0`: the same call, with the old package's types.
impl v2::Host for SecretsView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, v2::SecretError>> {
        Ok(wit::Host::get(self, name).await?.map_err(|e| match e {
            wit::SecretError::Denied(why) => v2::SecretError::Denied(why),
            wit::SecretError::Revoked(why) => v2::SecretError::Revoked(why),
        }))
    }
}
