//! Budgets that can only shrink: tenant, then workflow, then task, for fuel, wall time and
//! memory.
//!
//! Before an attempt starts, its limits are granted against every budget above it: it gets at
//! most what remains (a child never gets more than its parent has left), that much is reserved,
//! and what the attempt did not use is given back when it ends. Fuel and (for a tenant) wall
//! time are consumed; a workflow's wall time is a deadline; memory is a cap on what the
//! running tasks hold at once.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::workflow::Limits;

/// A budget. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Fuel, over all attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock time: a tenant's is the total running time of its tasks; a workflow's is a
    /// deadline from the start of the run.
    #[serde(
        default,
        with = "crate::bus::millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_time: Option<Duration>,
    /// Linear memory held by running tasks at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

impl Budget {
    pub(crate) fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    /// This budget, never more than `parent`.
    pub(crate) fn within(self, parent: Budget) -> Budget {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Budget {
            fuel: min(self.fuel, parent.fuel),
            wall_time: min(self.wall_time, parent.wall_time),
            memory: min(self.memory, parent.memory),
        }
    }
}

/// Which resource ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Fuel,
    WallTime,
}

/// What is used and reserved against one budget.
#[derive(Debug)]
pub(crate) struct Account {
    /// Who owns the budget, for messages: `the workflow`, `tenant acme`.
    owner: String,
    budget: Budget,
    /// A workflow's wall time is a deadline; a tenant's is consumed.
    deadline: Option<Instant>,
    fuel_used: u64,
    fuel_reserved: u64,
    time_used: Duration,
    time_reserved: Duration,
    memory_reserved: u64,
}

/// The outcome of asking for an attempt's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Start now, with these limits (reserved).
    Ready(Granted),
    /// Not now: another attempt holds what is left; ask again when one ends.
    Wait,
    /// Nothing is left and nothing will come back: the attempt cannot run.
    Exhausted(String),
}

/// Limits granted to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) limits: Limits,
    /// Why the fuel or the time is less than the agent's own limit, if it is.
    pub(crate) fuel_cap: Option<String>,
    pub(crate) time_cap: Option<String>,
}

impl Account {
    /// A tenant's account: its wall time is consumed by running tasks.
    pub(crate) fn consumable(owner: impl Into<String>, budget: Budget) -> Self {
        Self::new(owner.into(), budget, None)
    }

    /// A run's account: its wall time is a deadline from `start`.
    pub(crate) fn with_deadline(owner: impl Into<String>, budget: Budget, start: Instant) -> Self {
        let deadline = budget.wall_time.map(|t| start + t);
        Self::new(owner.into(), budget, deadline)
    }

    fn new(owner: String, budget: Budget, deadline: Option<Instant>) -> Self {
        Self {
            owner,
            budget,
            deadline,
            fuel_used: 0,
            fuel_reserved: 0,
            time_used: Duration::ZERO,
            time_reserved: Duration::ZERO,
            memory_reserved: 0,
        }
    }

    pub(crate) fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    fn fuel_left(&self) -> Option<u64> {
        let limit = self.budget.fuel?;
        Some(limit.saturating_sub(self.fuel_used + self.fuel_reserved))
    }

