//! The scheduler: runs a workflow's DAG to the end.
//!
//! Owns *when* and *where* tasks run; each policy is in a file of its own:
//! - `ready`: higher priority first, then the longest critical path;
//! - `grants`: every ready task starts as soon as it holds what it needs (a slot of the run, of
//!   its tenant and of its agent, its mutex permit, a budget reservation), taken as one RAII
//!   grant; a task that must wait is parked on what it waits for, without holding up the
//!   tasks behind it, and woken only when that is released;
//! - `assign`: a capability task gets an agent chosen by load and learned score;
//! - `iterate`: a loop's task runs again, seeing its previous output, until it says stop;
//! - `grow`: a planner's plan joins the running DAG below it;
//! - `retry`: a failed attempt is tried again after an exponential backoff with jitter when
//!   its policy says so, preferably on another agent; each attempt is a new sandbox;
//! - `settle`: a task that does not succeed has its dependents skipped (iteratively: a chain
//!   of any length settles without recursion), or given the failure as input, while
//!   independent branches run on (all-settled);
//! - `stall`: a running task silent for its stall timeout is reported blocked and handled by
//!   policy (report, cancel and retry, or hand off to a diagnostic agent);
//! - `error_budget`: past the run's error budget, nothing new starts (for a while, or at all);
//! - `cancel`: cancellation ends running attempts promptly and starts nothing more.
//!
//! It publishes every state change as an event. It never touches Wasm: an [`Executor`] runs
//! each attempt, through the attempt port of the model, so all of this is tested with a fake.

mod assign;
mod cancel;
mod error_budget;
mod grants;
mod grow;
mod handoff;
mod iterate;
mod metrics;
mod ready;
mod retry;
mod settle;
mod stall;

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::grants::{Acquired, AgentSlots, Grant, Resources};
pub(crate) use self::metrics::Meter;
use self::ready::ReadyQueue;
use self::retry::Timer;
use crate::bus::Bus;
use crate::govern::{Account, Governor, SlotPool, Tenant};
use crate::model::Name;
use crate::model::events::{EventKind, Output, TaskRef, TaskStatusUpdated};
use crate::model::limits::{Budget, Limits};
use crate::model::policy::{ErrorBudget, RetryPolicy, StallPolicy};
use crate::model::port::{Attempt, Executor, Heartbeat, Job, UpstreamResult};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::model::time::millis;
use crate::workflow::Workflow;

/// An agent as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct AgentPlan {
    pub(crate) name: String,
    /// Runtime-wide key (name and component digest): for shared slots and learned scores.
    pub(crate) key: String,
    pub(crate) limits: Limits,
    pub(crate) max_concurrency: Option<usize>,
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
pub(crate) struct Plan {
    /// The workflow; a planner's plan grows it while the run goes on.
    pub(crate) workflow: Arc<Workflow>,
    pub(crate) run_id: String,
    pub(crate) max_concurrency: usize,
    pub(crate) agents: Vec<AgentPlan>,
    pub(crate) tasks: Vec<TaskPlan>,
    pub(crate) error_budget: Option<ErrorBudget>,
    /// The run's budget (its tenant's account is checked too).
    pub(crate) budget: Budget,
    /// When the run started (a resumed run: when it first started; its wall-time budget is a
    /// deadline from then).
    pub(crate) started: Instant,
    /// A resumed run: what each task did before, by id (empty for a new run). Tasks its
    /// planners' plans had added are found here when the plans are spliced in again.
    pub(crate) resumed: HashMap<String, Resumed>,
    /// Fuel the run burned before it was resumed.
    pub(crate) fuel_spent: u64,
}

/// What a task of a resumed run did before: its attempts (numbering goes on after them) and
/// whether the last one succeeded (then it does not run again).
#[derive(Debug, Clone)]
pub(crate) struct Resumed {
    pub(crate) attempts: Vec<(usize, Attempt)>,
    pub(crate) succeeded: bool,
}

