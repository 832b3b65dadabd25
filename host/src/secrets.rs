//! Secrets: where they are kept ([`SecretBackend`]), and the per-run [`Credential`] under which
//! guests read them.
//!
//! Owns the backends (environment variables and files now; the trait leaves room for Vault,
//! whose tokens map onto credentials) and the credential lifecycle: issued when a run starts,
//! renewed while it lives, revoked when it ends or its error budget runs out. Which agent may
//! read which secret is the tenant's policy; redaction of values is the bus's [`Redactor`].
//!
//! [`Redactor`]: crate::bus::Redactor

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::bus::{Bus, CredentialAction, CredentialEvent, EventKind, Timestamp};

/// A boxed future, as returned by [`SecretBackend::read`]: the value (`None` if there is no
/// such secret), or why the backend could not answer.
pub type SecretFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Where secrets are kept. Every secret belongs to a tenant: two tenants' `api-token` are two
/// secrets.
///
/// ```
/// use wasm_orch::{SecretBackend, SecretFuture};
///
/// /// Secrets from a map of (tenant, name) (for tests).
/// struct Fixed(std::collections::HashMap<(String, String), String>);
///
/// impl SecretBackend for Fixed {
///     fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
///         let value = self.0.get(&(tenant.to_owned(), name.to_owned())).cloned();
///         Box::pin(async move { Ok(value) })
///     }
/// }
/// ```
pub trait SecretBackend: Send + Sync + 'static {
    /// The value of tenant `tenant`'s secret `name`, or `None` if there is none.
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_>;

    /// A run's credential was issued, renewed or revoked. A backend with leases of its own
    /// (Vault: a token per run) mints, renews or revokes it here; it is called on the
    /// runtime's threads and must not block. Default: nothing to do.
    fn credential(&self, _credential: &Credential, _action: CredentialAction) {}
}

/// A shared secret backend (`Debug` without showing anything).
#[derive(Clone)]
pub(crate) struct Backend(pub(crate) Arc<dyn SecretBackend>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBackend")
    }
}

/// Secrets from environment variables: tenant `acme`'s `api-token` is
/// `$WASM_ORCH_SECRET_ACME__API_TOKEN` (the prefix is configurable). The default backend.
#[derive(Debug, Clone)]
pub struct EnvSecrets {
    prefix: String,
}

impl Default for EnvSecrets {
    fn default() -> Self {
        Self::with_prefix("WASM_ORCH_SECRET_")
    }
}

impl EnvSecrets {
    /// Secrets from variables named `<prefix><TENANT>__<NAME>` (upper case, `-` and `.` as
    /// `_`). A tenant or secret name that would make the variable ambiguous (a `__` in it, a
    /// tenant ending or a name starting with `_` once converted) is never found.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
}

impl EnvSecrets {
    /// The variable of `tenant`'s `name`, if the pair maps to one unambiguously.
    pub(crate) fn variable(&self, tenant: &str, name: &str) -> Option<String> {
        let upper = |s: &str| s.to_ascii_uppercase().replace(['-', '.'], "_");
        let (tenant, name) = (upper(tenant), upper(name));
        let clear = !tenant.is_empty()
            && !name.is_empty()
            && !tenant.contains("__")
            && !name.contains("__")
            && !tenant.ends_with('_')
            && !name.starts_with('_');
        clear.then(|| format!("{}{tenant}__{name}", self.prefix))
    }
}

impl SecretBackend for EnvSecrets {
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
        let value = self
            .variable(tenant, name)
            .and_then(|var| std::env::var(var).ok());
        Box::pin(async move { Ok(value) })
    }
}

/// Secrets from files: tenant `acme`'s `api-token` is the content of `<dir>/acme/api-token`
/// (one trailing newline removed). Names that are not plain file names are never found.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SecretBackend for FileSecrets {
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
        let plain = crate::config::is_valid_name(tenant) && crate::config::is_valid_name(name);
        let path = self.dir.join(tenant).join(name);
        Box::pin(async move {
            if !plain {
                return Ok(None);
            }
            match tokio::fs::read_to_string(&path).await {
                Ok(text) => Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
            }
        })
    }
}

/// A run's credential: the lease under which its guests read secrets. It expires unless
/// renewed, and once revoked it stays revoked.
#[derive(Debug)]
pub struct Credential {
    id: String,
    tenant: String,
    ttl: Duration,
    /// Expiry, in milliseconds since the Unix epoch.
    expires_ms: AtomicU64,
    revoked: AtomicBool,
    why: Mutex<String>,
}

impl Credential {
    /// A credential `id` of `tenant`, valid for `ttl`.
    pub(crate) fn issue(id: &str, tenant: &str, ttl: Duration) -> Self {
        let credential = Self {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            ttl,
            expires_ms: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            why: Mutex::new(String::new()),
        };
        credential.extend();
        credential
    }

