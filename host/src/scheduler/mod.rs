//! The scheduler: runs a workflow's DAG to the end.
//!
//! Owns *when* and *where* tasks run:
//! - every ready task starts as soon as it can: a slot of the run (`max_concurrency`), of its
//!   tenant and of its agent, room in its mutex group, and limits granted from the budgets;
//! - higher priority first, then the longest critical path; a task that must wait does not
//!   hold up the ones behind it;
//! - a capability task gets an agent chosen by load and learned score (see [`assign`]);
//! - a failed attempt is retried after an exponential backoff with jitter when its policy
//!   says so, preferably on another agent; each attempt is a new sandbox;
//! - a task that does not succeed has its dependents skipped, or given the failure as input
//!   (`on_upstream_failure = "run"`), while independent branches run on (all-settled);
//! - a running task silent for its stall timeout is reported blocked and handled by policy
//!   (report, cancel and retry, or hand off to a diagnostic agent);
//! - past the run's error budget, nothing new starts (for a while, or at all);
//! - cancellation ends running attempts promptly and starts nothing more.
//!
//! It publishes every state change as an event. It never touches Wasm: an [`Executor`] runs
//! each attempt, so all of this is tested with a fake one.

mod assign;
mod claims;
mod executor;
mod handoff;
mod metrics;
mod queue;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::claims::ClaimError;
pub(crate) use self::claims::Claims;
pub(crate) use self::executor::{Attempt, Executor, Job, UpstreamResult};
use self::handoff::RunInfo;
pub(crate) use self::metrics::Meter;
use self::queue::ReadyQueue;
use crate::blackboard::Blackboard;
use crate::bus::{
    Bus, ErrorKind, EventKind, Heartbeat, LastProgress, RunPaused, RunResumed, TaskBlocked,
    TaskError, TaskHandoff, TaskRef, TaskStatus, TaskStatusUpdated,
};
use crate::govern::{self, Account, Budget, Governor, Grant, Granted, Tenant};
use crate::policy::{
    ErrorBudget, OnBlocked, OnErrorBudget, OnUpstreamFailure, RetryPolicy, StallPolicy,
};
use crate::workflow::{Limits, Workflow};

/// An agent as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct AgentPlan {
    pub(crate) name: String,
    /// Runtime-wide key (name and component digest): for shared slots and learned scores.
    pub(crate) key: String,
    pub(crate) limits: Limits,
    pub(crate) max_concurrency: Option<usize>,
}

impl AgentPlan {
    pub(crate) fn slot_key(&self) -> String {
        format!("agent:{}", self.key)
    }
}

/// A task's failure handling, resolved from every level.
#[derive(Debug, Clone)]
pub(crate) struct TaskPlan {
    /// The retry policy after an attempt on each agent that may run the task (the task's
    /// settings over that agent's, over the workflow's and the policy's).
    pub(crate) retry: Vec<(usize, RetryPolicy)>,
    pub(crate) stall: Option<StallPolicy>,
    pub(crate) diagnostic_agent: Option<usize>,
}

/// What one run's scheduling needs.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) workflow: &'a Workflow,
    pub(crate) run_id: String,
    pub(crate) max_concurrency: usize,
    pub(crate) agents: Vec<AgentPlan>,
    pub(crate) tasks: Vec<TaskPlan>,
    pub(crate) error_budget: Option<ErrorBudget>,
    /// The run's budget (its tenant's account is checked too).
    pub(crate) budget: Budget,
}

/// What the run shares with the rest of the runtime.
pub(crate) struct Shared<'a> {
    pub(crate) governor: &'a Governor,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) bus: &'a Bus,
    pub(crate) blackboard: &'a Blackboard,
    pub(crate) cancel: &'a CancellationToken,
    /// Told when the run's error budget is breached and when the run resumes after it (its
    /// credential is revoked, then a new one issued).
    pub(crate) on_error_budget: &'a (dyn Fn(ErrorBudgetChange) + Sync),
}

