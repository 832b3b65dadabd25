//! The scheduler: runs a workflow's DAG to the end.
//!
//! Owns *when* tasks run: every ready task runs as soon as a slot is free (up to
//! `max_concurrency`), tasks of one mutex group never overlap, the ready queue orders by
//! priority then critical path. A task that does not succeed has its dependents skipped while
//! independent branches run on (all-settled). Cancellation stops dispatching and ends running
//! attempts promptly. It publishes every state change as an event.
//!
//! It never touches Wasm: an [`Executor`] runs each attempt, so this logic is tested with a
//! fake one.

mod executor;
mod queue;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use serde_json::value::RawValue;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use self::executor::{Attempt, Executor, Job};
use self::queue::ReadyQueue;
use crate::bus::{Bus, ErrorKind, EventKind, TaskError, TaskRef, TaskStatus, TaskStatusUpdated};
use crate::workflow::Workflow;

/// How a task ended.
#[derive(Debug, Clone)]
pub(crate) struct TaskOutcome {
    pub(crate) status: TaskStatus,
    pub(crate) attempts: u32,
    /// The last attempt, if the task ran.
    pub(crate) attempt: Option<Attempt>,
    /// Why it did not succeed.
    pub(crate) error: Option<TaskError>,
    /// Time between ready and running.
    pub(crate) queued: Option<Duration>,
}

/// Runs every task of `workflow` and returns how each ended, in task order.
pub(crate) async fn run<E: Executor>(
    workflow: &Workflow,
    max_concurrency: usize,
    executor: Arc<E>,
    bus: &Bus,
    cancel: &CancellationToken,
) -> Vec<TaskOutcome> {
    let mut s = Scheduler::new(workflow, bus);
    let max_concurrency = max_concurrency.max(1);
    let mut running: JoinSet<Attempt> = JoinSet::new();
    let mut running_tasks: HashMap<tokio::task::Id, usize> = HashMap::new();

    for task in 0..workflow.tasks.len() {
        s.publish(task, TaskStatus::Pending, None);
    }
    for task in 0..workflow.tasks.len() {
        if workflow.tasks[task].deps.is_empty() {
            s.make_ready(task);
        }
    }
    loop {
        while !s.cancelled && running.len() < max_concurrency {
            let Some(task) = s.next_ready() else { break };
            let job = s.start(task, cancel);
            let executor = Arc::clone(&executor);
            let handle = running.spawn(async move { executor.execute(job).await });
            running_tasks.insert(handle.id(), task);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled(), if !s.cancelled => s.cancelled = true,
            Some(joined) = running.join_next_with_id() => {
                let (id, attempt) = match joined {
                    Ok((id, attempt)) => (id, attempt),
                    Err(e) => (e.id(), Attempt::not_run(
                        TaskStatus::Failed,
                        ErrorKind::Host,
                        format!("the executor of this task failed: {e}"),
                    )),
                };
                if let Some(task) = running_tasks.remove(&id) {
                    s.finish(task, attempt);
                }
            }
        }
    }
    s.cancel_the_rest();
    s.outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(TaskOutcome {
                status: TaskStatus::Cancelled,
                attempts: 0,
                attempt: None,
                error: None,
                queued: None,
            })
        })
        .collect()
}

struct Scheduler<'a> {
    workflow: &'a Workflow,
    bus: &'a Bus,
    branches: Vec<String>,
    remaining: Vec<usize>,
    ready_since: Vec<Option<Instant>>,
    queued: Vec<Option<Duration>>,
    outputs: Vec<Option<Arc<RawValue>>>,
    outcomes: Vec<Option<TaskOutcome>>,
    queue: ReadyQueue,
    held: HashSet<String>,
    /// Once set, nothing more starts; what has not run ends as cancelled.
    cancelled: bool,
}

impl<'a> Scheduler<'a> {
    fn new(workflow: &'a Workflow, bus: &'a Bus) -> Self {
        let n = workflow.tasks.len();
        Self {
            workflow,
            bus,
            branches: (0..n).map(|t| workflow.branch(t)).collect(),
            remaining: workflow.tasks.iter().map(|t| t.deps.len()).collect(),
            ready_since: vec![None; n],
            queued: vec![None; n],
            outputs: vec![None; n],
            outcomes: vec![None; n],
            queue: ReadyQueue::default(),
            held: HashSet::new(),
            cancelled: false,
        }
    }

    fn task_ref(&self, task: usize) -> TaskRef {
        let t = &self.workflow.tasks[task];
        TaskRef {
            node: t.id.clone(),
            branch: self.branches[task].clone(),
            agent: self.workflow.agents[t.agent].name.clone(),
            attempt: 1,
        }
    }

