//! The typed events of a run. Their JSON names follow the source documents:
//! `agent.plan.created`, `agent.task.status.updated`, `agent.run.completed`, and so on.
//!
//! Every string a guest controls reaches an event already bounded by the host (see the
//! emitter); control characters are kept as they came, and escaped by whoever prints them
//! (see [`super::text`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Name;
use super::limits::Budget;
use super::policy::{OnBlocked, OnErrorBudget};
use super::report::RunMetrics;
use super::status::{RunStatus, TaskError, TaskStatus};
use super::time::Timestamp;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Position in the run's stream: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The run this event belongs to (a journal's line leaves it out: its row names it).
    #[serde(default)]
    pub run_id: Name,
    /// When the host emitted it.
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    /// The run was validated and is about to start.
    #[serde(rename = "agent.plan.created")]
    PlanCreated(PlanCreated),
    /// A task changed state (pending, ready, running, or a final outcome).
    #[serde(rename = "agent.task.status.updated")]
    TaskStatus(TaskStatusUpdated),
    /// A running guest reported progress.
    #[serde(rename = "agent.task.progress")]
    Progress(TaskProgress),
    /// A running guest published a partial result.
    #[serde(rename = "agent.task.partial")]
    Partial(TaskPartial),
    /// A guest wrote a log line (through `status.log`, stdout or stderr), or the host did
    /// about a task.
    #[serde(rename = "agent.task.log")]
    Log(TaskLog),
    /// A running task reported no progress for its stall timeout.
    #[serde(rename = "agent.task.blocked")]
    TaskBlocked(TaskBlocked),
    /// A blocked task was handed to a diagnostic agent, which answered.
    #[serde(rename = "agent.task.handoff")]
    TaskHandoff(TaskHandoff),
    /// The run's error budget ran out: it starts no more tasks (for a while, or at all).
    #[serde(rename = "agent.run.paused")]
    RunPaused(RunPaused),
    /// A paused run starts tasks again.
    #[serde(rename = "agent.run.resumed")]
    RunResumed(RunResumed),
    /// What a task may reach, as it starts: tools, secrets, files, blackboard.
    #[serde(rename = "agent.task.grants")]
    TaskGrants(TaskGrants),
    /// A decision about something a guest asked for: allowed or denied, and why.
    #[serde(rename = "agent.audit")]
    Audit(AuditRecord),
    /// The run's credential (for secrets) was issued, renewed or revoked.
    #[serde(rename = "agent.run.credential")]
    Credential(CredentialEvent),
    /// The run's metrics, published as it ends.
    #[serde(rename = "agent.run.metrics")]
    RunMetrics(RunMetrics),
    /// The run ended.
    #[serde(rename = "agent.run.completed")]
    RunCompleted(RunCompleted),
    /// Where the run's attempts go changed: to a pool's workers, or here (no worker could be
    /// reached).
    #[serde(rename = "agent.dispatch.changed")]
    Dispatch(DispatchChanged),
    /// A task sent a message to another task of its run.
    #[serde(rename = "agent.message.sent")]
    MessageSent(MessageSent),
    /// A task took a message from its inbox.
    #[serde(rename = "agent.message.received")]
    MessageReceived(MessageReceived),
}

impl EventKind {
    /// The event's name, as in its `event` field (e.g. `agent.task.status.updated`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::PlanCreated(_) => "agent.plan.created",
            Self::TaskStatus(_) => "agent.task.status.updated",
            Self::Progress(_) => "agent.task.progress",
            Self::Partial(_) => "agent.task.partial",
            Self::Log(_) => "agent.task.log",
            Self::TaskBlocked(_) => "agent.task.blocked",
            Self::TaskHandoff(_) => "agent.task.handoff",
            Self::RunPaused(_) => "agent.run.paused",
            Self::RunResumed(_) => "agent.run.resumed",
            Self::TaskGrants(_) => "agent.task.grants",
            Self::Audit(_) => "agent.audit",
            Self::Credential(_) => "agent.run.credential",
            Self::RunMetrics(_) => "agent.run.metrics",
            Self::RunCompleted(_) => "agent.run.completed",
            Self::Dispatch(_) => "agent.dispatch.changed",
            Self::MessageSent(_) => "agent.message.sent",
            Self::MessageReceived(_) => "agent.message.received",
        }
    }
}

