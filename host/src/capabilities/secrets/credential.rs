//! A run's credential: the lease under which its guests read secrets, and its lifecycle on the
//! record (issued when the run starts, renewed while it lives, revoked when it ends or its
//! error budget runs out, and a new one on resume).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::Backend;
use crate::bus::Bus;
use crate::model::events::{CredentialAction, CredentialEvent, EventKind};
use crate::model::time::Timestamp;

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
}
