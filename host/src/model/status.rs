//! How tasks and runs end: task states, run outcomes, and the typed errors retry policies and
//! dashboards branch on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting for the tasks it depends on.
    Pending,
    /// Ready to run, waiting for a free slot (or its mutex).
    Ready,
    /// Running in a sandbox.
    Running,
    /// An attempt failed; another follows after a delay.
    Retrying,
    /// An iteration of a loop ended with an output, and did not say stop: the next iteration
    /// follows (it sees this output).
    Iterated,
    /// Returned an output.
    Succeeded,
    /// Returned an error, or the host could not run it.
    Failed,
    /// Ran past its wall-clock limit.
    TimedOut,
    /// Used all its fuel.
    OutOfFuel,
    /// Was denied memory beyond its limit and could not go on.
    MemoryExceeded,
    /// Trapped (a panic, an `unreachable`, an invalid memory access, ...).
    Trapped,
    /// Returned an output the host refused (too large, or not JSON).
    OutputRejected,
    /// Stopped because the run was cancelled.
    Cancelled,
    /// Not run, because a task it depends on did not succeed.
    Skipped,
    /// Reported no progress for its stall timeout, was stopped, and had no attempt left.
    Blocked,
    /// A tenant's or the workflow's budget (fuel or wall time) ran out.
    BudgetExhausted,
    /// Not run: a memoized task whose inputs matched an earlier run's, whose output it took.
    Cached,
}

impl TaskStatus {
    /// Whether the task has an output its dependents can use: it succeeded, or its output was
    /// reused from an earlier run.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Cached)
    }

    /// Whether the task is finished (succeeded or not).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Self::Pending | Self::Ready | Self::Running | Self::Retrying | Self::Iterated
        )
    }

    /// The kebab-case name used in events and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Iterated => "iterated",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::OutOfFuel => "out-of-fuel",
            Self::MemoryExceeded => "memory-exceeded",
            Self::Trapped => "trapped",
            Self::OutputRejected => "output-rejected",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Blocked => "blocked",
            Self::BudgetExhausted => "budget-exhausted",
            Self::Cached => "cached",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Every critical task succeeded.
    Succeeded,
    /// A critical task did not succeed.
    Failed,
    /// The run was cancelled before it finished.
    Cancelled,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        })
    }
}

/// Why a task did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TaskError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// The kind of a [`TaskError`]: what retry policies and dashboards branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The agent said its input is wrong.
    InvalidInput,
    /// The agent said its work failed.
    Failed,
    /// The agent said something it needs is unavailable.
    Unavailable,
    /// The guest trapped.
    Trap,
    /// The guest used all its fuel.
    OutOfFuel,
    /// The guest ran past its wall-clock limit.
    Timeout,
    /// The guest was denied memory beyond its limit.
    MemoryLimit,
    /// The output was larger than the agent's `max_output`.
    OutputTooLarge,
    /// The output was not valid JSON.
    OutputNotJson,
    /// The host could not run the task (instantiation, sandbox set-up).
    Host,
    /// The run was cancelled.
    Cancelled,
    /// A task this one depends on did not succeed.
    Dependency,
    /// The task reported no progress for its stall timeout and was stopped.
    Blocked,
    /// A budget (tenant or workflow: fuel or wall time) ran out.
    Budget,
    /// The run's error budget ran out before the task started.
    ErrorBudget,
    /// The attempt's idempotency key was claimed already: it runs elsewhere, not twice.
    Claimed,
    /// The process running the attempt stopped (killed, crashed, lost its machine) before the
    /// attempt ended; the run was resumed after it.
    Interrupted,
    /// The worker running the attempt (on another machine) stopped answering, and the
    /// attempt's redeliveries to other workers ran out too.
    WorkerLost,
    /// The task's agent is a planner, and the plan it returned was refused (an unknown agent,
    /// a cycle, too many tasks...): the message says why.
    InvalidPlan,
    /// The task starts on a message (`start = "on-message"`), and no task sent it one: it was
    /// not needed. A run whose tasks succeeded is still a success.
    NotNeeded,
}

impl ErrorKind {
    /// The kebab-case name used in events and results.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Failed => "failed",
            Self::Unavailable => "unavailable",
            Self::Trap => "trap",
            Self::OutOfFuel => "out-of-fuel",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory-limit",
            Self::OutputTooLarge => "output-too-large",
            Self::OutputNotJson => "output-not-json",
            Self::Host => "host",
            Self::Cancelled => "cancelled",
            Self::Dependency => "dependency",
            Self::Blocked => "blocked",
            Self::Budget => "budget",
            Self::ErrorBudget => "error-budget",
            Self::Claimed => "claimed",
            Self::Interrupted => "interrupted",
            Self::WorkerLost => "worker-lost",
            Self::InvalidPlan => "invalid-plan",
            Self::NotNeeded => "not-needed",
        }
    }
}