/// A turn of the run's error budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorBudgetChange {
    Breached,
    Resumed,
}

/// How a task ended.
#[derive(Debug, Clone)]
pub(crate) struct TaskOutcome {
    pub(crate) status: TaskStatus,
    /// Why it did not succeed.
    pub(crate) error: Option<TaskError>,
    /// Its attempts, with the agent of each.
    pub(crate) attempts: Vec<(usize, Attempt)>,
    /// Time between ready and running, for its last attempt.
    pub(crate) queued: Option<Duration>,
}

/// A diagnostic agent's answer about a blocked task.
#[derive(Debug, Clone)]
pub(crate) struct Diagnosis {
    pub(crate) node: String,
    pub(crate) attempt: u32,
    pub(crate) agent: String,
    pub(crate) report: Value,
    pub(crate) attempt_result: Attempt,
}

/// Everything the run did.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) tasks: Vec<TaskOutcome>,
    pub(crate) diagnoses: Vec<Diagnosis>,
    pub(crate) meter: Meter,
    /// When the last task ended.
    pub(crate) last_settled: Instant,
    pub(crate) fuel_used: u64,
}

/// Runs every task of the plan and returns how each ended, in task order.
pub(crate) async fn run<E: Executor>(
    plan: Plan<'_>,
    executor: Arc<E>,
    shared: Shared<'_>,
) -> Finished {
    let mut s = Scheduler::new(plan, shared);
    let mut jobs: JoinSet<Attempt> = JoinSet::new();
    let mut monitor = tokio::time::interval(Duration::from_millis(200));
    monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    s.begin();
    loop {
        s.dispatch(&mut jobs, &executor);
        if s.is_done(&jobs) {
            break;
        }
        let timer = s.next_timer();
        let watching = s.watching_stalls();
        let waiting = s.waiting_on_shared;
        let governor = s.shared.governor;
        tokio::select! {
            biased;
            () = s.shared.cancel.cancelled(), if !s.cancelled => s.cancel(),
            Some(joined) = jobs.join_next_with_id() => {
                let (id, attempt) = match joined {
                    Ok((id, attempt)) => (id, attempt),
                    Err(e) => (e.id(), Attempt::not_run(
                        TaskStatus::Failed,
                        ErrorKind::Host,
                        format!("the executor of this task failed: {e}"),
                    )),
                };
                s.job_ended(id, attempt);
            }
            () = sleep_until(timer), if timer.is_some() => s.fire_timers(),
            _ = monitor.tick(), if watching => s.check_stalls(&mut jobs, &executor),
            () = governor.changed.notified(), if waiting => {}
            () = tokio::time::sleep(Duration::from_millis(50)), if waiting => {}
        }
    }
    s.finish()
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry(usize),
    Resume,
}

/// An attempt in flight.
struct Running {
    agent: usize,
    granted: Granted,
    cancel: CancellationToken,
    heartbeat: Arc<Heartbeat>,
    tenant_slot: bool,
    /// `agent.task.blocked` was published for the current silence.
    reported: bool,
    /// The policy stopped it for being blocked.
    stopped_blocked: bool,
    diagnosed: bool,
}

#[derive(Default)]
struct TaskState {
    remaining: usize,
    attempts: Vec<(usize, Attempt)>,
    /// Agents that failed this task (a retry prefers others).
    failed_agents: Vec<usize>,
    ready_since: Option<Instant>,
    queued: Option<Duration>,
    running: Option<Running>,
    outcome: Option<TaskOutcome>,
}

enum JobKind {
    Attempt(usize),
    Diagnosis {
        task: usize,
        attempt: u32,
        agent: usize,
        report: Value,
    },
}

