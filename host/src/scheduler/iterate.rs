//! Loops: a task with `loop = { max_iterations = N }` runs again after each attempt that
//! returns an output, until that output says stop (`"done": true` or `"escalate": true`, as
//! ADK's loop agents escalate) or the task has run N iterations. Each iteration is an attempt
//! of its own (`iterated` in the events, its output in the task's history) and sees the
//! previous iteration's output as the upstream output of its own node. The last iteration's
//! output is the task's. A failed iteration is retried by the task's retry policy like any
//! attempt, and sees the same previous output.
//!
//! A loop over a child workflow grows the run by one iteration at a time instead (see
//! `workflow::looping`): its iterations are tasks of their own, `<loop>.<n>.<id>`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Growth, Scheduler};
use crate::model::status::TaskStatus;

impl Scheduler<'_> {
    /// Whether the attempt of `task` that just returned `output` is an iteration its loop
    /// goes on from.
    pub(super) fn iterates(&self, task: usize, output: Option<&RawValue>) -> bool {
        let Some(max) = self.plan.workflow.tasks[task].max_iterations else {
            return false;
        };
        let iteration = self.iterations(task) + 1;
        iteration < max as usize && !output.is_some_and(says_stop)
    }

    /// Iterations of `task` that ended and were gone on from.
    pub(super) fn iterations(&self, task: usize) -> usize {
        self.tasks[task]
            .attempts
            .iter()
            .filter(|(_, a)| a.status == TaskStatus::Iterated)
            .count()
    }

    /// The next iteration of the loop over a child workflow whose iteration `task` ends,
    /// having returned `output`, resolved for the run; `None` when the loop stops here (its
    /// guest said stop, or this was its last iteration).
    pub(super) fn next_iteration(
        &self,
        task: usize,
        output: Option<&RawValue>,
    ) -> Result<Option<Growth>, String> {
        let wf = self.wf();
        let Some(it) = &wf.tasks[task].iteration else {
            return Ok(None);
        };
        if !it.end || it.n >= it.max || output.is_some_and(says_stop) {
            return Ok(None);
        }
        let grown = wf.repeat(task)?;
        (self.shared.grow)(&wf, grown).map(Some)
    }

    /// What the last iteration of a loop returned (the next one sees it): this task's last
    /// iteration, or, for a first task of a loop over a child workflow, the last task of the
    /// iteration before.
    pub(super) fn previous_iteration(&self, task: usize) -> Option<Arc<RawValue>> {
        // A loop of one task goes on from its own last iteration first (it may be a first
        // task of a loop's body, whose earlier iteration it sees only on its first).
        let own = self.plan.workflow.tasks[task].max_iterations.and_then(|_| {
            self.tasks[task]
                .attempts
                .iter()
                .rev()
                .find(|(_, a)| a.status == TaskStatus::Iterated)
                .and_then(|(_, a)| a.output.clone())
        });
        own.or_else(|| {
            let end = self.plan.workflow.previous_end(task)?;
            let (_, last) = self.tasks[end].outcome.as_ref()?.attempts.last()?;
            last.output.clone()
        })
    }
}

/// Whether an iteration's output asks the loop to stop: an object with `"done": true` or
/// `"escalate": true` (other fields are skipped, not read into memory).
fn says_stop(output: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Flags {
        #[serde(default)]
        done: bool,
        #[serde(default)]
        escalate: bool,
    }
    serde_json::from_str::<Flags>(output.get()).is_ok_and(|f| f.done || f.escalate)
}

#[cfg(test)]
mod tests {
    use super::says_stop;

    #[test]
    fn only_a_true_done_or_escalate_stops_a_loop() {
        let stop = |json: &str| {
            says_stop(&serde_json::value::RawValue::from_string(json.into()).expect("json"))
        };
        assert!(stop(r#"{"done": true, "value": 3}"#));
        assert!(stop(r#"{"escalate": true}"#));
        assert!(!stop(r#"{"done": false}"#));
        assert!(!stop(r#"{"done": "yes"}"#));
        assert!(!stop("3"));
        assert!(!stop(r#"[{"done": true}]"#));
    }
}