    /// Its id (never a secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// How long it lives unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When it expires unless renewed.
    pub fn expires_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.expires_ms.load(Ordering::Acquire))
    }

    fn extend(&self) {
        let until = SystemTime::now() + self.ttl;
        let ms = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.expires_ms.store(ms, Ordering::Release);
    }

    /// Extends it by its TTL (unless it was revoked). Returns whether it is still valid.
    pub(crate) fn renew(&self) -> bool {
        if self.revoked.load(Ordering::Acquire) {
            return false;
        }
        self.extend();
        true
    }

    /// Revokes it for good; returns whether it was valid until now.
    pub(crate) fn revoke(&self, why: &str) -> bool {
        let was = !self.revoked.swap(true, Ordering::AcqRel);
        if was {
            *self.why.lock().unwrap_or_else(|e| e.into_inner()) = why.to_owned();
        }
        was
    }

    /// Whether secrets may be read under it now, or why not.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.revoked.load(Ordering::Acquire) {
            let why = self.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(format!("the run's credential was revoked: {why}"));
        }
        if SystemTime::now() > self.expires_at() {
            return Err("the run's credential has expired".into());
        }
        Ok(())
    }
}

/// A run's credentials and their lifecycle on the record: every issue, renewal and
/// revocation is an event of the run and is passed to the backend. One credential is current
/// at a time; after a revocation (the error budget was breached) a resumed run gets a new one.
#[derive(Debug)]
pub(crate) struct Lease {
    run_id: String,
    tenant: String,
    ttl: Duration,
    current: Mutex<Arc<Credential>>,
    issued: AtomicU64,
    backend: Backend,
    bus: Arc<Bus>,
}

impl Lease {
    /// Issues the first credential of run `run_id`.
    pub(crate) fn issue(
        run_id: &str,
        tenant: &str,
        ttl: Duration,
        backend: Backend,
        bus: Arc<Bus>,
    ) -> Self {
        let lease = Self {
            run_id: run_id.to_owned(),
            tenant: tenant.to_owned(),
            ttl,
            current: Mutex::new(Arc::new(Credential::issue(
                &format!("cred-{run_id}-1"),
                tenant,
                ttl,
            ))),
            issued: AtomicU64::new(1),
            backend,
            bus,
        };
        lease.record(
            &lease.current(),
            CredentialAction::Issued,
            "the run started",
        );
        lease
    }

    /// The current credential: the one an attempt starting now reads secrets under.
    pub(crate) fn current(&self) -> Arc<Credential> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Extends the current credential by its TTL, unless it was revoked.
    pub(crate) fn renew(&self) {
        let credential = self.current();
        if credential.renew() {
            self.record(
                &credential,
                CredentialAction::Renewed,
                "the run is still going",
            );
        }
    }

    /// Revokes the current credential (once; later calls do nothing).
    pub(crate) fn revoke(&self, why: &str) {
        let credential = self.current();
        if credential.revoke(why) {
            self.record(&credential, CredentialAction::Revoked, why);
        }
    }

    /// Issues a new credential if the current one was revoked.
    pub(crate) fn reissue(&self, why: &str) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.check().is_ok() {
            return;
        }
        let n = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let id = format!("cred-{}-{n}", self.run_id);
        *current = Arc::new(Credential::issue(&id, &self.tenant, self.ttl));
        let credential = Arc::clone(&current);
        drop(current);
        self.record(&credential, CredentialAction::Issued, why);
    }

    fn record(&self, credential: &Credential, action: CredentialAction, reason: &str) {
        self.backend.0.credential(credential, action);
        self.bus.publish(EventKind::Credential(CredentialEvent {
            tenant: credential.tenant.clone(),
            credential: credential.id.clone(),
            action,
            expires_at: Timestamp(credential.expires_at()),
            reason: reason.to_owned(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_expires_unless_renewed_and_stays_revoked() {
        let c = Credential::issue("r1", "acme", Duration::from_millis(50));
        assert!(c.check().is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert!(c.check().is_err(), "expired");
        assert!(c.renew());
        assert!(c.check().is_ok(), "renewed");
        assert!(c.revoke("the run ended"));
        assert!(!c.revoke("again"));
        assert!(!c.renew());
        assert_eq!(
            c.check(),
            Err("the run's credential was revoked: the run ended".into())
        );
    }

    #[tokio::test]
    async fn file_secrets_refuse_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("acme")).expect("mkdir");
        std::fs::write(dir.path().join("acme/token"), "abc\n").expect("write");
        let files = FileSecrets::new(dir.path());
        assert_eq!(files.read("acme", "token").await, Ok(Some("abc".into())));
        assert_eq!(
            files.read("other", "token").await,
            Ok(None),
            "another tenant's"
        );
        assert_eq!(files.read("acme", "missing").await, Ok(None));
        assert_eq!(files.read("acme", "../acme/token").await, Ok(None));
        assert_eq!(files.read("..", "acme").await, Ok(None));
    }

    #[test]
    fn environment_variables_are_per_tenant_and_never_ambiguous() {
        let env = EnvSecrets::default();
        assert_eq!(
            env.variable("acme", "api-token").as_deref(),
            Some("WASM_ORCH_SECRET_ACME__API_TOKEN")
        );
        assert_eq!(
            env.variable("acme.eu", "db.password").as_deref(),
            Some("WASM_ORCH_SECRET_ACME_EU__DB_PASSWORD")
        );
        // `a_` + `_b` and `a` + `__b` would both be `A___B`.
        assert_eq!(env.variable("a_", "b"), None);
        assert_eq!(env.variable("a", "_b"), None);
        assert_eq!(env.variable("a__x", "b"), None);
    }
}
