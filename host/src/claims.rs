//! Idempotent claiming: every attempt the scheduler dispatches carries an idempotency key
//! (`<run>/<node>/<attempt>`, or `<run>/<node>/<attempt>/diagnosis` for the diagnosis of a
//! blocked attempt); whoever executes it claims the key first, and only the first claim of a
//! key succeeds. A repeated delivery (a retried message, a second worker, a replay) is refused
//! and counted (`repeat_total`); a claim by another tenant than the run's is refused too.
//! Every refusal is an audit record on the run's own event stream.
//!
//! The registry is runtime-wide: a run registers when it starts and leaves when it ends.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bus::Bus;
use crate::model::Name;
use crate::model::events::{AuditRecord, AuditResource, Decision, EventKind, TaskRef};

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// The key was claimed before: the attempt runs (or ran) already.
    Duplicate(String),
    /// The key belongs to another tenant's run.
    WrongTenant(String),
    /// No run of this runtime has this id (it never started, or it ended).
    UnknownRun(String),
    /// The key is not `<run>/<node>/<attempt>`.
    Malformed(String),
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate(m)
            | Self::WrongTenant(m)
            | Self::UnknownRun(m)
            | Self::Malformed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClaimError {}

/// The idempotency key of one attempt.
pub(crate) fn key(run_id: &str, node: &str, attempt: u32) -> String {
    format!("{run_id}/{node}/{attempt}")
}

/// The idempotency key of the diagnosis of one attempt.
pub(crate) fn diagnosis_key(run_id: &str, node: &str, attempt: u32) -> String {
    format!("{}/diagnosis", key(run_id, node, attempt))
}

/// The runtime's claims, per live run.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    runs: Mutex<HashMap<String, RunClaims>>,
}

#[derive(Debug)]
struct RunClaims {
    tenant: Name,
    bus: Arc<Bus>,
    claimed: HashSet<String>,
    repeats: Arc<AtomicU64>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunClaims>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a run; returns the counter of its refused repeats, or `None` if a run with
    /// this id is live already (ids are unique among live runs, whatever their tenant).
    pub(crate) fn open(&self, run_id: &str, tenant: &str, bus: Arc<Bus>) -> Option<Arc<AtomicU64>> {
        let mut runs = self.lock();
        if runs.contains_key(run_id) {
            return None;
        }
        let repeats = Arc::new(AtomicU64::new(0));
        runs.insert(
            run_id.to_owned(),
            RunClaims {
                tenant: tenant.into(),
                bus,
                claimed: HashSet::new(),
                repeats: Arc::clone(&repeats),
            },
        );
        Some(repeats)
    }

    /// Forgets a run that ended: its keys can no longer be claimed.
    pub(crate) fn close(&self, run_id: &str) {
        self.lock().remove(run_id);
    }

    /// Claims `key` for `tenant`. `task` names the claimant in the audit record.
    pub(crate) fn claim(&self, tenant: &str, key: &str, task: &TaskRef) -> Result<(), ClaimError> {
        let Some((run_id, rest)) = key.split_once('/') else {
            return Err(ClaimError::Malformed(format!(
                "`{key}` is not an idempotency key (`<run>/<node>/<attempt>`)"
            )));
        };
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(run_id) else {
            return Err(ClaimError::UnknownRun(format!(
                "no live run `{run_id}` in this runtime"
            )));
        };
        // The run's owner sees who tried; the claimant is not told whose run it is.
        let mut reason = None;
        let refused = if run.tenant != tenant {
            reason = Some(format!(
                "tenant `{tenant}` may not claim a task of tenant `{}`",
                run.tenant
            ));
            Some(ClaimError::WrongTenant(format!(
                "`{key}` is not a task of tenant `{tenant}`"
            )))
        } else if !valid_rest(rest) {
            Some(ClaimError::Malformed(format!(
                "`{key}` is not an idempotency key (`<run>/<node>/<attempt>`)"
            )))
        } else if !run.claimed.insert(key.to_owned()) {
            run.repeats.fetch_add(1, Ordering::Relaxed);
            Some(ClaimError::Duplicate(format!(
                "`{key}` was claimed already: an attempt runs at most once"
            )))
        } else {
            None
        };
        let (decision, reason) = match &refused {
            None => (Decision::Allowed, "first claim".to_owned()),
            Some(e) => (Decision::Denied, reason.unwrap_or_else(|| e.to_string())),
        };
        // Claims granted are implied by the `running` event; refusals are on the record.
        if decision == Decision::Denied {
            run.bus.publish(EventKind::Audit(AuditRecord {
                task: task.clone(),
                tenant: tenant.into(),
                resource: AuditResource::Claim,
                action: format!("claim {key}"),
                decision,
                reason,
            }));
        }
        refused.map_or(Ok(()), Err)
    }
}

/// `<node>/<attempt>` or `<node>/<attempt>/diagnosis`.
fn valid_rest(rest: &str) -> bool {
    let rest = rest.strip_suffix("/diagnosis").unwrap_or(rest);
    rest.rsplit_once('/').is_some_and(|(node, attempt)| {
        !node.is_empty() && attempt.parse::<u32>().is_ok_and(|a| a > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> TaskRef {
        TaskRef {
            node: "n".into(),
            branch: "w.n".into(),
            agent: "a".into(),
            attempt: 1,
        }
    }

    #[test]
    fn a_key_is_claimed_once_by_its_own_tenant_only() {
        let claims = Claims::default();
        let bus = Bus::new("r1");
        let mut events = bus.subscribe();
        let repeats = claims
            .open("r1", "acme", Arc::clone(&bus))
            .expect("a new run");
        assert!(
            claims.open("r1", "other", Arc::clone(&bus)).is_none(),
            "ids are unique"
        );
        let k = key("r1", "n", 1);
        assert_eq!(claims.claim("acme", &k, &task()), Ok(()));
        assert!(matches!(
            claims.claim("acme", &k, &task()),
            Err(ClaimError::Duplicate(_))
        ));
        assert!(matches!(
            claims.claim("other", &key("r1", "n", 2), &task()),
            Err(ClaimError::WrongTenant(_))
        ));
        assert_eq!(
            claims.claim("acme", &key("r1", "n", 2), &task()),
            Ok(()),
            "a retry has its own key"
        );
        assert_eq!(
            claims.claim("acme", &diagnosis_key("r1", "n", 1), &task()),
            Ok(())
        );
        assert!(matches!(
            claims.claim("acme", "r1/n", &task()),
            Err(ClaimError::Malformed(_))
        ));
        assert!(matches!(
            claims.claim("acme", "r2/n/1", &task()),
            Err(ClaimError::UnknownRun(_))
        ));
        assert_eq!(repeats.load(Ordering::Relaxed), 1);
        claims.close("r1");
        assert!(matches!(
            claims.claim("acme", &key("r1", "n", 3), &task()),
            Err(ClaimError::UnknownRun(_))
        ));
        bus.close();
        let mut denied = Vec::new();
        while let Some(e) = events.blocking_next() {
            if let EventKind::Audit(a) = &e.kind {
                assert_eq!(a.decision, Decision::Denied);
                denied.push(a.action.clone());
            }
        }
        assert_eq!(denied, ["claim r1/n/1", "claim r1/n/2", "claim r1/n"]);
    }
}
