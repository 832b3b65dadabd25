//! Runtime-wide resource governance: the state every run of a runtime shares.
//!
//! Owns each tenant's fuel bucket, budget account and concurrency, each agent's fuel bucket,
//! concurrency and learned score. The scheduler asks it for slots and grants; the engine draws
//! fuel from its buckets. It decides nothing about the order of tasks.

mod bucket;
mod budget;
mod scores;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub(crate) use self::bucket::FuelBucket;
pub use self::bucket::FuelRate;
pub use self::budget::Budget;
pub(crate) use self::budget::{Account, Grant, Granted, grant, settle};
pub use self::scores::AgentScore;
use self::scores::Scores;

/// Limits an operator sets for one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TenantLimits {
    pub(crate) fuel_rate: Option<FuelRate>,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) budget: Budget,
}

/// One tenant, as every run of it shares it.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    pub(crate) limits: TenantLimits,
    pub(crate) bucket: Option<Arc<FuelBucket>>,
    account: Mutex<Account>,
}

impl Tenant {
    pub(crate) fn account(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Governor {
    tenant_limits: HashMap<String, TenantLimits>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    agent_buckets: Mutex<HashMap<String, Arc<FuelBucket>>>,
    /// Call-rate buckets per tenant and tool.
    tool_buckets: Mutex<HashMap<(String, String), Arc<FuelBucket>>>,
    /// Running attempts per slot key (`tenant:<name>`, `agent:<key>`).
    slots: Mutex<HashMap<String, usize>>,
    scores: Scores,
    /// Notified whenever a slot is released or a grant settled, so a waiting run looks again.
    pub(crate) changed: Notify,
}

impl Governor {
    pub(crate) fn new(tenant_limits: HashMap<String, TenantLimits>) -> Self {
        Self {
            tenant_limits,
            tenants: Mutex::default(),
            agent_buckets: Mutex::default(),
            tool_buckets: Mutex::default(),
            slots: Mutex::default(),
            scores: Scores::default(),
            changed: Notify::new(),
        }
    }

    /// The shared state of tenant `name` (unlimited unless the policy says otherwise).
    pub(crate) fn tenant(&self, name: &str) -> Arc<Tenant> {
        let mut tenants = lock(&self.tenants);
        Arc::clone(tenants.entry(name.to_owned()).or_insert_with(|| {
            let limits = self.tenant_limits.get(name).cloned().unwrap_or_default();
            Arc::new(Tenant {
                name: name.to_owned(),
                bucket: limits.fuel_rate.map(|r| Arc::new(FuelBucket::new(r))),
                account: Mutex::new(Account::consumable(format!("tenant {name}"), limits.budget)),
                limits,
            })
        }))
    }

    /// The shared fuel bucket of an agent (by its runtime-wide key).
    pub(crate) fn agent_bucket(&self, key: &str, rate: FuelRate) -> Arc<FuelBucket> {
        let mut buckets = lock(&self.agent_buckets);
        let bucket = buckets
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(FuelBucket::new(rate)));
        if bucket.rate() != rate {
            *bucket = Arc::new(FuelBucket::new(rate));
        }
        Arc::clone(bucket)
    }

    /// The call-rate bucket of `tenant` for `tool`, shared by every run of the tenant.
    pub(crate) fn tool_bucket(&self, tenant: &str, tool: &str, per_second: f64) -> Arc<FuelBucket> {
        let mut buckets = lock(&self.tool_buckets);
        Arc::clone(
            buckets
                .entry((tenant.to_owned(), tool.to_owned()))
                .or_insert_with(|| Arc::new(FuelBucket::calls(per_second))),
        )
    }

    /// Takes a slot of `key` if fewer than `capacity` are taken.
    pub(crate) fn try_slot(&self, key: &str, capacity: usize) -> bool {
        let mut slots = lock(&self.slots);
        let used = slots.entry(key.to_owned()).or_insert(0);
        if *used < capacity {
            *used += 1;
            true
        } else {
            false
        }
    }

    /// How many slots of `key` are taken.
    pub(crate) fn slots_used(&self, key: &str) -> usize {
        lock(&self.slots).get(key).copied().unwrap_or(0)
    }

    /// Gives a slot of `key` back. Waiting runs are not woken here: a run that ends an
    /// attempt wakes them once it has settled everything (`changed`), and one that only
    /// gives back what it could not use must not wake the others, who would then do the same.
    pub(crate) fn release_slot(&self, key: &str) {
        if let Some(used) = lock(&self.slots).get_mut(key) {
            *used = used.saturating_sub(1);
        }
    }

    pub(crate) fn score(&self, agent_key: &str) -> AgentScore {
        self.scores.get(agent_key)
    }

    pub(crate) fn record(&self, agent_key: &str, latency: std::time::Duration, succeeded: bool) {
        self.scores.record(agent_key, latency, succeeded);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_and_bounded() {
        let g = Governor::new(HashMap::new());
        assert!(g.try_slot("agent:a", 2));
        assert!(g.try_slot("agent:a", 2));
        assert!(!g.try_slot("agent:a", 2));
        assert_eq!(g.slots_used("agent:a"), 2);
        g.release_slot("agent:a");
        assert!(g.try_slot("agent:a", 2));
    }

    #[test]
    fn tenants_get_their_policy_once() {
        let limits = TenantLimits {
            fuel_rate: Some(FuelRate {
                per_second: 10,
                burst: 10,
            }),
            max_concurrency: Some(2),
            budget: Budget {
                fuel: Some(5),
                ..Budget::default()
            },
        };
        let g = Governor::new(HashMap::from([("acme".to_owned(), limits.clone())]));
        let acme = g.tenant("acme");
        assert_eq!(acme.limits, limits);
        assert!(Arc::ptr_eq(&acme, &g.tenant("acme")));
        assert!(g.tenant("other").bucket.is_none());
    }
}
