//! Runtime-wide resource governance: the state every run of a runtime shares.
//!
//! Owns each tenant's fuel bucket, budget account and concurrency pool, each agent's fuel
//! bucket, concurrency pool and learned score, and the tenants' tool-call rates. Runs look up
//! what they need once, when they start, and then take slots ([`SlotPool`]) and budget
//! reservations ([`Reservation`]) per attempt as RAII guards; the engine draws fuel from the
//! buckets. It decides nothing about the order of tasks.

mod bucket;
mod budget;
mod scores;
mod slots;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use self::bucket::{FuelBucket, FuelDraw};
pub(crate) use self::budget::{Account, Grant, Reservation, grant};
use self::scores::Scores;
pub(crate) use self::slots::{Signal, SlotGuard, SlotPool, Waiter};
use crate::model::limits::FuelRate;
use crate::model::report::AgentScore;
use crate::policy::TenantLimits;

/// One tenant, as every run of it shares it.
#[derive(Debug)]
pub(crate) struct Tenant {
    pub(crate) name: String,
    pub(crate) limits: TenantLimits,
    pub(crate) bucket: Option<Arc<FuelBucket>>,
    /// Its concurrency, when the policy limits it.
    pub(crate) slots: Option<Arc<SlotPool>>,
    pub(crate) account: Arc<Account>,
}

#[derive(Debug)]
pub(crate) struct Governor {
    tenant_limits: HashMap<String, TenantLimits>,
    /// Limits of a tenant the policy does not name, if it sets a default (`[tenants."*"]`).
    default_limits: Option<TenantLimits>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
    agent_buckets: Mutex<HashMap<String, Arc<FuelBucket>>>,
    agent_slots: Mutex<HashMap<String, Arc<SlotPool>>>,
    /// Call-rate buckets per tenant and tool.
    tool_buckets: Mutex<HashMap<(String, String), Arc<FuelBucket>>>,
    scores: Scores,
}

impl Governor {
    pub(crate) fn new(
        tenant_limits: HashMap<String, TenantLimits>,
        default_limits: Option<TenantLimits>,
    ) -> Self {
        Self {
            tenant_limits,
            default_limits,
            tenants: Mutex::default(),
            agent_buckets: Mutex::default(),
            agent_slots: Mutex::default(),
            tool_buckets: Mutex::default(),
            scores: Scores::default(),
        }
    }

    /// The shared state of tenant `name`: its policy's limits, else the policy's default for
    /// tenants it does not name, else none.
    pub(crate) fn tenant(&self, name: &str) -> Arc<Tenant> {
        let mut tenants = lock(&self.tenants);
        Arc::clone(tenants.entry(name.to_owned()).or_insert_with(|| {
            let limits = self
                .tenant_limits
                .get(name)
                .or(self.default_limits.as_ref())
                .cloned()
                .unwrap_or_default();
            Arc::new(Tenant {
                name: name.to_owned(),
                bucket: limits.fuel_rate.map(|r| Arc::new(FuelBucket::new(r))),
                slots: limits.max_concurrency.map(SlotPool::new),
                account: Account::consumable(format!("tenant {name}"), limits.budget),
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

    /// The shared concurrency pool of an agent (by its runtime-wide key), of `capacity`.
    pub(crate) fn agent_slots(&self, key: &str, capacity: usize) -> Arc<SlotPool> {
        let mut pools = lock(&self.agent_slots);
        let pool = pools
            .entry(key.to_owned())
            .or_insert_with(|| SlotPool::new(capacity));
        pool.set_capacity(capacity);
        Arc::clone(pool)
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
    use crate::model::limits::Budget;

    #[test]
    fn agent_pools_are_shared_and_bounded() {
        let g = Governor::new(HashMap::new(), None);
        let pool = g.agent_slots("a@1", 2);
        let _one = pool.try_acquire().expect("a slot");
        let _two = g.agent_slots("a@1", 2).try_acquire().expect("a slot");
        assert!(pool.try_acquire().is_none(), "both runs share the pool");
        assert_eq!(g.agent_slots("a@1", 2).used(), 2);
    }

    #[test]
    fn tenants_get_their_policy_once_and_unnamed_ones_the_default() {
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
        let g = Governor::new(HashMap::from([("acme".to_owned(), limits.clone())]), None);
        let acme = g.tenant("acme");
        assert_eq!(acme.limits, limits);
        assert!(Arc::ptr_eq(&acme, &g.tenant("acme")));
        assert_eq!(acme.slots.as_ref().map(|s| s.capacity()), Some(2));
        assert!(g.tenant("other").bucket.is_none());
        let fallback = TenantLimits {
            max_concurrency: Some(1),
            ..TenantLimits::default()
        };
        let g = Governor::new(HashMap::new(), Some(fallback.clone()));
        assert_eq!(g.tenant("stranger").limits, fallback);
    }
}