    fn time_left(&self, now: Instant) -> Option<Duration> {
        if let Some(deadline) = self.deadline {
            return Some(deadline.saturating_duration_since(now));
        }
        let limit = self.budget.wall_time?;
        Some(limit.saturating_sub(self.time_used + self.time_reserved))
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

/// Grants `wanted` against every account (a tenant's, then a workflow's): each limit is cut
/// to what the tightest account has left, and reserved in all of them.
pub(crate) fn grant(wanted: Limits, accounts: &mut [&mut Account], now: Instant) -> Grant {
    let mut limits = wanted;
    let mut fuel_cap = None;
    let mut time_cap = None;
    for account in accounts.iter() {
        if let Some(left) = account.fuel_left() {
            if left == 0 {
                return if account.fuel_reserved > 0 {
                    Grant::Wait
                } else {
                    Grant::Exhausted(account.exhausted(Resource::Fuel))
                };
            }
            if left < limits.fuel {
                limits.fuel = left;
                fuel_cap = Some(format!("what is left of {}'s fuel budget", account.owner));
            }
        }
        if let Some(left) = account.time_left(now) {
            if left.is_zero() {
                return if account.deadline.is_none() && !account.time_reserved.is_zero() {
                    Grant::Wait
                } else {
                    Grant::Exhausted(account.exhausted(Resource::WallTime))
                };
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
    let fits = accounts.iter().all(|a| {
        a.budget
            .memory
            .is_none_or(|cap| a.memory_reserved + limits.memory <= cap)
    });
    if !fits {
        return Grant::Wait;
    }
    for account in accounts.iter_mut() {
        account.fuel_reserved += limits.fuel;
        if account.deadline.is_none() {
            account.time_reserved += limits.timeout;
        }
        account.memory_reserved += limits.memory;
    }
    Grant::Ready(Granted {
        limits,
        fuel_cap,
        time_cap,
    })
}

/// Gives back what an attempt granted `limits` did not use.
pub(crate) fn settle(
    limits: &Limits,
    fuel_used: u64,
    time_used: Duration,
    accounts: &mut [&mut Account],
) {
    for account in accounts.iter_mut() {
        account.fuel_reserved = account.fuel_reserved.saturating_sub(limits.fuel);
        account.fuel_used += fuel_used.min(limits.fuel);
        if account.deadline.is_none() {
            account.time_reserved = account.time_reserved.saturating_sub(limits.timeout);
            account.time_used += time_used.min(limits.timeout);
        }
        account.memory_reserved = account.memory_reserved.saturating_sub(limits.memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(fuel: u64, memory: u64, secs: u64) -> Limits {
        Limits {
            fuel,
            memory,
            timeout: Duration::from_secs(secs),
            ..Limits::default()
        }
    }

    #[test]
    fn a_child_never_gets_more_than_what_its_parent_has_left() {
        let now = Instant::now();
        let mut tenant = Account::consumable(
            "tenant acme",
            Budget {
                fuel: Some(1_000),
                ..Budget::default()
            },
        );
        let mut run = Account::with_deadline(
            "the workflow",
            Budget {
                fuel: Some(600),
                ..Budget::default()
            },
            now,
        );
        let Grant::Ready(first) = grant(limits(500, 1, 10), &mut [&mut tenant, &mut run], now)
        else {
            panic!("first grant");
        };
        assert_eq!((first.limits.fuel, first.fuel_cap.is_none()), (500, true));
        let Grant::Ready(second) = grant(limits(500, 1, 10), &mut [&mut tenant, &mut run], now)
        else {
            panic!("second grant");
        };
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
        // Everything is reserved: a third attempt waits for the others to give fuel back.
        assert_eq!(
            grant(limits(500, 1, 10), &mut [&mut tenant, &mut run], now),
            Grant::Wait
        );
        settle(
            &first.limits,
            200,
            Duration::from_secs(1),
            &mut [&mut tenant, &mut run],
        );
        settle(
            &second.limits,
            100,
            Duration::from_secs(1),
            &mut [&mut tenant, &mut run],
        );
        assert_eq!((tenant.fuel_used(), run.fuel_used()), (300, 300));
        let Grant::Ready(third) = grant(limits(500, 1, 10), &mut [&mut tenant, &mut run], now)
        else {
            panic!("third grant");
        };
        assert_eq!(third.limits.fuel, 300);
        settle(
            &third.limits,
            300,
            Duration::ZERO,
            &mut [&mut tenant, &mut run],
        );
        let exhausted = grant(limits(500, 1, 10), &mut [&mut tenant, &mut run], now);
        assert_eq!(
            exhausted,
            Grant::Exhausted("the workflow's fuel budget of 600 is exhausted".into())
        );
    }

    #[test]
    fn a_workflow_deadline_caps_timeouts_then_exhausts() {
        let start = Instant::now();
        let budget = Budget {
            wall_time: Some(Duration::from_secs(5)),
            ..Budget::default()
        };
        let mut run = Account::with_deadline("the workflow", budget, start);
        let Grant::Ready(g) = grant(
            limits(1, 1, 60),
            &mut [&mut run],
            start + Duration::from_secs(2),
        ) else {
            panic!("grant");
        };
        assert_eq!(g.limits.timeout, Duration::from_secs(3));
        assert!(g.time_cap.is_some());
        let late = grant(
            limits(1, 1, 60),
            &mut [&mut run],
            start + Duration::from_secs(6),
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
        let mut run = Account::with_deadline("the workflow", budget, now);
        let Grant::Ready(a) = grant(limits(1, 300, 1), &mut [&mut run], now) else {
            panic!("grant");
        };
        assert_eq!(a.limits.memory, 100, "capped at the whole budget");
        assert_eq!(grant(limits(1, 50, 1), &mut [&mut run], now), Grant::Wait);
        settle(&a.limits, 1, Duration::ZERO, &mut [&mut run]);
        assert!(matches!(
            grant(limits(1, 50, 1), &mut [&mut run], now),
            Grant::Ready(_)
        ));
    }

    #[test]
    fn budgets_shrink_toward_the_parent() {
        let parent = Budget {
            fuel: Some(10),
            wall_time: None,
            memory: Some(5),
        };
        let child = Budget {
            fuel: Some(20),
            wall_time: Some(Duration::from_secs(1)),
            memory: None,
        };
        assert_eq!(
            child.within(parent),
            Budget {
                fuel: Some(10),
                wall_time: Some(Duration::from_secs(1)),
                memory: Some(5)
            }
        );
    }
}