/// What the run shares with the rest of the runtime.
pub(crate) struct Shared<'a> {
    pub(crate) governor: &'a Governor,
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) bus: &'a Bus,
    /// The run's blackboard as JSON, for handoff reports.
    pub(crate) blackboard: &'a (dyn Fn() -> Value + Sync),
    pub(crate) cancel: &'a CancellationToken,
    /// Drained: nothing more starts, running attempts finish, then the run stops without
    /// ending (what did not run stays unsettled, for a resume).
    pub(crate) drain: &'a CancellationToken,
    /// Told when the run's error budget is breached and when the run resumes after it (its
    /// credential is revoked, then a new one issued).
    pub(crate) on_error_budget: &'a (dyn Fn(ErrorBudgetChange) + Sync),
    /// Takes in the workflow (first) grown while the run goes on (second: by a planner's plan,
    /// or a loop's next iteration): the failure handling of the new tasks, their inboxes; or
    /// says why they may not run.
    pub(crate) grow: &'a Grow<'a>,
    /// Told when a task has ended (its inbox closes).
    pub(crate) ended: &'a (dyn Fn(&str) + Sync),
    /// Tasks that start on a message (`start = "on-message"`), as their first one arrives.
    pub(crate) woken: Option<tokio::sync::mpsc::UnboundedReceiver<Name>>,
}

/// See [`Shared::grow`].
pub(crate) type Grow<'a> = dyn Fn(&Workflow, Workflow) -> Result<Growth, String> + Sync + 'a;

/// A workflow grown by a plan or a loop's iteration, and the failure handling of each of its
/// tasks.
pub(crate) struct Growth {
    pub(crate) workflow: Workflow,
    pub(crate) tasks: Vec<TaskPlan>,
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
    /// The run was drained before every task had settled: it has not ended.
    pub(crate) drained: bool,
    /// The workflow as its plans grew it (the tasks are in its order).
    pub(crate) workflow: Arc<Workflow>,
}

/// Runs every task of the plan and returns how each ended, in task order.
pub(crate) async fn run<E: Executor>(plan: Plan, executor: Arc<E>, shared: Shared<'_>) -> Finished {
    let mut s = Scheduler::new(plan, shared);
    let mut jobs: JoinSet<Attempt> = JoinSet::new();
    let signal = Arc::clone(s.resources.signal());
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut woken = s.shared.woken.take();
    s.begin();
    loop {
        if let Some(last) = s.unsynced.iter().map(|u| u.3).max() {
            // Group commit: every outcome of this step shares the wait for one fsync.
            s.shared.bus.wake();
            s.shared.bus.durable(last).await;
            s.settle_synced();
        }
        s.dispatch(&mut jobs, &executor);
        s.shared.bus.wake();
        if s.is_done(&jobs) {
            // A task that starts on a message may have just got its first one; if not, none
            // can come now: nothing that could send one runs or will.
            let mut any = false;
            while let Some(node) = woken.as_mut().and_then(|w| w.try_recv().ok()) {
                any |= s.wake(&node);
            }
            if any {
                continue;
            }
            if !(s.cancelled || s.stopped || s.draining) {
                s.settle_dormant();
            }
            break;
        }
        let next = s.timers.peek().map(|std::cmp::Reverse((at, _))| *at);
        if next != armed {
            if let Some(at) = next {
                sleep.as_mut().reset(at.into());
            }
            armed = next;
        }
        tokio::select! {
            biased;
            () = s.shared.cancel.cancelled(), if !s.cancelled => s.cancel(),
            () = s.shared.drain.cancelled(), if !s.draining => s.draining = true,
            Some(node) = async {
                match woken.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                s.wake(&node);
            }
            Some(joined) = jobs.join_next_with_id() => {
                s.joined(joined);
                // Take every other attempt that has ended too, then dispatch once.
                while let Some(joined) = jobs.try_join_next_with_id() {
                    s.joined(joined);
                }
            }
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                s.fire_timers(&mut jobs, &executor);
            }
            () = signal.fired() => {}
        }
    }
    s.finish()
}

/// An attempt in flight.
struct Running {
    agent: usize,
    grant: Grant,
    cancel: CancellationToken,
    heartbeat: Arc<Heartbeat>,
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
    /// In the ready queue, or parked on a resource: it will be tried.
    waiting: bool,
    /// A planner whose plan joined the run: its output (the plan) is passed to no task.
    planned: bool,
    /// It starts on a message, and none has come yet.
    dormant: bool,
    running: Option<Running>,
    outcome: Option<TaskOutcome>,
}