/// A message one task sent another (its size, never its body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageSent {
    /// The sender.
    #[serde(flatten)]
    pub task: TaskRef,
    /// The receiver's node id.
    pub to: Name,
    /// Its place in the receiver's inbox (1 for the first message it was sent).
    pub index: u64,
    pub bytes: u64,
}

/// A message a task took from its inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageReceived {
    /// The receiver.
    #[serde(flatten)]
    pub task: TaskRef,
    /// The sender's node id.
    pub from: Name,
    /// Its place in this task's inbox.
    pub index: u64,
    pub bytes: u64,
}

/// Where a run's attempts go now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DispatchChanged {
    /// The pool of workers.
    pub pool: Name,
    /// `workers` (the pool's), or `local` (this process, at the pool's degraded concurrency).
    pub to: Name,
    pub reason: String,
}

/// A task that stopped reporting progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskBlocked {
    #[serde(flatten)]
    pub task: TaskRef,
    /// How long it has been silent.
    pub stalled_ms: f64,
    pub stall_timeout_ms: f64,
    /// The last progress it reported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress: Option<LastProgress>,
    /// What the policy does about it.
    pub action: OnBlocked,
}

/// The grants in force for one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskGrants {
    #[serde(flatten)]
    pub task: TaskRef,
    pub tenant: Name,
    /// Tools it may call (its agent's grant, within its tenant's).
    pub tools: Vec<String>,
    /// Secrets it may read (by name).
    pub secrets: Vec<String>,
    /// Its working directory (read-write), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Read-only inputs, as the guest sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Its blackboard scope.
    pub blackboard: String,
}

/// A decision about something a guest asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    #[serde(flatten)]
    pub task: TaskRef,
    pub tenant: Name,
    pub resource: AuditResource,
    /// What was asked, e.g. `http_get`, `read ../x`, `put shared/count`.
    pub action: String,
    pub decision: Decision,
    pub reason: String,
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditResource {
    Tool,
    Quota,
    Secret,
    Blackboard,
    File,
    Claim,
    Message,
}

impl AuditResource {
    /// The kebab-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Quota => "quota",
            Self::Secret => "secret",
            Self::Blackboard => "blackboard",
            Self::File => "file",
            Self::Claim => "claim",
            Self::Message => "message",
        }
    }
}

/// Allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Allowed,
    Denied,
}

impl CredentialAction {
    /// The kebab-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Renewed => "renewed",
            Self::Revoked => "revoked",
        }
    }
}

/// A change to a run's credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CredentialEvent {
    pub tenant: String,
    /// The credential's id (never a secret).
    pub credential: String,
    pub action: CredentialAction,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    pub reason: String,
}

/// What happened to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialAction {
    Issued,
    Renewed,
    Revoked,
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LastProgress {
    pub fraction: f32,
    pub message: String,
}

/// The answer of a diagnostic agent to a handoff report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskHandoff {
    /// The blocked task.
    #[serde(flatten)]
    pub task: TaskRef,
    /// The diagnostic agent.
    pub diagnostic_agent: String,
    /// How the diagnosis ended, and its output.
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// A run's error budget ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunPaused {
    pub failures: u32,
    pub finished: u32,
    pub action: OnErrorBudget,
    /// What went wrong, for whoever takes over: the failures, the blackboard.
    pub handoff: serde_json::Value,
}

/// A paused run goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunResumed {
    pub paused_ms: f64,
}