struct Scheduler<'a> {
    plan: Plan<'a>,
    shared: Shared<'a>,
    branches: Vec<String>,
    tasks: Vec<TaskState>,
    queue: ReadyQueue,
    /// Tasks running per mutex group.
    held: HashMap<String, usize>,
    running: usize,
    /// Running tasks that have a stall timeout (the monitor ticks only while there are some).
    watched: usize,
    jobs: HashMap<tokio::task::Id, JobKind>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Tasks given to each agent in this run (to spread work evenly).
    assigned: Vec<u64>,
    account: Account,
    cancelled: bool,
    /// The error budget stopped the run.
    stopped: bool,
    paused_since: Option<Instant>,
    failures: Vec<(String, u32, TaskError)>,
    finished_attempts: u32,
    /// Some ready task waits for something other runs hold (tenant or agent slots, budget).
    waiting_on_shared: bool,
    diagnoses: Vec<Diagnosis>,
    meter: Meter,
    last_settled: Instant,
}

impl<'a> Scheduler<'a> {
    fn new(plan: Plan<'a>, shared: Shared<'a>) -> Self {
        let wf = plan.workflow;
        let n = wf.tasks.len();
        let start = Instant::now();
        let tasks = wf
            .tasks
            .iter()
            .map(|t| TaskState {
                remaining: t.deps.len(),
                ..TaskState::default()
            })
            .collect();
        Self {
            branches: (0..n).map(|t| wf.branch(t)).collect(),
            tasks,
            queue: ReadyQueue::default(),
            held: HashMap::new(),
            running: 0,
            watched: 0,
            jobs: HashMap::new(),
            timers: BinaryHeap::new(),
            assigned: vec![0; plan.agents.len()],
            account: Account::with_deadline("the workflow", plan.budget, start),
            cancelled: false,
            stopped: false,
            paused_since: None,
            failures: Vec::new(),
            finished_attempts: 0,
            waiting_on_shared: false,
            diagnoses: Vec::new(),
            meter: Meter::new(start),
            last_settled: start,
            plan,
            shared,
        }
    }