enum JobKind {
    Attempt(usize),
    Diagnosis(Box<DiagnosisJob>),
}

/// A diagnosis in flight, and what it holds.
struct DiagnosisJob {
    task: usize,
    attempt: u32,
    agent: usize,
    report: Value,
    grant: Grant,
}

/// What a task is, named once for the whole run (events repeat these, by reference).
struct TaskNames {
    node: Name,
    branch: Name,
    /// Its agent, or `capability <name>`, before an agent is chosen.
    label: Name,
    /// Its parameters, JSON text.
    params: Arc<str>,
    /// Its mutex group, by index.
    mutex: Option<usize>,
}

struct Scheduler<'a> {
    plan: Plan,
    shared: Shared<'a>,
    names: Vec<TaskNames>,
    agent_names: Vec<Name>,
    agent_limits: Vec<Limits>,
    agent_slots: Vec<Option<Arc<SlotPool>>>,
    /// Mutex groups by index, as [`TaskNames::mutex`] names them.
    mutex_names: Vec<String>,
    tasks: Vec<TaskState>,
    queue: ReadyQueue,
    resources: Resources,
    running: usize,
    /// Tasks queued or parked.
    waiting: usize,
    jobs: HashMap<tokio::task::Id, JobKind>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, Timer)>>,
    /// Tasks given to each agent in this run (to spread work evenly).
    assigned: Vec<u64>,
    cancelled: bool,
    /// Drained (see [`Shared::drain`]): nothing more starts.
    draining: bool,
    /// The error budget stopped the run.
    stopped: bool,
    paused_since: Option<Instant>,
    failures: Vec<(String, u32, TaskError)>,
    finished_attempts: u32,
    /// Outcomes published but not yet durable (`sync` durability), with their events' numbers.
    unsynced: Vec<(usize, TaskStatus, Option<TaskError>, u64)>,
    /// Diagnoses waiting for what they need (their agent's slot, the budget).
    pending_diagnoses: Vec<stall::PendingDiagnosis>,
    diagnoses: Vec<Diagnosis>,
    meter: Meter,
    last_settled: Instant,
}

impl<'a> Scheduler<'a> {
    fn new(plan: Plan, shared: Shared<'a>) -> Self {
        let wf = Arc::clone(&plan.workflow);
        let start = plan.started;
        let mut mutex_names: Vec<String> = Vec::new();
        let names = (0..wf.tasks.len())
            .map(|i| task_names(&wf, i, &mut mutex_names).0)
            .collect();
        let capacities: Vec<usize> = mutex_names
            .iter()
            .map(|m| wf.mutexes.get(m).copied().unwrap_or(1))
            .collect();
        let governor = shared.governor;
        let agent_slots = plan
            .agents
            .iter()
            .map(|a| {
                a.max_concurrency
                    .map(|cap| governor.agent_slots(&a.key, cap))
            })
            .collect();
        let account = Account::with_deadline("the workflow", plan.budget, start);
        account.spent(plan.fuel_spent);
        let resources = Resources::new(
            plan.max_concurrency,
            &capacities,
            shared.tenant.slots.clone(),
            Arc::clone(&shared.tenant.account),
            account,
        );
        Self {
            names,
            agent_names: plan.agents.iter().map(|a| Name::from(&a.name)).collect(),
            agent_limits: plan.agents.iter().map(|a| a.limits).collect(),
            agent_slots,
            mutex_names,
            tasks: wf
                .tasks
                .iter()
                .map(|t| TaskState {
                    remaining: t.deps.len(),
                    attempts: plan
                        .resumed
                        .get(&t.id)
                        .map(|r| r.attempts.clone())
                        .unwrap_or_default(),
                    // A resumed run's task that had started runs again, as any other.
                    dormant: t.on_message && !plan.resumed.contains_key(&t.id),
                    ..TaskState::default()
                })
                .collect(),
            queue: ReadyQueue::default(),
            resources,
            running: 0,
            waiting: 0,
            jobs: HashMap::new(),
            timers: BinaryHeap::new(),
            assigned: vec![0; plan.agents.len()],
            cancelled: false,
            draining: false,
            stopped: false,
            paused_since: None,
            failures: Vec::new(),
            finished_attempts: 0,
            pending_diagnoses: Vec::new(),
            unsynced: Vec::new(),
            diagnoses: Vec::new(),
            meter: Meter::new(start),
            last_settled: start,
            plan,
            shared,
        }
    }

