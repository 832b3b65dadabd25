//! Budgets that can only shrink: tenant, then workflow, then task, for fuel, wall time and
//! memory.
//!
//! Before an attempt starts, its limits are granted against every budget above it: it gets at
//! most what remains (a child never gets more than its parent has left), that much is reserved
//! in a [`Reservation`], and what the attempt did not use is given back when it is settled.
//! Fuel and (for a tenant) wall time are consumed; a workflow's wall time is a deadline; memory
//! is a cap on what the running tasks hold at once.
//!
//! A reservation dropped without being settled (its attempt's executor panicked) is charged in
//! full: a lost attempt never hands its budget back to anyone. An attempt that must wait for
//! what others hold registers a waiter on the account it waits for, woken when a reservation
//! of that account is settled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::slots::Waiter;
use crate::model::limits::{Budget, Limits};

/// Which resource ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Fuel,
    WallTime,
}

/// What is used and reserved against one budget, shared by every attempt drawing on it.
#[derive(Debug)]
pub(crate) struct Account {
    /// Who owns the budget, for messages: `the workflow`, `tenant acme`.
    owner: String,
    budget: Budget,
    /// A workflow's wall time is a deadline; a tenant's is consumed.
    deadline: Option<Instant>,
    /// Fuel burned by settled attempts (counted even without a fuel budget).
    fuel_used: AtomicU64,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    fuel_reserved: u64,
    time_used: Duration,
    time_reserved: Duration,
    memory_reserved: u64,
    waiters: Vec<Waiter>,
}

/// The outcome of asking for an attempt's limits.
#[derive(Debug)]
pub(crate) enum Grant {
    /// Start now, with these limits (reserved).
    Ready(Reservation),
    /// Not now: other attempts hold what is left; the waiter is signalled when one settles.
    Wait,
    /// Nothing is left and nothing will come back: the attempt cannot run.
    Exhausted(String),
}

impl Account {
    /// A tenant's account: its wall time is consumed by running tasks.
    pub(crate) fn consumable(owner: impl Into<String>, budget: Budget) -> Arc<Self> {
        Self::new(owner.into(), budget, None)
    }

    /// A run's account: its wall time is a deadline from `start`.
    pub(crate) fn with_deadline(
        owner: impl Into<String>,
        budget: Budget,
        start: Instant,
    ) -> Arc<Self> {
        let deadline = budget.wall_time.map(|t| start + t);
        Self::new(owner.into(), budget, deadline)
    }

