//! What an attempt holds while it runs, taken as one RAII [`Grant`]: a slot of its run
//! (`max_concurrency`), a permit of its mutex group, a slot of its tenant and of its agent
//! (when they are limited), and a reservation of its budgets. Whatever ends the attempt
//! (success, failure, panic, cancellation, a start that fails halfway), dropping the grant
//! gives everything back; nothing can leak.
//!
//! A task that finds a resource taken is parked on that resource, and a waiter for it is
//! registered in the same step (see `govern::SlotPool`): when it is released, the run's signal
//! fires with that resource's tag and exactly the tasks parked on it compete again. Nothing
//! polls, and a release wakes only what waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::assign;
use crate::govern::{self, Account, Reservation, Signal, SlotGuard, SlotPool, Waiter};
use crate::model::limits::Limits;

/// A resource a task may have to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Need {
    /// A permit of mutex group `n`.
    Mutex(usize),
    /// A slot of the run's tenant.
    Tenant,
    /// A slot of agent `n`.
    Agent(usize),
    /// Room in the tenant's or the workflow's budget.
    Budget,
}

impl Need {
    fn tag(self) -> u32 {
        match self {
            Self::Tenant => 0,
            Self::Budget => 1,
            Self::Mutex(n) => 2 + 2 * u32::try_from(n).unwrap_or(u32::MAX / 4),
            Self::Agent(n) => 3 + 2 * u32::try_from(n).unwrap_or(u32::MAX / 4),
        }
    }

    fn from_tag(tag: u32) -> Self {
        match tag {
            0 => Self::Tenant,
            1 => Self::Budget,
            t if t % 2 == 0 => Self::Mutex(((t - 2) / 2) as usize),
            t => Self::Agent(((t - 3) / 2) as usize),
        }
    }
}

/// Everything an attempt holds; dropped, it gives everything back.
#[derive(Debug)]
pub(super) struct Grant {
    /// Its limits, cut to what the budgets have left, reserved until settled.
    pub(super) reservation: Reservation,
    _slots: [Option<SlotGuard>; 4],
}

/// The outcome of asking for what an attempt needs.
#[derive(Debug)]
pub(super) enum Acquired {
    /// Start it on this agent.
    Granted(usize, Grant),
    /// It waits, parked on what it needs.
    Parked,
    /// A budget ran out: it cannot run at all.
    Exhausted(String),
}

/// An agent as grants see it.
pub(super) struct AgentSlots<'a> {
    pub(super) limits: &'a [Limits],
    pub(super) slots: &'a [Option<Arc<SlotPool>>],
    /// The learned score of each agent (higher is better).
    pub(super) score: &'a dyn Fn(usize) -> f64,
}

/// The resources of one run, and the tasks parked on them.
#[derive(Debug)]
pub(super) struct Resources {
    run: Arc<SlotPool>,
    mutexes: Vec<Arc<SlotPool>>,
    tenant: Option<Arc<SlotPool>>,
    tenant_account: Arc<Account>,
    run_account: Arc<Account>,
    signal: Arc<Signal>,
    parked: HashMap<Need, Vec<usize>>,
}

impl Resources {
    pub(super) fn new(
        max_concurrency: usize,
        mutex_capacities: &[usize],
        tenant: Option<Arc<SlotPool>>,
        tenant_account: Arc<Account>,
        run_account: Arc<Account>,
    ) -> Self {
        Self {
            run: SlotPool::new(max_concurrency),
            mutexes: mutex_capacities.iter().map(|&c| SlotPool::new(c)).collect(),
            tenant,
            tenant_account,
            run_account,
            signal: Signal::new(),
            parked: HashMap::new(),
        }
    }

    /// A mutex group a plan brought: its index.
    pub(super) fn add_mutex(&mut self, capacity: usize) -> usize {
        self.mutexes.push(SlotPool::new(capacity));
        self.mutexes.len() - 1
    }

