//! The vocabulary of failure handling, resolved: retries with backoff, blocked tasks, error
//! budgets, and what dependents do when a task fails. (How settings are layered from policy to
//! task, and how they are written, is the `policy` module's.)

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::status::ErrorKind;

/// When and how a task is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    #[serde(with = "super::time::millis_serde")]
    pub backoff: Duration,
    /// The longest delay.
    #[serde(with = "super::time::millis_serde")]
    pub max_backoff: Duration,
    /// Random spread of each delay, ± this fraction.
    pub jitter: f64,
    /// The errors that are retried (never `invalid-input`).
    pub on: Vec<ErrorKind>,
    /// Whether a retry keeps the files the failed attempt left in the task's working
    /// directory (default: every attempt starts with an empty one).
    #[serde(default)]
    pub keep_files: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            jitter: 0.2,
            on: vec![
                ErrorKind::Unavailable,
                ErrorKind::Failed,
                ErrorKind::Timeout,
                ErrorKind::Trap,
                ErrorKind::Blocked,
                ErrorKind::WorkerLost,
            ],
            keep_files: false,
        }
    }
}

impl RetryPolicy {
    /// Whether an attempt that failed with `kind` (its `attempt`-th) is tried again.
    pub(crate) fn retries(&self, kind: ErrorKind, attempt: u32) -> bool {
        attempt < self.max_attempts && self.on.contains(&kind)
    }

    /// The delay after failed attempt number `attempt`: exponential, capped, with jitter.
    /// `unit` is a random number in [0, 1).
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let base = self
            .backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        base.mul_f64(spread.max(0.0))
    }
}

/// What to do about a task that reports no progress for its stall timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBlocked {
    /// Publish `agent.task.blocked` and let it run on.
    Report,
    /// Cancel the attempt (it ends `blocked`) and retry it, on another agent if there is one.
    Retry,
    /// Hand a report to the diagnostic agent and record its diagnosis; the task runs on.
    Diagnose,
}

/// Blocked-task handling, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StallPolicy {
    pub(crate) timeout: Duration,
    pub(crate) action: OnBlocked,
}

/// How many failures a run tolerates before it stops starting tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBudget {
    /// Failed attempts that exhaust the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u32>,
    /// A failure rate (failed attempts / finished attempts) that exhausts it...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_rate: Option<f64>,
    /// ... once at least this many attempts have finished.
    pub min_attempts: u32,
    pub action: OnErrorBudget,
}

/// What a run does when its error budget is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnErrorBudget {
    /// Start nothing more; what has not run ends `cancelled`.
    Stop,
    /// Start nothing for a while, then go on with a fresh budget.
    Pause {
        #[serde(with = "super::time::millis_serde")]
        resume_after: Duration,
    },
}

impl ErrorBudget {
    pub(crate) fn exhausted(&self, failures: u32, finished: u32) -> bool {
        let by_count = self.max_failures.is_some_and(|max| failures >= max);
        let by_rate = self.max_failure_rate.is_some_and(|rate| {
            finished >= self.min_attempts.max(1)
                && f64::from(failures) / f64::from(finished) >= rate
        });
        by_count || by_rate
    }
}

/// What a task's dependents do when it does not succeed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum OnUpstreamFailure {
    /// They are skipped.
    #[default]
    Skip,
    /// They run, and get the failure as their input.
    Run,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_around_it() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        let ms = |attempt, unit| p.delay(attempt, unit).as_millis();
        assert_eq!(
            [ms(1, 0.5), ms(2, 0.5), ms(3, 0.5), ms(4, 0.5)],
            [100, 200, 400, 700]
        );
        assert_eq!((ms(2, 0.0), ms(2, 1.0)), (100, 300));
    }

    #[test]
    fn only_listed_errors_retry_and_only_while_attempts_remain() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.retries(ErrorKind::Unavailable, 1));
        assert!(p.retries(ErrorKind::Trap, 2));
        assert!(!p.retries(ErrorKind::Trap, 3));
        assert!(!p.retries(ErrorKind::InvalidInput, 1));
        assert!(!p.retries(ErrorKind::OutOfFuel, 1));
    }

    #[test]
    fn an_error_budget_trips_on_count_or_rate() {
        let b = ErrorBudget {
            max_failures: Some(3),
            max_failure_rate: Some(0.5),
            min_attempts: 4,
            action: OnErrorBudget::Stop,
        };
        assert!(!b.exhausted(2, 3), "rate not judged before 4 attempts");
        assert!(b.exhausted(2, 4));
        assert!(!b.exhausted(2, 5));
        assert!(b.exhausted(3, 100));
    }
}
