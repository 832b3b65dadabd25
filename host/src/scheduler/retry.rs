//! Retries, and the run's timers.
//!
//! An attempt that did not succeed is tried again when its task's retry policy (for the agent
//! it ran on) says so: not for `invalid-input` or a cancellation, never past the policy's
//! attempts, not once the run is cancelled or stopped, and not when a budget ran out. The
//! next attempt waits out an exponential backoff with jitter, then the task is ready again,
//! preferably for another agent. Timers also end a pause (error budget) and check stalls.

use std::time::{Duration, Instant};

use super::Scheduler;
use crate::model::policy::RetryPolicy;
use crate::model::port::Attempt;
use crate::model::port::Executor;
use crate::model::status::{TaskError, TaskStatus};
use std::sync::Arc;
use tokio::task::JoinSet;

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Task `n` is ready for its next attempt.
    Retry(usize),
    /// A paused run goes on.
    Resume,
    /// Look whether attempt `.1` of task `.0` has been silent for its stall timeout.
    Stall(usize, u32),
}

impl Scheduler<'_> {
    /// How long until the next attempt of `task`, if it is tried again after its attempt
    /// `number` on `agent` ended `status`.
    pub(super) fn retry_delay(
        &self,
        task: usize,
        agent: usize,
        number: u32,
        status: TaskStatus,
        error: Option<&TaskError>,
    ) -> Option<Duration> {
        let counted = !status.is_success() && status != TaskStatus::Cancelled;
        if !counted || self.cancelled || self.stopped || status == TaskStatus::BudgetExhausted {
            return None;
        }
        let default = RetryPolicy::default();
        let retry = self.plan.tasks[task]
            .retry
            .iter()
            .find(|(a, _)| *a == agent)
            .map_or(&default, |(_, r)| r);
        error
            .filter(|e| retry.retries(e.kind, number))
            .map(|_| retry.delay(number, fastrand::f64()))
    }

    /// Runs every timer that is due.
    pub(super) fn fire_timers<E: Executor>(
        &mut self,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        let now = Instant::now();
        while let Some(std::cmp::Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Retry(task) => {
                    if !self.cancelled && !self.stopped {
                        self.make_ready(task);
                    }
                }
                Timer::Resume => self.resume(),
                Timer::Stall(task, attempt) => self.check_stall(task, attempt, now, jobs, executor),
            }
        }
    }
}