/// The plan a run starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlanCreated {
    pub workflow: String,
    pub tenant: String,
    pub max_concurrency: usize,
    /// The run's budget, within its tenant's.
    #[serde(default)]
    pub budget: Budget,
    pub tasks: Vec<PlannedTask>,
    /// A plan a planner task returned, spliced in while the run goes on: that task's id
    /// (`tasks` are those it added). `None`: the run's first plan, its workflow's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<String>,
    /// With a planner: the run's tasks that now wait for the plan too (its dependents), each
    /// with all its dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<PlannedTask>,
    /// With a planner that ended an iteration of a loop over a child workflow: the loop and
    /// the iteration `tasks` are; `planner` is the last task of the one before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<LoopIteration>,
    /// What the operator should know about how the run is governed (e.g. that its tenant is
    /// not named in the policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// An iteration of a loop over a child workflow, added while the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoopIteration {
    /// The loop's task id (its iterations' tasks are `<loop>.<n>.<id>`).
    #[serde(rename = "loop")]
    pub looped: String,
    /// Which iteration (2 for the second: the first starts with the run).
    pub n: u32,
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PlannedTask {
    pub node: String,
    pub agent: String,
    pub depends_on: Vec<String>,
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutex: Option<String>,
    pub critical: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which task (and which attempt of it) an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRef {
    pub node: Name,
    /// The task's isolated execution path, `<workflow>.<node>`.
    pub branch: Name,
    pub agent: Name,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// A task's state changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskStatusUpdated {
    #[serde(flatten)]
    pub task: TaskRef,
    pub status: TaskStatus,
    /// When the attempt started running (final states only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When the attempt ended (final states only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// How long the attempt ran, in milliseconds (final states only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// How long the task waited between ready and running, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<f64>,
    /// Fuel the attempt used (final states only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// The most linear memory the attempt held, in bytes (final states only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<u64>,
    /// Why the task (or this attempt) did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// For `retrying`: the delay before the next attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<f64>,
    /// For `running`: the attempt's idempotency key (`<run>/<node>/<attempt>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Name>,
    /// Files the attempt left in its working directory (final states only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The output (valid JSON), for `succeeded` and `cached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    /// SHA-256 of the output: how the journal stores it (once) and a memoized task finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_digest: Option<Name>,
    /// For `cached`: the run whose output was reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<Name>,
    /// The worker (of a pool) that ran the attempt, when not the coordinator (final states
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Name>,
}

/// A task's output: valid JSON text, shared (never copied per event or subscriber).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Output(pub Arc<RawValue>);

impl Output {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Output {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl TaskStatusUpdated {
    /// A change to `status`, with nothing else to say.
    pub(crate) fn new(task: TaskRef, status: TaskStatus) -> Self {
        Self {
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
            output: None,
            output_digest: None,
            cached_from: None,
            worker: None,
        }
    }
}

/// A file a task wrote in its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Artifact {
    /// Its path in the working directory, `/`-separated.
    pub path: String,
    pub bytes: u64,
}

/// Progress of a running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskProgress {
    #[serde(flatten)]
    pub task: TaskRef,
    /// Between 0 and 1.
    pub fraction: f32,
    pub message: String,
    /// How many earlier updates this one replaces (the host coalesces rapid updates).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub coalesced: u64,
}

/// A partial result of a running task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskPartial {
    #[serde(flatten)]
    pub task: TaskRef,
    /// 1 for the task's first partial result.
    pub index: u32,
    pub data: serde_json::Value,
}

/// A log line of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskLog {
    #[serde(flatten)]
    pub task: TaskRef,
    pub level: LogLevel,
    pub stream: LogStream,
    pub message: String,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunCompleted {
    pub workflow: String,
    pub status: RunStatus,
    pub duration_ms: f64,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The guest's `status.log` calls.
    Guest,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The host, about the task (for example, dropped log lines).
    Host,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status::ErrorKind;

    #[test]
    fn events_round_trip_through_json_with_their_source_names() {
        let event = Event {
            seq: 7,
            run_id: "r1".into(),
            at: Timestamp::now(),
            kind: EventKind::TaskStatus(TaskStatusUpdated {
                task: TaskRef {
                    node: "left".into(),
                    branch: "calc.left".into(),
                    agent: "add".into(),
                    attempt: 1,
                },
                status: TaskStatus::OutOfFuel,
                started_at: None,
                finished_at: None,
                latency_ms: Some(1.5),
                queued_ms: None,
                fuel_used: Some(42),
                memory_peak: None,
                error: Some(TaskError::new(ErrorKind::OutOfFuel, "all fuel used")),
                retry_in_ms: None,
                key: None,
                artifacts: Vec::new(),
                output: None,
                output_digest: None,
                cached_from: None,
                worker: None,
            }),
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["event"], "agent.task.status.updated");
        assert_eq!(json["status"], "out-of-fuel");
        assert_eq!(json["node"], "left");
        assert_eq!(json["error"]["kind"], "out-of-fuel");
        assert!(json.get("started_at").is_none());
        let back: Event = serde_json::from_value(json).expect("deserializes");
        // Timestamps keep microseconds only.
        assert_eq!(back.kind, event.kind);
        assert_eq!(back.seq, 7);
    }
}