    fn new(owner: String, budget: Budget, deadline: Option<Instant>) -> Arc<Self> {
        Arc::new(Self {
            owner,
            budget,
            deadline,
            fuel_used: AtomicU64::new(0),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts fuel burned before this account existed (a resumed run's earlier attempts).
    pub(crate) fn spent(&self, fuel: u64) {
        self.fuel_used.fetch_add(fuel, Ordering::Relaxed);
    }

    /// Fuel burned by the attempts settled so far.
    pub(crate) fn fuel_used(&self) -> u64 {
        self.fuel_used.load(Ordering::Relaxed)
    }

    fn limited(&self) -> bool {
        !self.budget.is_unlimited()
    }

    fn fuel_left(&self, held: &Held) -> Option<u64> {
        let limit = self.budget.fuel?;
        Some(limit.saturating_sub(self.fuel_used().saturating_add(held.fuel_reserved)))
    }

    fn time_left(&self, held: &Held, now: Instant) -> Option<Duration> {
        if let Some(deadline) = self.deadline {
            return Some(deadline.saturating_duration_since(now));
        }
        let limit = self.budget.wall_time?;
        Some(limit.saturating_sub(held.time_used + held.time_reserved))
    }

    fn exhausted(&self, resource: Resource) -> String {
        match resource {
            Resource::Fuel => format!(
                "{}'s fuel budget of {} is exhausted",
                self.owner,
                self.budget.fuel.unwrap_or(0)
            ),
            Resource::WallTime => format!(
                "{}'s wall-time budget of {} is exhausted",
                self.owner,
                humantime::format_duration(self.budget.wall_time.unwrap_or_default())
            ),
        }
    }
}

/// Limits granted to one attempt, reserved in every account above it until settled.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) limits: Limits,
    /// Why the fuel or the time is less than the agent's own limit, if it is.
    pub(crate) fuel_cap: Option<String>,
    pub(crate) time_cap: Option<String>,
    accounts: Vec<Arc<Account>>,
    settled: bool,
}

impl Reservation {
    /// Charges what the attempt used (at most what was reserved) and gives back the rest.
    pub(crate) fn settle(mut self, fuel_used: u64, time_used: Duration) {
        self.settle_with(fuel_used, time_used);
    }

    fn settle_with(&mut self, fuel_used: u64, time_used: Duration) {
        self.settled = true;
        let limits = self.limits;
        for account in &self.accounts {
            account
                .fuel_used
                .fetch_add(fuel_used.min(limits.fuel), Ordering::Relaxed);
            if !account.limited() {
                continue;
            }
            let waiters = {
                let mut held = account.lock();
                held.fuel_reserved = held.fuel_reserved.saturating_sub(limits.fuel);
                if account.deadline.is_none() {
                    held.time_reserved = held.time_reserved.saturating_sub(limits.timeout);
                    held.time_used += time_used.min(limits.timeout);
                }
                held.memory_reserved = held.memory_reserved.saturating_sub(limits.memory);
                std::mem::take(&mut held.waiters)
            };
            for w in waiters {
                w.wake();
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let limits = self.limits;
            self.settle_with(limits.fuel, limits.timeout);
        }
    }
}

/// Grants `wanted` against every account (a tenant's, then a workflow's): each limit is cut
/// to what the tightest account has left, and reserved in all of them. When it must wait,
/// `waiter` is registered on the account it waits for.
pub(crate) fn grant(
    wanted: Limits,
    accounts: &[&Arc<Account>],
    now: Instant,
    waiter: Option<&Waiter>,
) -> Grant {
    let mut limits = wanted;
    let mut fuel_cap = None;
    let mut time_cap = None;
    // Locked in the order given (tenant before workflow, always), held until reserved.
    let mut held: Vec<(&Arc<Account>, MutexGuard<'_, Held>)> = accounts
        .iter()
        .filter(|a| a.limited())
        .map(|a| (*a, a.lock()))
        .collect();
    let mut wait_on: Option<usize> = None;
    for (i, (account, h)) in held.iter().enumerate() {
        if let Some(left) = account.fuel_left(h) {
            if left == 0 {
                if h.fuel_reserved > 0 {
                    wait_on = Some(i);
                    break;
                }
                return Grant::Exhausted(account.exhausted(Resource::Fuel));
            }
            if left < limits.fuel {
                limits.fuel = left;
                fuel_cap = Some(format!("what is left of {}'s fuel budget", account.owner));
            }
        }
        if let Some(left) = account.time_left(h, now) {
            if left.is_zero() {
                if account.deadline.is_none() && !h.time_reserved.is_zero() {
                    wait_on = Some(i);
                    break;
                }
                return Grant::Exhausted(account.exhausted(Resource::WallTime));
            }
            if left < limits.timeout {
                limits.timeout = left;
                time_cap = Some(format!(
                    "what is left of {}'s wall-time budget",
                    account.owner
                ));
            }
        }
        if let Some(cap) = account.budget.memory {
            limits.memory = limits.memory.min(cap);
        }
    }
    // Memory is held while the attempt runs: wait until every budget has room for it.
    if wait_on.is_none() {
        wait_on = held.iter().position(|(a, h)| {
            a.budget
                .memory
                .is_some_and(|cap| h.memory_reserved + limits.memory > cap)
        });
    }
    if let Some(i) = wait_on {
        if let Some(waiter) = waiter
            && let Some((_, h)) = held.get_mut(i)
            && !h.waiters.iter().any(|w| w.same(waiter))
        {
            h.waiters.push(waiter.clone());
        }
        return Grant::Wait;
    }
    for (account, h) in &mut held {
        h.fuel_reserved += limits.fuel;
        if account.deadline.is_none() {
            h.time_reserved += limits.timeout;
        }
        h.memory_reserved += limits.memory;
    }
    drop(held);
    Grant::Ready(Reservation {
        limits,
        fuel_cap,
        time_cap,
        accounts: accounts.iter().map(|a| Arc::clone(a)).collect(),
        settled: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::slots::Signal;

    fn limits(fuel: u64, memory: u64, secs: u64) -> Limits {
        Limits {
            fuel,
            memory,
            timeout: Duration::from_secs(secs),
            ..Limits::default()
        }
    }

    fn ready(grant: Grant) -> Reservation {
        match grant {
            Grant::Ready(r) => r,
            other => panic!("not granted: {other:?}"),
        }
    }

    #[test]
    fn a_child_never_gets_more_than_what_its_parent_has_left() {
        let now = Instant::now();
        let tenant = Account::consumable(
            "tenant acme",
            Budget {
                fuel: Some(1_000),
                ..Budget::default()
            },
        );
        let run = Account::with_deadline(
            "the workflow",
            Budget {
                fuel: Some(600),
                ..Budget::default()
            },
            now,
        );
        let both = [&tenant, &run];
        let first = ready(grant(limits(500, 1, 10), &both, now, None));
        assert_eq!((first.limits.fuel, first.fuel_cap.is_none()), (500, true));
        let second = ready(grant(limits(500, 1, 10), &both, now, None));
        assert_eq!(
            second.limits.fuel, 100,
            "only 100 is left of the workflow's 600"
        );
        assert!(
            second
                .fuel_cap
                .as_deref()
                .is_some_and(|c| c.contains("the workflow"))
        );
        // Everything is reserved: a third attempt waits for the others to give fuel back, and
        // is told when one does.
        let signal = Signal::new();
        let waiter = Waiter {
            signal: Arc::clone(&signal),
            tag: 3,
        };
        assert!(matches!(
            grant(limits(500, 1, 10), &both, now, Some(&waiter)),
            Grant::Wait
        ));
        first.settle(200, Duration::from_secs(1));
        assert_eq!(signal.take(), [3]);
        second.settle(100, Duration::from_secs(1));
        assert_eq!((tenant.fuel_used(), run.fuel_used()), (300, 300));
        let third = ready(grant(limits(500, 1, 10), &both, now, None));
        assert_eq!(third.limits.fuel, 300);
        third.settle(300, Duration::ZERO);
        let Grant::Exhausted(message) = grant(limits(500, 1, 10), &both, now, None) else {
            panic!("not exhausted");
        };
        assert_eq!(message, "the workflow's fuel budget of 600 is exhausted");
    }

    #[test]
    fn a_workflow_deadline_caps_timeouts_then_exhausts() {
        let start = Instant::now();
        let budget = Budget {
            wall_time: Some(Duration::from_secs(5)),
            ..Budget::default()
        };
        let run = Account::with_deadline("the workflow", budget, start);
        let g = ready(grant(
            limits(1, 1, 60),
            &[&run],
            start + Duration::from_secs(2),
            None,
        ));
        assert_eq!(g.limits.timeout, Duration::from_secs(3));
        assert!(g.time_cap.is_some());
        let late = grant(
            limits(1, 1, 60),
            &[&run],
            start + Duration::from_secs(6),
            None,
        );
        assert!(matches!(late, Grant::Exhausted(m) if m.contains("wall-time budget of 5s")));
    }

    #[test]
    fn memory_is_capped_by_the_budget_and_held_while_running() {
        let now = Instant::now();
        let budget = Budget {
            memory: Some(100),
            ..Budget::default()
        };
        let run = Account::with_deadline("the workflow", budget, now);
        let a = ready(grant(limits(1, 300, 1), &[&run], now, None));
        assert_eq!(a.limits.memory, 100, "capped at the whole budget");
        assert!(matches!(
            grant(limits(1, 50, 1), &[&run], now, None),
            Grant::Wait
        ));
        a.settle(1, Duration::ZERO);
        assert!(matches!(
            grant(limits(1, 50, 1), &[&run], now, None),
            Grant::Ready(_)
        ));
    }

    #[test]
    fn a_reservation_dropped_unsettled_is_charged_in_full() {
        let now = Instant::now();
        let tenant = Account::consumable(
            "tenant acme",
            Budget {
                fuel: Some(1_000),
                ..Budget::default()
            },
        );
        drop(ready(grant(limits(400, 1, 1), &[&tenant], now, None)));
        assert_eq!(tenant.fuel_used(), 400);
        let unlimited = Account::consumable("tenant free", Budget::default());
        ready(grant(limits(400, 1, 1), &[&unlimited], now, None)).settle(7, Duration::ZERO);
        assert_eq!(
            unlimited.fuel_used(),
            7,
            "fuel is counted without a budget too"
        );
    }
}
