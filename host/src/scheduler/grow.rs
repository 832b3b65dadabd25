//! Growing: a planner's plan, or a loop's next iteration, joins the running DAG. The workflow checks the plan and grows
//! (see `workflow::plan`); here the run takes the new tasks in: each is announced (one
//! `agent.plan.created` naming the planner and the tasks it added, then each task `pending`),
//! the planner's dependents wait for the plan's last tasks too, and the plan's first tasks
//! become ready when the planner settles. A resumed run grows again from the journaled plan:
//! the tasks that had succeeded are done as they were.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::{Growth, Scheduler, TaskState, task_names};
use crate::model::events::{EventKind, LoopIteration, TaskStatusUpdated};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};

impl Scheduler<'_> {
    /// What the successful end of `task` (on `agent`, returning `output`) grows the run by: a
    /// planner's plan, or the next iteration of the loop whose iteration it ends; or how it
    /// ends instead (a refused plan fails the planner, a loop that may not grow any more is
    /// out of budget).
    pub(super) fn growth_of(
        &self,
        task: usize,
        agent: usize,
        output: Option<Arc<RawValue>>,
    ) -> Result<Option<Growth>, (TaskStatus, TaskError)> {
        match self.plan_of(task, agent, output.clone()) {
            Ok(Some(growth)) => Ok(Some(growth)),
            Ok(None) => self.next_iteration(task, output.as_deref()).map_err(|why| {
                (
                    TaskStatus::BudgetExhausted,
                    TaskError::new(ErrorKind::Budget, why),
                )
            }),
            Err(why) => Err((
                TaskStatus::Failed,
                TaskError::new(ErrorKind::InvalidPlan, why),
            )),
        }
    }

    /// If `task` ran on a planner: the workflow grown with the plan it returned (`output`),
    /// checked but not yet taken in; or why the plan is refused.
    pub(super) fn plan_of(
        &self,
        task: usize,
        agent: usize,
        output: Option<Arc<RawValue>>,
    ) -> Result<Option<Growth>, String> {
        let wf = self.wf();
        if !wf.agents.get(agent).is_some_and(|a| a.planner) {
            return Ok(None);
        }
        let Some(output) = output else {
            return Err("a planner returns a plan, and this one returned nothing".into());
        };
        let plan =
            serde_json::from_str(output.get()).map_err(|e| format!("the plan is not JSON: {e}"))?;
        let growth = (self.shared.grow)(&wf, wf.grow(task, &plan)?)?;
        let grown = growth.workflow.tasks.len();
        if grown <= wf.tasks.len() || growth.tasks.len() != grown {
            return Err("the plan added no task".into());
        }
        Ok(Some(growth))
    }

    /// Takes the plan of `task` (see [`Self::plan_of`]) into the run: once the planner's own
    /// end is published, before it settles.
    pub(super) fn take_plan(&mut self, task: usize, growth: Growth) {
        let wf = self.wf();
        let Growth { workflow, tasks } = growth;
        let before = wf.tasks.len();
        let workflow = Arc::new(workflow);
        // The file's tasks whose dependencies grew (the planner's dependents) wait for more.
        for (i, t) in workflow.tasks.iter().enumerate().take(before) {
            let added = t.deps.len().saturating_sub(wf.tasks[i].deps.len());
            if added > 0 && self.tasks[i].outcome.is_none() {
                self.tasks[i].remaining += added;
            }
        }
        for i in before..workflow.tasks.len() {
            let (names, new_mutex) = task_names(&workflow, i, &mut self.mutex_names);
            if new_mutex && let Some(name) = self.mutex_names.last() {
                let capacity = workflow.mutexes.get(name).copied().unwrap_or(1);
                self.resources.add_mutex(capacity);
            }
            self.names.push(names);
            let t = &workflow.tasks[i];
            self.tasks.push(TaskState {
                // A loop's next iteration also depends on what the loop did, which has ended.
                remaining: t
                    .deps
                    .iter()
                    .filter(|&&d| self.tasks.get(d).is_none_or(|s| s.outcome.is_none()))
                    .count(),
                dormant: t.on_message,
                attempts: self
                    .plan
                    .resumed
                    .get(&t.id)
                    .map(|r| r.attempts.clone())
                    .unwrap_or_default(),
                ..TaskState::default()
            });
        }
        self.plan.tasks.extend(tasks.into_iter().skip(before));
        self.plan.workflow = Arc::clone(&workflow);
        self.tasks[task].planned = true;
        // A resumed run splices its plans in again from the journal, which has their
        // `agent.plan.created` already; what had not succeeded is pending again.
        if !self.resumed_done(task) {
            let mut created =
                workflow.grown_event(task, before, self.plan.max_concurrency, self.plan.budget);
            created.iteration = workflow
                .tasks
                .get(before)
                .and_then(|t| t.iteration.as_ref())
                .filter(|it| it.n > 1)
                .map(|it| LoopIteration {
                    looped: it.looped.clone(),
                    n: it.n,
                });
            self.shared
                .bus
                .publish_quiet(EventKind::PlanCreated(created));
        }
        for i in before..workflow.tasks.len() {
            if !self.resumed_done(i) {
                let attempt = self.next_attempt(i);
                self.publish(TaskStatusUpdated::new(
                    self.task_ref(i, None, attempt),
                    TaskStatus::Pending,
                ));
            }
        }
    }

    /// Whether a resumed run's `task` had succeeded before (then it does not run again).
    pub(super) fn resumed_done(&self, task: usize) -> bool {
        self.plan
            .workflow
            .tasks
            .get(task)
            .and_then(|t| self.plan.resumed.get(&t.id))
            .is_some_and(|r| r.succeeded)
    }
}