    fn wf(&self) -> &'a Workflow {
        self.plan.workflow
    }

    /// The agent label of a task before an agent is chosen: its agent, or its capability.
    fn task_ref(&self, task: usize, agent: Option<usize>, attempt: u32) -> TaskRef {
        TaskRef {
            node: self.wf().tasks[task].id.clone(),
            branch: self.branches[task].clone(),
            agent: match agent {
                Some(a) => self.plan.agents[a].name.clone(),
                None => self.wf().target_label(task),
            },
            attempt,
        }
    }

    fn next_attempt(&self, task: usize) -> u32 {
        self.tasks[task].attempts.len() as u32 + 1
    }

    fn publish(&self, update: TaskStatusUpdated) {
        self.shared.bus.publish(EventKind::TaskStatus(update));
    }

    fn begin(&mut self) {
        for task in 0..self.tasks.len() {
            self.publish(status_only(
                self.task_ref(task, None, 1),
                TaskStatus::Pending,
            ));
        }
        for task in 0..self.tasks.len() {
            if self.tasks[task].remaining == 0 {
                self.make_ready(task);
            }
        }
    }

    fn make_ready(&mut self, task: usize) {
        let t = &self.wf().tasks[task];
        self.tasks[task].ready_since = Some(Instant::now());
        self.queue.push(task, t.priority, t.critical_path);
        let attempt = self.next_attempt(task);
        self.publish(status_only(
            self.task_ref(task, None, attempt),
            TaskStatus::Ready,
        ));
    }

    fn is_done(&self, jobs: &JoinSet<Attempt>) -> bool {
        if !jobs.is_empty() {
            return false;
        }
        if self.cancelled || self.stopped {
            return true;
        }
        self.timers.is_empty() && self.queue.is_empty()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn watching_stalls(&self) -> bool {
        self.watched > 0
    }

    fn mutex_free(&self, task: usize) -> bool {
        let wf = self.wf();
        match &wf.tasks[task].mutex {
            Some(m) => {
                let capacity = wf.mutexes.get(m).copied().unwrap_or(1);
                self.held.get(m).copied().unwrap_or(0) < capacity
            }
            None => true,
        }
    }

    /// Starts ready tasks while there is room.
    fn dispatch<E: Executor>(&mut self, jobs: &mut JoinSet<Attempt>, executor: &Arc<E>) {
        // Tasks that found a shared resource busy (a tenant or agent slot, the tenant's
        // budget) wait for its release, which another run may make: they try again now.
        if std::mem::take(&mut self.waiting_on_shared) {
            self.queue.release();
        }
        if self.cancelled || self.stopped || self.paused_since.is_some() {
            return;
        }
        while self.running < self.plan.max_concurrency {
            let mut queue = std::mem::take(&mut self.queue);
            let next = queue.pop(|t| self.mutex_free(t));
            self.queue = queue;
            let Some(task) = next else { break };
            match self.start(task) {
                Start::Job(job) => {
                    let executor = Arc::clone(executor);
                    let handle = jobs.spawn(async move { executor.execute(*job).await });
                    self.jobs.insert(handle.id(), JobKind::Attempt(task));
                }
                Start::Busy => {
                    let t = &self.wf().tasks[task];
                    self.queue.put_back(task, t.priority, t.critical_path);
                    self.waiting_on_shared = true;
                }
                Start::Exhausted(message) => {
                    let error = TaskError::new(ErrorKind::Budget, message);
                    self.settle(task, TaskStatus::BudgetExhausted, Some(error), true);
                }
            }
        }
    }

    /// Takes what an attempt of `task` needs (tenant slot, agent and its slot, budget), or
    /// gives everything back and says why it cannot start.
    fn start(&mut self, task: usize) -> Start {
        let governor = self.shared.governor;
        let tenant = Arc::clone(&self.shared.tenant);
        let tenant_key = format!("tenant:{}", tenant.name);
        let tenant_slot = tenant.limits.max_concurrency.is_some();
        if let Some(max) = tenant.limits.max_concurrency
            && !governor.try_slot(&tenant_key, max)
        {
            return Start::Busy;
        }
        let release_tenant = || {
            if tenant_slot {
                governor.release_slot(&tenant_key);
            }
        };
        let state = &self.tasks[task];
        let Some(agent) = assign::choose(
            self.wf().tasks[task].target.agents(),
            &state.failed_agents,
            &self.plan.agents,
            &self.assigned,
            governor,
        ) else {
            release_tenant();
            return Start::Busy;
        };
        let plan = &self.plan.agents[agent];
        let agent_key = plan.slot_key();
        if !governor.try_slot(&agent_key, plan.max_concurrency.unwrap_or(usize::MAX)) {
            release_tenant();
            return Start::Busy;
        }
        let grant = {
            let mut tenant_account = tenant.account();
            govern::grant(
                plan.limits,
                &mut [&mut tenant_account, &mut self.account],
                Instant::now(),
            )
        };
        let granted = match grant {
            Grant::Ready(granted) => granted,
            Grant::Wait => {
                governor.release_slot(&agent_key);
                release_tenant();
                return Start::Busy;
            }
            Grant::Exhausted(message) => {
                governor.release_slot(&agent_key);
                release_tenant();
                return Start::Exhausted(message);
            }
        };

        let wf = self.wf();
        let t = &wf.tasks[task];
        if let Some(m) = &t.mutex {
            *self.held.entry(m.clone()).or_insert(0) += 1;
        }
        let attempt = self.next_attempt(task);
        let queued = self.tasks[task].ready_since.map(|since| since.elapsed());
        let task_ref = self.task_ref(task, Some(agent), attempt);
        let key = claims::key(&self.plan.run_id, &t.id, attempt);
        self.publish(TaskStatusUpdated {
            queued_ms: queued.map(millis),
            key: Some(key.clone()),
            ..status_only(task_ref.clone(), TaskStatus::Running)
        });
        let upstream = t
            .deps
            .iter()
            .filter_map(|&d| {
                let outcome = self.tasks[d].outcome.as_ref()?;
                let result = if outcome.status == TaskStatus::Succeeded {
                    let output = outcome.attempts.last()?.1.output.clone()?;
                    UpstreamResult::Output(output)
                } else {
                    UpstreamResult::Failed {
                        status: outcome.status,
                        error: outcome.error.clone().unwrap_or_else(|| {
                            TaskError::new(ErrorKind::Failed, "it did not succeed")
                        }),
                    }
                };
                Some((wf.tasks[d].id.clone(), result))
            })
            .collect();
        let heartbeat = Arc::new(Heartbeat::new());
        let cancel = self.shared.cancel.child_token();
        let job = Job {
            task_ref,
            task: Some(task),
            key,
            agent,
            limits: granted.limits,
            heartbeat: Arc::clone(&heartbeat),
            params: t.params.to_string(),
            upstream,
            cancel: cancel.clone(),
        };
        let state = &mut self.tasks[task];
        state.queued = queued;
        state.running = Some(Running {
            agent,
            granted,
            cancel,
            heartbeat,
            tenant_slot,
            reported: false,
            stopped_blocked: false,
            diagnosed: false,
        });
        self.assigned[agent] += 1;
        self.running += 1;
        self.watched += usize::from(self.plan.tasks[task].stall.is_some());
        self.meter.started(attempt);
        Start::Job(Box::new(job))
    }

    fn job_ended(&mut self, id: tokio::task::Id, attempt: Attempt) {
        match self.jobs.remove(&id) {
            Some(JobKind::Attempt(task)) => self.attempt_ended(task, attempt),
            Some(JobKind::Diagnosis {
                task,
                attempt: number,
                agent,
                report,
            }) => {
                let name = self.plan.agents[agent].name.clone();
                let diagnosis = attempt
                    .output
                    .as_ref()
                    .and_then(|o| serde_json::from_str(o.get()).ok());
                self.shared.bus.publish(EventKind::TaskHandoff(TaskHandoff {
                    task: self.task_ref(task, None, number),
                    diagnostic_agent: name.clone(),
                    status: attempt.status,
                    diagnosis,
                    error: attempt.error.clone(),
                }));
                self.diagnoses.push(Diagnosis {
                    node: self.wf().tasks[task].id.clone(),
                    attempt: number,
                    agent: name,
                    report,
                    attempt_result: attempt,
                });
            }
            None => {}
        }
    }

    fn attempt_ended(&mut self, task: usize, mut attempt: Attempt) {
        let Some(run) = self.tasks[task].running.take() else {
            return;
        };
        let governor = self.shared.governor;
        let wf = self.wf();
        if let Some(m) = &wf.tasks[task].mutex
            && let Some(held) = self.held.get_mut(m)
        {
            *held = held.saturating_sub(1);
        }
        let plan = &self.plan.agents[run.agent];
        governor.release_slot(&plan.slot_key());
        if run.tenant_slot {
            governor.release_slot(&format!("tenant:{}", self.shared.tenant.name));
        }
        {
            let mut tenant_account = self.shared.tenant.account();
            govern::settle(
                &run.granted.limits,
                attempt.fuel_used,
                attempt.latency,
                &mut [&mut tenant_account, &mut self.account],
            );
        }
        governor.changed.notify_waiters();
        self.queue.release();
        self.running -= 1;
        self.watched -= usize::from(self.plan.tasks[task].stall.is_some());

        // What the attempt's end means, given why it was stopped or limited.
        if run.stopped_blocked && attempt.status == TaskStatus::Cancelled {
            attempt.status = TaskStatus::Blocked;
            attempt.error = Some(TaskError::new(
                ErrorKind::Blocked,
                "stopped: it reported no progress for its stall timeout",
            ));
        }
        let budget_cap = match attempt.status {
            TaskStatus::OutOfFuel => run.granted.fuel_cap.as_ref(),
            TaskStatus::TimedOut => run.granted.time_cap.as_ref(),
            _ => None,
        };
        if let Some(cap) = budget_cap {
            let what = if attempt.status == TaskStatus::OutOfFuel {
                "fuel"
            } else {
                "time"
            };
            attempt.status = TaskStatus::BudgetExhausted;
            attempt.error = Some(TaskError::new(
                ErrorKind::Budget,
                format!("ran out of {what}: it was given only {cap}"),
            ));
        }
        let succeeded = attempt.status == TaskStatus::Succeeded;
        governor.record(&plan.key, attempt.latency, succeeded);
        self.meter.ended(&plan.name, attempt.latency, succeeded);
        let number = self.next_attempt(task);
        let task_ref = self.task_ref(task, Some(run.agent), number);
        let error = attempt.error.clone();
        let counted = !succeeded && attempt.status != TaskStatus::Cancelled;
        let status = attempt.status;
        let update = TaskStatusUpdated {
            started_at: Some(attempt.started_at),
            finished_at: Some(attempt.finished_at),
            latency_ms: Some(millis(attempt.latency)),
            fuel_used: Some(attempt.fuel_used),
            memory_peak: Some(attempt.memory_peak),
            error: error.clone(),
            artifacts: attempt.artifacts.clone(),
            ..status_only(task_ref, status)
        };
        self.tasks[task].attempts.push((run.agent, attempt));
        if counted {
            self.tasks[task].failed_agents.push(run.agent);
            let failure = error
                .clone()
                .unwrap_or_else(|| TaskError::new(ErrorKind::Failed, "failed"));
            self.failures
                .push((wf.tasks[task].id.clone(), number, failure));
        }
        if status != TaskStatus::Cancelled {
            self.finished_attempts += 1;
        }
        if counted {
            self.check_error_budget();
        }

        let default = RetryPolicy::default();
        let retry = self.plan.tasks[task]
            .retry
            .iter()
            .find(|(a, _)| *a == run.agent)
            .map_or(&default, |(_, r)| r);
        let retrying = counted
            && !self.cancelled
            && !self.stopped
            && status != TaskStatus::BudgetExhausted
            && error
                .as_ref()
                .is_some_and(|e| retry.retries(e.kind, number));
        if retrying {
            let delay = retry.delay(number, fastrand::f64());
            self.publish(TaskStatusUpdated {
                status: TaskStatus::Retrying,
                retry_in_ms: Some(millis(delay)),
                ..update
            });
            self.timers
                .push(Reverse((Instant::now() + delay, Timer::Retry(task))));
            return;
        }
        self.publish(update);
        self.settle(task, status, error, false);
    }

    /// Ends a task (it will not run again) and lets its dependents go on: ready when all their
    /// dependencies have ended, skipped when one failed (unless they run on failures).
    /// `announce`: publish the final status (no attempt's event has said it).
    fn settle(
        &mut self,
        task: usize,
        status: TaskStatus,
        error: Option<TaskError>,
        announce: bool,
    ) {
        if announce {
            let attempt = self.next_attempt(task);
            self.publish(TaskStatusUpdated {
                error: error.clone(),
                ..status_only(self.task_ref(task, None, attempt), status)
            });
        }
        let state = &mut self.tasks[task];
        state.outcome = Some(TaskOutcome {
            status,
            error,
            attempts: std::mem::take(&mut state.attempts),
            queued: state.queued,
        });
        self.last_settled = Instant::now();
        if self.cancelled || self.stopped || status == TaskStatus::Cancelled {
            // The run is ending: what has not run ends as cancelled, not skipped.
            return;
        }
        let succeeded = status == TaskStatus::Succeeded;
        // A skip names the failure it stems from, not the skipped task between.
        let cause = match (status, &self.tasks[task].outcome) {
            (TaskStatus::Skipped, Some(TaskOutcome { error: Some(e), .. })) => e.message.clone(),
            _ => format!(
                "not run: task `{}`, which it depends on, ended {status}",
                self.wf().tasks[task].id
            ),
        };
        let wf = self.wf();
        for next in wf
            .graph
            .neighbors(NodeIndex::new(task))
            .map(NodeIndex::index)
            .collect::<Vec<_>>()
        {
            if self.tasks[next].outcome.is_some() {
                continue;
            }
            let runs_anyway = wf.tasks[next].on_upstream_failure == OnUpstreamFailure::Run;
            if succeeded || runs_anyway {
                self.tasks[next].remaining -= 1;
                if self.tasks[next].remaining == 0 && !self.cancelled && !self.stopped {
                    self.make_ready(next);
                }
            } else {
                let error = TaskError::new(ErrorKind::Dependency, cause.clone());
                self.settle(next, TaskStatus::Skipped, Some(error), true);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
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
                Timer::Resume => {
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
        }
    }

    fn cancel(&mut self) {
        self.cancelled = true;
        // Pending retries will not happen; running attempts end through their tokens.
        self.timers
            .retain(|Reverse((_, t))| !matches!(t, Timer::Retry(_)));
    }

    fn check_error_budget(&mut self) {
        let Some(budget) = self.plan.error_budget.clone() else {
            return;
        };
        if self.stopped || self.paused_since.is_some() {
            return;
        }
        if !budget.exhausted(self.failures.len() as u32, self.finished_attempts) {
            return;
        }
        let info = self.run_info();
        let handoff = handoff::error_budget(
            &info,
            &self.failures,
            blackboard_json(self.shared.blackboard),
        );
        (self.shared.on_error_budget)(ErrorBudgetChange::Breached);
        self.shared.bus.publish(EventKind::RunPaused(RunPaused {
            failures: self.failures.len() as u32,
            finished: self.finished_attempts,
            action: budget.action,
            handoff,
        }));
        match budget.action {
            OnErrorBudget::Stop => {
                self.stopped = true;
                self.timers
                    .retain(|Reverse((_, t))| !matches!(t, Timer::Retry(_)));
            }
            OnErrorBudget::Pause { resume_after } => {
                let now = Instant::now();
                self.paused_since = Some(now);
                self.timers
                    .push(Reverse((now + resume_after, Timer::Resume)));
            }
        }
    }

    fn run_info(&self) -> RunInfo<'_> {
        RunInfo {
            run_id: &self.plan.run_id,
            workflow: &self.wf().name,
            tenant: &self.wf().tenant,
        }
    }

    /// Looks for running tasks silent for their stall timeout, and applies their policy.
    fn check_stalls<E: Executor>(&mut self, jobs: &mut JoinSet<Attempt>, executor: &Arc<E>) {
        for task in 0..self.tasks.len() {
            let Some(stall) = self.plan.tasks[task].stall.clone() else {
                continue;
            };
            let Some(run) = self.tasks[task].running.as_mut() else {
                continue;
            };
            let silent = run.heartbeat.silent_for();
            if silent < stall.timeout {
                run.reported = false;
                continue;
            }
            if run.reported {
                continue;
            }
            run.reported = true;
            let (agent, last) = (run.agent, run.heartbeat.last());
            self.meter.blocked += 1;
            let number = self.next_attempt(task);
            let task_ref = self.task_ref(task, Some(agent), number);
            self.shared.bus.publish(EventKind::TaskBlocked(TaskBlocked {
                task: task_ref,
                stalled_ms: millis(silent),
                stall_timeout_ms: millis(stall.timeout),
                last_progress: last
                    .clone()
                    .map(|(fraction, message)| LastProgress { fraction, message }),
                action: stall.action,
            }));
            match stall.action {
                OnBlocked::Report => {}
                OnBlocked::Retry => {
                    if let Some(run) = self.tasks[task].running.as_mut() {
                        run.stopped_blocked = true;
                        run.cancel.cancel();
                    }
                }
                OnBlocked::Diagnose => {
                    self.diagnose(task, agent, number, silent, &stall, last, jobs, executor)
                }
            }
        }
    }

    /// Hands a blocked task's report to its diagnostic agent (once per attempt).
    #[allow(clippy::too_many_arguments)]
    fn diagnose<E: Executor>(
        &mut self,
        task: usize,
        agent: usize,
        number: u32,
        silent: Duration,
        stall: &StallPolicy,
        last: Option<(f32, String)>,
        jobs: &mut JoinSet<Attempt>,
        executor: &Arc<E>,
    ) {
        let Some(doctor) = self.plan.tasks[task].diagnostic_agent else {
            return;
        };
        let Some(run) = self.tasks[task].running.as_mut() else {
            return;
        };
        if run.diagnosed {
            return;
        }
        run.diagnosed = true;
        let wf = self.wf();
        let earlier: Vec<(String, Attempt)> = self.tasks[task]
            .attempts
            .iter()
            .map(|(a, at)| (self.plan.agents[*a].name.clone(), at.clone()))
            .collect();
        let report = handoff::blocked(
            &self.run_info(),
            &wf.tasks[task].id,
            &self.plan.agents[agent].name,
            number,
            &wf.tasks[task].params,
            millis(silent),
            millis(stall.timeout),
            last,
            &earlier,
            blackboard_json(self.shared.blackboard),
        );
        let node = format!("{}.diagnosis", wf.tasks[task].id);
        let job = Job {
            key: claims::diagnosis_key(&self.plan.run_id, &wf.tasks[task].id, number),
            task: None,
            task_ref: TaskRef {
                branch: format!("{}.{node}", wf.name),
                node,
                agent: self.plan.agents[doctor].name.clone(),
                attempt: number,
            },
            agent: doctor,
            limits: self.plan.agents[doctor].limits,
            heartbeat: Arc::new(Heartbeat::new()),
            params: report.to_string(),
            upstream: Vec::new(),
            cancel: self.shared.cancel.child_token(),
        };
        let executor = Arc::clone(executor);
        let handle = jobs.spawn(async move { executor.execute(job).await });
        self.jobs.insert(
            handle.id(),
            JobKind::Diagnosis {
                task,
                attempt: number,
                agent: doctor,
                report,
            },
        );
    }

    fn finish(mut self) -> Finished {
        // What never ran ends as cancelled: by the run's cancellation or its error budget.
        let (kind, why) = if self.stopped && !self.cancelled {
            (
                ErrorKind::ErrorBudget,
                "not run: the run's error budget is exhausted",
            )
        } else {
            (ErrorKind::Cancelled, "not run: the run was cancelled")
        };
        for task in 0..self.tasks.len() {
            if self.tasks[task].outcome.is_none() {
                let error = TaskError::new(kind, why);
                self.settle(task, TaskStatus::Cancelled, Some(error), true);
            }
        }
        let fuel_used = self.account.fuel_used();
        Finished {
            tasks: self
                .tasks
                .into_iter()
                .map(|t| {
                    t.outcome.unwrap_or(TaskOutcome {
                        status: TaskStatus::Cancelled,
                        error: None,
                        attempts: Vec::new(),
                        queued: None,
                    })
                })
                .collect(),
            diagnoses: self.diagnoses,
            meter: self.meter,
            last_settled: self.last_settled,
            fuel_used,
        }
    }
}

enum Start {
    Job(Box<Job>),
    /// Something it needs is taken; try again when something is released.
    Busy,
    /// A budget ran out: it cannot run at all.
    Exhausted(String),
}

fn blackboard_json(blackboard: &Blackboard) -> Value {
    serde_json::to_value(blackboard.snapshot()).unwrap_or(Value::Null)
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
        retry_in_ms: None,
        key: None,
        artifacts: Vec::new(),
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests;
