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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::bus::{Bus, CredentialAction, CredentialEvent, EventKind, Timestamp};

/// A boxed future, as returned by [`SecretBackend::read`]: the value (`None` if there is no
/// such secret), or why the backend could not answer.
pub type SecretFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Where secrets are kept.
///
/// ```
/// use wasm_orch::{SecretBackend, SecretFuture};
///
/// /// Secrets from a map (for tests).
/// struct Fixed(std::collections::HashMap<String, String>);
///
/// impl SecretBackend for Fixed {
///     fn read(&self, name: &str) -> SecretFuture<'_> {
///         let value = self.0.get(name).cloned();
///         Box::pin(async move { Ok(value) })
///     }
/// }
/// ```
pub trait SecretBackend: Send + Sync + 'static {
    /// The value of secret `name`, or `None` if there is none.
    fn read(&self, name: &str) -> SecretFuture<'_>;

    /// A run's credential was issued, renewed or revoked. A backend with leases of its own
    /// (Vault: a token per run) mints, renews or revokes it here. Default: nothing to do.
    fn credential(&self, _credential: &Credential, _action: CredentialAction) {}
}

/// A shared secret backend (`Debug` without showing anything).
#[derive(Clone)]
pub(crate) struct Backend(pub(crate) std::sync::Arc<dyn SecretBackend>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBackend")
    }
}

/// Secrets from environment variables: `api-token` is `$WASM_ORCH_SECRET_API_TOKEN` (the
/// prefix is configurable). The default backend.
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
    /// Secrets from variables named `<prefix><NAME>` (upper case, `-` and `.` as `_`).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
}

impl SecretBackend for EnvSecrets {
    fn read(&self, name: &str) -> SecretFuture<'_> {
        let var = format!(
            "{}{}",
            self.prefix,
            name.to_ascii_uppercase().replace(['-', '.'], "_")
        );
        let value = std::env::var(var).ok();
        Box::pin(async move { Ok(value) })
    }
}

/// Secrets from files: `api-token` is the content of `<dir>/api-token` (one trailing newline
/// removed). Names that are not plain file names are refused.
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
    fn read(&self, name: &str) -> SecretFuture<'_> {
        let plain = crate::config::is_valid_name(name);
        let path = self.dir.join(name);
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
    pub(crate) fn issue(run_id: &str, tenant: &str, ttl: Duration) -> Self {
        let credential = Self {
            id: format!("cred-{run_id}"),
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

/// A run's credential and its lifecycle on the record: every issue, renewal and revocation is
/// an event of the run and is passed to the backend.
#[derive(Debug)]
pub(crate) struct Lease {
    credential: std::sync::Arc<Credential>,
    backend: Backend,
    bus: std::sync::Arc<Bus>,
}

impl Lease {
    /// Issues the credential of run `run_id`.
    pub(crate) fn issue(
        run_id: &str,
        tenant: &str,
        ttl: Duration,
        backend: Backend,
        bus: std::sync::Arc<Bus>,
    ) -> Self {
        let lease = Self {
            credential: std::sync::Arc::new(Credential::issue(run_id, tenant, ttl)),
            backend,
            bus,
        };
        lease.record(CredentialAction::Issued, "the run started");
        lease
    }

    pub(crate) fn credential(&self) -> &std::sync::Arc<Credential> {
        &self.credential
    }

    /// Extends the credential by its TTL; false once it is revoked.
    pub(crate) fn renew(&self) -> bool {
        let renewed = self.credential.renew();
        if renewed {
            self.record(CredentialAction::Renewed, "the run is still going");
        }
        renewed
    }

    /// Revokes the credential (once; later calls do nothing).
    pub(crate) fn revoke(&self, why: &str) {
        if self.credential.revoke(why) {
            self.record(CredentialAction::Revoked, why);
        }
    }

    fn record(&self, action: CredentialAction, reason: &str) {
        self.backend.0.credential(&self.credential, action);
        self.bus.publish(EventKind::Credential(CredentialEvent {
            tenant: self.credential.tenant.clone(),
            credential: self.credential.id.clone(),
            action,
            expires_at: Timestamp(self.credential.expires_at()),
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
        std::fs::write(dir.path().join("token"), "abc\n").expect("write");
        let files = FileSecrets::new(dir.path());
        assert_eq!(files.read("token").await, Ok(Some("abc".into())));
        assert_eq!(files.read("missing").await, Ok(None));
        assert_eq!(files.read("../token").await, Ok(None));
    }
}