    fn publish(&self, task: usize, status: TaskStatus, queued: Option<Duration>) {
        self.bus.publish(EventKind::TaskStatus(TaskStatusUpdated {
            queued_ms: queued.map(millis),
            ..status_only(self.task_ref(task), status)
        }));
    }

    fn make_ready(&mut self, task: usize) {
        let t = &self.workflow.tasks[task];
        self.ready_since[task] = Some(Instant::now());
        self.queue.push(task, t.priority, t.critical_path);
        self.publish(task, TaskStatus::Ready, None);
    }

    fn next_ready(&mut self) -> Option<usize> {
        let tasks = &self.workflow.tasks;
        self.queue.pop(|t| tasks[t].mutex.as_deref(), &self.held)
    }

    /// Marks `task` running and builds its job.
    fn start(&mut self, task: usize, cancel: &CancellationToken) -> Job {
        let t = &self.workflow.tasks[task];
        if let Some(m) = &t.mutex {
            self.held.insert(m.clone());
        }
        let queued = self.ready_since[task].map(|since| since.elapsed());
        self.queued[task] = queued;
        self.publish(task, TaskStatus::Running, queued);
        let upstream = t
            .deps
            .iter()
            .filter_map(|&d| {
                let output = self.outputs[d].clone()?;
                Some((self.workflow.tasks[d].id.clone(), output))
            })
            .collect();
        Job {
            task,
            task_ref: self.task_ref(task),
            params: t.params.to_string(),
            upstream,
            cancel: cancel.clone(),
        }
    }

    fn finish(&mut self, task: usize, attempt: Attempt) {
        let t = &self.workflow.tasks[task];
        if let Some(m) = &t.mutex {
            self.held.remove(m);
            self.queue.release(m);
        }
        self.bus.publish(EventKind::TaskStatus(TaskStatusUpdated {
            started_at: Some(attempt.started_at),
            finished_at: Some(attempt.finished_at),
            latency_ms: Some(millis(attempt.latency)),
            fuel_used: Some(attempt.fuel_used),
            memory_peak: Some(attempt.memory_peak),
            error: attempt.error.clone(),
            ..status_only(self.task_ref(task), attempt.status)
        }));
        let status = attempt.status;
        if status == TaskStatus::Succeeded {
            self.outputs[task] = attempt.output.clone();
        }
        self.outcomes[task] = Some(TaskOutcome {
            status,
            attempts: 1,
            error: attempt.error.clone(),
            attempt: Some(attempt),
            queued: self.queued[task],
        });
        if status == TaskStatus::Succeeded {
            for next in self.dependents(task) {
                self.remaining[next] -= 1;
                if self.remaining[next] == 0 && !self.cancelled {
                    self.make_ready(next);
                }
            }
        } else if !self.cancelled && status != TaskStatus::Cancelled {
            self.skip_dependents(task, status);
        }
        // Otherwise the run is being cancelled: dependents end as cancelled, not skipped.
    }

    fn dependents(&self, task: usize) -> Vec<usize> {
        self.workflow
            .graph
            .neighbors(NodeIndex::new(task))
            .map(NodeIndex::index)
            .collect()
    }

    /// Every task downstream of `failed` is skipped; the rest of the DAG runs on.
    fn skip_dependents(&mut self, failed: usize, status: TaskStatus) {
        let cause = &self.workflow.tasks[failed].id;
        let mut queue: VecDeque<usize> = self.dependents(failed).into();
        while let Some(task) = queue.pop_front() {
            if self.outcomes[task].is_some() {
                continue;
            }
            let error = TaskError::new(
                ErrorKind::Dependency,
                format!("not run: task `{cause}`, which it depends on, ended {status}"),
            );
            self.settle_unrun(task, TaskStatus::Skipped, error);
            queue.extend(self.dependents(task));
        }
    }

    /// Tasks that never ran when the run was cancelled end as cancelled.
    fn cancel_the_rest(&mut self) {
        for task in 0..self.workflow.tasks.len() {
            if self.outcomes[task].is_none() {
                let error = TaskError::new(ErrorKind::Cancelled, "not run: the run was cancelled");
                self.settle_unrun(task, TaskStatus::Cancelled, error);
            }
        }
    }

    fn settle_unrun(&mut self, task: usize, status: TaskStatus, error: TaskError) {
        self.bus.publish(EventKind::TaskStatus(TaskStatusUpdated {
            error: Some(error.clone()),
            ..status_only(self.task_ref(task), status)
        }));
        self.outcomes[task] = Some(TaskOutcome {
            status,
            attempts: 0,
            attempt: None,
            error: Some(error),
            queued: None,
        });
    }
}

fn status_only(task: TaskRef, status: TaskStatus) -> TaskStatusUpdated {
    TaskStatusUpdated {
        task,
        status,
        started_at: None,
        finished_at: None,
        latency_ms: None,
        queued_ms: None,
        fuel_used: None,
        memory_peak: None,
        error: None,
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
