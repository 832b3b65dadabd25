//! Settling tasks: a task that ends will not run again, and its dependents go on. A dependent
//! is ready when all its dependencies have ended, and skipped when one did not succeed
//! (unless it runs on failures), its skip naming the failure it stems from. Skips spread with
//! a work list, never by recursion, so a chain of any length settles in constant stack.

use std::time::Instant;

use petgraph::graph::NodeIndex;

use super::{Scheduler, TaskOutcome};
use crate::model::events::TaskStatusUpdated;
use crate::model::policy::OnUpstreamFailure;
use crate::model::status::{ErrorKind, TaskError, TaskStatus};

impl Scheduler<'_> {
    /// Ends `task` with `status`, then its dependents as they follow from it. `announce`:
    /// publish the final status (no attempt's event has said it).
    pub(super) fn settle(
        &mut self,
        task: usize,
        status: TaskStatus,
        error: Option<TaskError>,
        announce: bool,
    ) {
        let mut work = vec![(task, status, error, announce)];
        while let Some((task, status, error, announce)) = work.pop() {
            if self.tasks[task].outcome.is_some() {
                continue;
            }
            if announce {
                let attempt = self.next_attempt(task);
                self.publish(TaskStatusUpdated {
                    error: error.clone(),
                    ..TaskStatusUpdated::new(self.task_ref(task, None, attempt), status)
                });
            }
            self.unwait(task);
            let cause = match (status, &error) {
                // A skip names the failure it stems from, not the skipped task between.
                (TaskStatus::Skipped, Some(e)) => e.message.clone(),
                _ => format!(
                    "not run: task `{}`, which it depends on, ended {status}",
                    self.wf().tasks[task].id
                ),
            };
            let state = &mut self.tasks[task];
            state.outcome = Some(TaskOutcome {
                status,
                error,
                attempts: std::mem::take(&mut state.attempts),
                queued: state.queued,
            });
            self.last_settled = Instant::now();
            (self.shared.ended)(self.names[task].node.as_str());
            if self.cancelled || self.stopped || status == TaskStatus::Cancelled {
                // The run is ending: what has not run ends as cancelled, not skipped.
                continue;
            }
            let succeeded = status.is_success();
            let wf = self.wf();
            for next in wf.graph.neighbors(NodeIndex::new(task)) {
                let next = next.index();
                if self.tasks[next].outcome.is_some() {
                    continue;
                }
                let runs_anyway = wf.tasks[next].on_upstream_failure == OnUpstreamFailure::Run;
                if succeeded || runs_anyway {
                    self.tasks[next].remaining -= 1;
                    // A resumed run's task that had succeeded is settled as it was, not run.
                    if self.tasks[next].remaining == 0 && !self.resumed_done(next) {
                        self.make_ready(next);
                    }
                } else {
                    let error = TaskError::new(ErrorKind::Dependency, cause.clone());
                    work.push((next, TaskStatus::Skipped, Some(error), true));
                }
            }
        }
    }

    /// Ends everything that never ran, as cancelled: by the run's cancellation or its error
    /// budget.
    pub(super) fn settle_unrun(&mut self) {
        let (kind, why) = if self.stopped && !self.cancelled {
            (
                ErrorKind::ErrorBudget,
                "not run: the run's error budget is exhausted",
            )
        } else {
            (ErrorKind::Cancelled, "not run: the run was cancelled")
        };
        self.resources.drain_parked();
        for task in 0..self.tasks.len() {
            if self.tasks[task].outcome.is_none() {
                let error = TaskError::new(kind, why);
                self.settle(task, TaskStatus::Cancelled, Some(error), true);
            }
        }
    }
}