    /// The run's signal: fired when a resource something is parked on is released.
    pub(super) fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }

    pub(super) fn run_account(&self) -> &Arc<Account> {
        &self.run_account
    }

    fn waiter(&self, need: Need) -> Waiter {
        Waiter {
            signal: Arc::clone(&self.signal),
            tag: need.tag(),
        }
    }

    fn park(&mut self, need: Need, task: usize) {
        self.parked.entry(need).or_default().push(task);
    }

    /// A slot of the run, if it is below its `max_concurrency`.
    pub(super) fn run_slot(&self) -> Option<SlotGuard> {
        self.run.try_acquire()
    }

    /// The tasks parked on what was released since the last call.
    pub(super) fn released(&mut self) -> Vec<usize> {
        let mut tasks = Vec::new();
        for tag in self.signal.take() {
            if let Some(parked) = self.parked.remove(&Need::from_tag(tag)) {
                tasks.extend(parked);
            }
        }
        tasks
    }

    /// Every task still parked, whatever it waits for (the run is ending).
    pub(super) fn drain_parked(&mut self) -> Vec<usize> {
        self.parked.drain().flat_map(|(_, tasks)| tasks).collect()
    }

    /// Takes what an attempt of `task` needs: `run_slot` (taken by the caller), its mutex
    /// permit, its tenant's slot, an agent among `candidates` (preferring those not in
    /// `failed`) and its slot, and its budget reservation; or parks it on the first thing
    /// that is taken (everything taken so far is given back).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn acquire(
        &mut self,
        task: usize,
        run_slot: Option<SlotGuard>,
        mutex: Option<usize>,
        candidates: &[usize],
        failed: &[usize],
        assigned: &[u64],
        agents: &AgentSlots<'_>,
    ) -> Acquired {
        let mutex_permit = match mutex {
            Some(m) => match self.mutexes.get(m) {
                Some(pool) => match pool.acquire_or_wait(&self.waiter(Need::Mutex(m))) {
                    Some(permit) => Some(permit),
                    None => {
                        self.park(Need::Mutex(m), task);
                        return Acquired::Parked;
                    }
                },
                None => None,
            },
            None => None,
        };
        self.acquire_shared(
            Some(task),
            [run_slot, mutex_permit],
            candidates,
            failed,
            assigned,
            agents,
        )
    }

    /// Takes what a side job (a diagnosis) needs: its tenant's slot, its agent's slot and a
    /// budget reservation, but no slot of the run and no mutex. `None` when it must wait
    /// (waiters are registered; the caller keeps it pending).
    pub(super) fn acquire_side(&mut self, agent: usize, agents: &AgentSlots<'_>) -> Acquired {
        self.acquire_shared(None, [None, None], &[agent], &[], &[], agents)
    }

    fn acquire_shared(
        &mut self,
        task: Option<usize>,
        local: [Option<SlotGuard>; 2],
        candidates: &[usize],
        failed: &[usize],
        assigned: &[u64],
        agents: &AgentSlots<'_>,
    ) -> Acquired {
        let tenant_slot = match &self.tenant {
            Some(pool) => match pool.acquire_or_wait(&self.waiter(Need::Tenant)) {
                Some(slot) => Some(slot),
                None => {
                    if let Some(task) = task {
                        self.park(Need::Tenant, task);
                    }
                    return Acquired::Parked;
                }
            },
            None => None,
        };
        let chosen = assign::choose(candidates, failed, agents.slots, assigned, agents.score);
        let agent_slot = chosen.and_then(|a| {
            let slot = agents.slots.get(a)?.as_ref().map(|pool| pool.try_acquire());
            Some((a, slot))
        });
        let (agent, agent_slot) = match agent_slot {
            // No pool: the agent is not limited.
            Some((a, None)) => (a, None),
            Some((a, Some(Some(slot)))) => (a, Some(slot)),
            // Every candidate is busy (or the one chosen was taken in between): wait for any.
            _ => {
                let mut got = None;
                for &a in candidates {
                    if let Some(Some(pool)) = agents.slots.get(a) {
                        if let Some(slot) = pool.acquire_or_wait(&self.waiter(Need::Agent(a))) {
                            got = Some((a, slot));
                            break;
                        }
                        if let Some(task) = task {
                            self.park(Need::Agent(a), task);
                        }
                    }
                }
                match got {
                    Some((a, slot)) => (a, Some(slot)),
                    None => return Acquired::Parked,
                }
            }
        };
        let limits = agents.limits.get(agent).copied().unwrap_or_default();
        let waiter = self.waiter(Need::Budget);
        let granted = govern::grant(
            limits,
            &[&self.tenant_account, &self.run_account],
            Instant::now(),
            Some(&waiter),
        );
        match granted {
            govern::Grant::Ready(reservation) => {
                let [run_slot, mutex_permit] = local;
                Acquired::Granted(
                    agent,
                    Grant {
                        reservation,
                        _slots: [run_slot, mutex_permit, tenant_slot, agent_slot],
                    },
                )
            }
            govern::Grant::Wait => {
                if let Some(task) = task {
                    self.park(Need::Budget, task);
                }
                Acquired::Parked
            }
            govern::Grant::Exhausted(message) => Acquired::Exhausted(message),
        }
    }

    /// How many tasks are parked, for tests.
    #[cfg(test)]
    pub(super) fn parked(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::Budget;

    fn resources(mutexes: &[usize], tenant: Option<usize>) -> Resources {
        Resources::new(
            4,
            mutexes,
            tenant.map(SlotPool::new),
            Account::consumable("tenant t", Budget::default()),
            Account::with_deadline("the workflow", Budget::default(), Instant::now()),
        )
    }

    #[test]
    fn tags_round_trip() {
        for need in [
            Need::Tenant,
            Need::Budget,
            Need::Mutex(0),
            Need::Mutex(7),
            Need::Agent(0),
            Need::Agent(5),
        ] {
            assert_eq!(Need::from_tag(need.tag()), need);
        }
    }

    #[test]
    fn a_grant_gives_everything_back_when_dropped_and_wakes_what_was_parked() {
        let mut r = resources(&[1], Some(1));
        let limits = [Limits::default()];
        let slots = [Some(SlotPool::new(1))];
        let agents = AgentSlots {
            limits: &limits,
            slots: &slots,
            score: &|_| 1.0,
        };
        let first = r.acquire(0, r.run_slot(), Some(0), &[0], &[], &[0], &agents);
        let Acquired::Granted(0, grant) = first else {
            panic!("not granted: {first:?}");
        };
        // The mutex is held: the next task of the group parks on it.
        assert!(matches!(
            r.acquire(1, r.run_slot(), Some(0), &[0], &[], &[0], &agents),
            Acquired::Parked
        ));
        // Without a mutex, the tenant's one slot is what it waits for.
        assert!(matches!(
            r.acquire(2, r.run_slot(), None, &[0], &[], &[0], &agents),
            Acquired::Parked
        ));
        assert_eq!(r.parked(), 2);
        assert_eq!(
            r.run.used(),
            1,
            "the parked tasks gave their run slots back"
        );
        drop(grant);
        let mut woken = r.released();
        woken.sort_unstable();
        assert_eq!(woken, [1, 2]);
        assert_eq!(
            (
                r.run.used(),
                r.mutexes[0].used(),
                slots[0].as_ref().map(|s| s.used())
            ),
            (0, 0, Some(0))
        );
    }
}