    /// The workflow as it stands (a plan may grow it: hold the `Arc`, not the scheduler).
    fn wf(&self) -> Arc<Workflow> {
        Arc::clone(&self.plan.workflow)
    }

    /// Which task (and attempt) an event is about: its agent, or its label before one is
    /// chosen.
    fn task_ref(&self, task: usize, agent: Option<usize>, attempt: u32) -> TaskRef {
        let names = &self.names[task];
        TaskRef {
            node: names.node.clone(),
            branch: names.branch.clone(),
            agent: match agent.and_then(|a| self.agent_names.get(a)) {
                Some(name) => name.clone(),
                None => names.label.clone(),
            },
            attempt,
        }
    }

    fn next_attempt(&self, task: usize) -> u32 {
        u32::try_from(self.tasks[task].attempts.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// Publishes a state change (subscribers are woken once per step of the loop); returns
    /// its sequence number.
    fn publish(&self, update: TaskStatusUpdated) -> u64 {
        self.shared.bus.publish_quiet(EventKind::TaskStatus(update))
    }

    fn begin(&mut self) {
        for task in 0..self.tasks.len() {
            if !self.resumed_done(task) {
                let attempt = self.next_attempt(task);
                self.publish(TaskStatusUpdated::new(
                    self.task_ref(task, None, attempt),
                    TaskStatus::Pending,
                ));
            }
        }
        // A resumed run's tasks that succeeded before are done, as they were (nothing is
        // published again for them); their dependents go on from there. A planner's plan is
        // spliced in again, from its output (the tasks it adds are looked at in turn).
        let mut task = 0;
        while task < self.tasks.len() {
            if self.resumed_done(task) {
                let status = self.tasks[task]
                    .attempts
                    .last()
                    .map_or(TaskStatus::Succeeded, |(_, a)| a.status);
                let last = self.tasks[task].attempts.last();
                let (agent, output) = last.map_or((0, None), |(a, t)| (*a, t.output.clone()));
                match self.growth_of(task, agent, output) {
                    Ok(growth) => {
                        if let Some(growth) = growth {
                            self.take_plan(task, growth);
                        }
                        self.settle(task, status, None, false);
                    }
                    Err((status, error)) => self.settle(task, status, Some(error), true),
                }
            }
            task += 1;
        }
        for task in 0..self.tasks.len() {
            let state = &self.tasks[task];
            if state.remaining == 0 && state.outcome.is_none() && !state.waiting && !state.dormant {
                self.make_ready(task);
            }
        }
    }

    /// The task `node` got its first message: if it was waiting for one, it is ready now.
    fn wake(&mut self, node: &str) -> bool {
        let Some(task) = self.names.iter().position(|n| n.node.as_str() == node) else {
            return false;
        };
        let state = &mut self.tasks[task];
        if !std::mem::take(&mut state.dormant) || state.outcome.is_some() {
            return false;
        }
        if state.remaining == 0 {
            self.make_ready(task);
        }
        true
    }

    /// Ends the tasks that start on a message and got none.
    fn settle_dormant(&mut self) {
        for task in 0..self.tasks.len() {
            if self.tasks[task].dormant && self.tasks[task].outcome.is_none() {
                let error = TaskError::new(
                    ErrorKind::NotNeeded,
                    "not run: no task sent it a message (it starts on one)",
                );
                self.settle(task, TaskStatus::Skipped, Some(error), true);
            }
        }
    }

    fn make_ready(&mut self, task: usize) {
        self.tasks[task].ready_since = Some(Instant::now());
        self.enqueue(task);
        let attempt = self.next_attempt(task);
        self.publish(TaskStatusUpdated::new(
            self.task_ref(task, None, attempt),
            TaskStatus::Ready,
        ));
    }

    /// Puts a ready task in the queue (once).
    fn enqueue(&mut self, task: usize) {
        let state = &mut self.tasks[task];
        if state.outcome.is_some() || state.running.is_some() {
            return;
        }
        if !state.waiting {
            state.waiting = true;
            self.waiting += 1;
        }
        let t = &self.plan.workflow.tasks[task];
        self.queue.push(task, t.priority, t.critical_path);
    }

    /// The task no longer waits (it starts, or it ends).
    fn unwait(&mut self, task: usize) {
        if std::mem::take(&mut self.tasks[task].waiting) {
            self.waiting -= 1;
        }
    }

    fn is_done(&self, jobs: &JoinSet<Attempt>) -> bool {
        if !jobs.is_empty() {
            return false;
        }
        if self.cancelled || self.stopped || self.draining {
            return true;
        }
        // Waiting tasks are queued, or parked on what running attempts (of this run or of
        // others) hold; timers bring back retries and the end of a pause.
        self.timers.is_empty() && self.waiting == 0 && self.pending_diagnoses.is_empty()
    }

    /// Starts ready tasks while there is room.
    fn dispatch<E: Executor>(&mut self, jobs: &mut JoinSet<Attempt>, executor: &Arc<E>) {
        // What was released since the last step: the tasks parked on it compete again.
        for task in self.resources.released() {
            if self.tasks[task].waiting && self.tasks[task].running.is_none() {
                let t = &self.plan.workflow.tasks[task];
                self.queue.push(task, t.priority, t.critical_path);
            }
        }
        if self.draining {
            return;
        }
        self.retry_diagnoses(jobs, executor);
        if self.cancelled || self.stopped || self.paused_since.is_some() {
            return;
        }
        while !self.queue.is_empty() {
            let Some(run_slot) = self.resources.run_slot() else {
                break;
            };
            let Some(task) = self.queue.pop() else { break };
            let state = &self.tasks[task];
            if !state.waiting || state.running.is_some() || state.outcome.is_some() {
                continue;
            }
            let t = &self.plan.workflow.tasks[task];
            let score = |a: usize| self.shared.governor.score(&self.plan.agents[a].key).value();
            let slots = AgentSlots {
                limits: &self.agent_limits,
                slots: &self.agent_slots,
                score: &score,
            };
            let acquired = self.resources.acquire(
                task,
                Some(run_slot),
                self.names[task].mutex,
                t.target.agents(),
                &state.failed_agents,
                &self.assigned,
                &slots,
            );
            match acquired {
                Acquired::Granted(agent, grant) => {
                    let job = self.start(task, agent, grant);
                    let executor = Arc::clone(executor);
                    let handle = jobs.spawn(async move { executor.execute(job).await });
                    self.jobs.insert(handle.id(), JobKind::Attempt(task));
                }
                // It stays `waiting`, parked on what it needs.
                Acquired::Parked => {}
                Acquired::Exhausted(message) => {
                    self.unwait(task);
                    let error = TaskError::new(ErrorKind::Budget, message);
                    self.settle(task, TaskStatus::BudgetExhausted, Some(error), true);
                }
            }
        }
    }

    /// Marks `task` running on `agent` under `grant` and builds its job.
    fn start(&mut self, task: usize, agent: usize, grant: Grant) -> Job {
        let wf = self.wf();
        let t = &wf.tasks[task];
        let attempt = self.next_attempt(task);
        let queued = self.tasks[task].ready_since.map(|since| since.elapsed());
        let task_ref = self.task_ref(task, Some(agent), attempt);
        let key = Name::from(crate::claims::key(&self.plan.run_id, &t.id, attempt));
        self.publish(TaskStatusUpdated {
            queued_ms: queued.map(millis),
            key: Some(key.clone()),
            ..TaskStatusUpdated::new(task_ref.clone(), TaskStatus::Running)
        });
        let mut upstream: Vec<_> = t
            .deps
            .iter()
            .filter_map(|&d| {
                if self.tasks[d].planned {
                    return None;
                }
                let outcome = self.tasks[d].outcome.as_ref()?;
                let result = if outcome.status.is_success() {
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
                Some((self.names[d].node.clone(), result))
            })
            .collect();
        if let Some(previous) = self.previous_iteration(task) {
            upstream.push((
                self.names[task].node.clone(),
                UpstreamResult::Output(previous),
            ));
        }
        let heartbeat = Arc::new(Heartbeat::new());
        let cancel = self.shared.cancel.child_token();
        let job = Job {
            task_ref,
            task: Some(task),
            key,
            agent,
            limits: grant.reservation.limits,
            heartbeat: Arc::clone(&heartbeat),
            params: Arc::clone(&self.names[task].params),
            upstream,
            cancel: cancel.clone(),
            keep_files: self.plan.tasks[task]
                .retry
                .iter()
                .find(|(a, _)| *a == agent)
                .is_some_and(|(_, r)| r.keep_files),
        };
        if let Some(stall) = &self.plan.tasks[task].stall {
            self.timers.push(std::cmp::Reverse((
                Instant::now() + stall.timeout,
                Timer::Stall(task, attempt),
            )));
        }
        self.unwait(task);
        let state = &mut self.tasks[task];
        state.queued = queued;
        state.running = Some(Running {
            agent,
            grant,
            cancel,
            heartbeat,
            reported: false,
            stopped_blocked: false,
            diagnosed: false,
        });
        self.assigned[agent] += 1;
        self.running += 1;
        let retry = self.tasks[task]
            .attempts
            .last()
            .is_some_and(|(_, a)| a.status != TaskStatus::Iterated);
        self.meter.started(retry);
        job
    }

    fn joined(&mut self, joined: Result<(tokio::task::Id, Attempt), tokio::task::JoinError>) {
        let (id, attempt) = match joined {
            Ok((id, attempt)) => (id, attempt),
            Err(e) => (
                e.id(),
                Attempt::not_run(
                    TaskStatus::Failed,
                    ErrorKind::Host,
                    format!("the executor of this task failed: {e}"),
                ),
            ),
        };
        match self.jobs.remove(&id) {
            Some(JobKind::Attempt(task)) => self.attempt_ended(task, attempt),
            Some(JobKind::Diagnosis(d)) => {
                let DiagnosisJob {
                    task,
                    attempt: number,
                    agent,
                    report,
                    grant,
                } = *d;
                self.diagnosis_ended(task, number, agent, report, grant, attempt)
            }
            None => {}
        }
    }

    fn attempt_ended(&mut self, task: usize, mut attempt: Attempt) {
        let Some(run) = self.tasks[task].running.take() else {
            return;
        };
        self.running -= 1;
        if self.plan.tasks[task].stall.is_some() {
            let number = self.next_attempt(task);
            self.timers.retain(
                |std::cmp::Reverse((_, t))| !matches!(t, Timer::Stall(n, a) if *n == task && *a == number),
            );
        }
        // What the attempt's end means, given why it was stopped or limited.
        if run.stopped_blocked && attempt.status == TaskStatus::Cancelled {
            attempt.status = TaskStatus::Blocked;
            attempt.error = Some(TaskError::new(
                ErrorKind::Blocked,
                "stopped: it reported no progress for its stall timeout",
            ));
        }
        let reservation = &run.grant.reservation;
        let budget_cap = match attempt.status {
            TaskStatus::OutOfFuel => reservation.fuel_cap.as_ref(),
            TaskStatus::TimedOut => reservation.time_cap.as_ref(),
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
        // A planner's plan, or a loop's next iteration, is checked now (the attempt ends
        // with why it may not join the run), and taken in once this end is published.
        let mut plan = None;
        // A memoized iteration (`cached`) goes on like one that ran.
        let iterates =
            attempt.status.is_success() && self.iterates(task, attempt.output.as_deref());
        if attempt.status.is_success() && !iterates {
            match self.growth_of(task, run.agent, attempt.output.clone()) {
                Ok(growth) => plan = growth,
                Err((status, error)) => {
                    attempt.status = status;
                    attempt.error = Some(error);
                }
            }
        }
        if iterates {
            attempt.status = TaskStatus::Iterated;
        }
        // Everything the attempt held goes back now: what it used is charged.
        let Grant { reservation, .. } = run.grant;
        reservation.settle(attempt.fuel_used, attempt.latency);
        let succeeded = attempt.status.is_success() || attempt.status == TaskStatus::Iterated;
        let cancelled = attempt.status == TaskStatus::Cancelled;
        let key = &self.plan.agents[run.agent].key;
        // A cancelled attempt says nothing about its agent.
        if !cancelled {
            self.shared.governor.record(key, attempt.latency, succeeded);
        }
        self.meter.ended(
            &self.plan.agents[run.agent].name,
            attempt.latency,
            succeeded,
        );
        let number = self.next_attempt(task);
        let task_ref = self.task_ref(task, Some(run.agent), number);
        let error = attempt.error.clone();
        let counted = !succeeded && !cancelled;
        let status = attempt.status;
        let update = TaskStatusUpdated {
            started_at: Some(attempt.started_at),
            finished_at: Some(attempt.finished_at),
            latency_ms: Some(millis(attempt.latency)),
            fuel_used: Some(attempt.fuel_used),
            memory_peak: Some(attempt.memory_peak),
            error: error.clone(),
            artifacts: attempt.artifacts.clone(),
            output: attempt.output.clone().map(Output),
            output_digest: attempt.output_digest.clone(),
            cached_from: attempt.cached_from.clone(),
            worker: attempt.worker.clone(),
            ..TaskStatusUpdated::new(task_ref, status)
        };
        self.tasks[task].attempts.push((run.agent, attempt));
        if counted {
            self.tasks[task].failed_agents.push(run.agent);
            let failure = error
                .clone()
                .unwrap_or_else(|| TaskError::new(ErrorKind::Failed, "failed"));
            self.failures
                .push((self.plan.workflow.tasks[task].id.clone(), number, failure));
        }
        if !cancelled {
            self.finished_attempts += 1;
        }
        if counted {
            self.check_error_budget();
        }
        if status == TaskStatus::Iterated {
            // The next iteration goes through the queue like any attempt.
            self.publish(update);
            self.timers
                .push(std::cmp::Reverse((Instant::now(), Timer::Retry(task))));
            return;
        }
        // A loop's retries count within the iteration: each iteration has the whole policy.
        let tries = number.saturating_sub(u32::try_from(self.iterations(task)).unwrap_or(u32::MAX));
        if let Some(delay) = self.retry_delay(task, run.agent, tries, status, error.as_ref()) {
            self.publish(TaskStatusUpdated {
                status: TaskStatus::Retrying,
                retry_in_ms: Some(millis(delay)),
                ..update
            });
            self.timers.push(std::cmp::Reverse((
                Instant::now() + delay,
                Timer::Retry(task),
            )));
            return;
        }
        let seq = self.publish(update);
        if let Some(growth) = plan {
            self.take_plan(task, growth);
        }
        if self.shared.bus.waits_for_durability() {
            // `sync` durability: the run acts on an outcome once the journal has it on disk.
            self.unsynced.push((task, status, error, seq));
            return;
        }
        self.settle(task, status, error, false);
    }

    /// Settles the outcomes whose events are now durable.
    fn settle_synced(&mut self) {
        for (task, status, error, _) in std::mem::take(&mut self.unsynced) {
            self.settle(task, status, error, false);
        }
    }

    fn run_info(&self) -> handoff::RunInfo<'_> {
        handoff::RunInfo {
            run_id: &self.plan.run_id,
            workflow: &self.plan.workflow.name,
            tenant: &self.plan.workflow.tenant,
        }
    }

    fn finish(mut self) -> Finished {
        // Drained with tasks left: they stay unsettled in the journal, for a resume.
        let drained =
            self.draining && !self.cancelled && self.tasks.iter().any(|t| t.outcome.is_none());
        if !drained {
            self.settle_unrun();
        }
        let fuel_used = self.resources.run_account().fuel_used();
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
            drained,
            workflow: self.plan.workflow,
        }
    }
}

#[cfg(test)]
mod tests;

/// What task `i` of `wf` is named, and whether its mutex group is new to `mutex_names`.
fn task_names(wf: &Workflow, i: usize, mutex_names: &mut Vec<String>) -> (TaskNames, bool) {
    let t = &wf.tasks[i];
    let mut new_mutex = false;
    let mutex = t.mutex.as_deref().map(|m| {
        mutex_names.iter().position(|n| n == m).unwrap_or_else(|| {
            mutex_names.push(m.to_owned());
            new_mutex = true;
            mutex_names.len() - 1
        })
    });
    let names = TaskNames {
        node: Name::from(&t.id),
        branch: Name::from(wf.branch(i)),
        label: Name::from(wf.target_label(i)),
        params: Arc::from(t.params.to_string()),
        mutex,
    };
    (names, new_mutex)
}
