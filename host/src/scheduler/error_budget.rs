//! The run's error budget: once too many attempts have failed (a count, or a rate after a
//! minimum of attempts), the run starts nothing new and publishes a handoff report
//! (`agent.run.paused`): for good (`stop`: what has not run ends cancelled), or for a while
//! (`pause`: then it goes on with a fresh budget and a new credential, `agent.run.resumed`).

use std::time::Instant;

use super::retry::Timer;
use super::{ErrorBudgetChange, Scheduler, handoff};
use crate::model::events::{EventKind, RunPaused, RunResumed};
use crate::model::policy::OnErrorBudget;
use crate::model::time::millis;

impl Scheduler<'_> {
    /// Looks at the budget after a failure.
    pub(super) fn check_error_budget(&mut self) {
        let Some(budget) = self.plan.error_budget.clone() else {
            return;
        };
        if self.stopped || self.paused_since.is_some() {
            return;
        }
        let failures = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        if !budget.exhausted(failures, self.finished_attempts) {
            return;
        }
        let handoff =
            handoff::error_budget(&self.run_info(), &self.failures, (self.shared.blackboard)());
        (self.shared.on_error_budget)(ErrorBudgetChange::Breached);
        self.shared.bus.publish(EventKind::RunPaused(RunPaused {
            failures,
            finished: self.finished_attempts,
            action: budget.action,
            handoff,
        }));
        match budget.action {
            OnErrorBudget::Stop => {
                self.stopped = true;
                self.timers
                    .retain(|std::cmp::Reverse((_, t))| !matches!(t, Timer::Retry(_)));
            }
            OnErrorBudget::Pause { resume_after } => {
                let now = Instant::now();
                self.paused_since = Some(now);
                self.timers
                    .push(std::cmp::Reverse((now + resume_after, Timer::Resume)));
            }
        }
    }

    /// A pause is over: a fresh budget and a new credential.
    pub(super) fn resume(&mut self) {
        if let Some(since) = self.paused_since.take() {
            self.failures.clear();
            self.finished_attempts = 0;
            (self.shared.on_error_budget)(ErrorBudgetChange::Resumed);
            self.shared.bus.publish(EventKind::RunResumed(RunResumed {
                paused_ms: millis(since.elapsed()),
            }));
        }
    }
}
