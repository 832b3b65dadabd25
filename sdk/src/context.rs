//! What a task receives: its parameters, where it runs, and how its upstream tasks ended.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::wasm_orch::agent::types::{self, UpstreamOutcome};

/// How an upstream task that did not succeed ended: [`TaskStatus::TimedOut`], ...
/// Displayed by its contract name (`timed-out`), the `status` of the run's results.
pub use crate::wit::wasm_orch::agent::types::TaskStatus;

/// Why an upstream task's last attempt failed: [`FailureKind::Trap`], ...
/// Displayed by its contract name (`out-of-fuel`), the `error.kind` of the run's results.
/// (Not [`crate::ErrorKind`], the kinds of error an agent itself returns.)
pub use crate::wit::wasm_orch::agent::types::ErrorKind as FailureKind;

impl TaskStatus {
    /// Its name in the contract and in the run's results.
    pub fn as_str(&self) -> &'static str {
        match self {
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
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FailureKind {
    /// Its name in the contract and in the run's results.
    pub fn as_str(&self) -> &'static str {
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
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task runs. Set by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Unique id of this workflow run.
    pub run_id: String,
    /// The task's node id in the workflow.
    pub node: String,
    /// The task's branch, `<workflow>.<node>`.
    pub branch: String,
    /// 1 for the first attempt, one more on each retry.
    pub attempt: u32,
    /// The tenant the run belongs to.
    pub tenant: String,
}

/// Why an upstream task produced no output.
///
/// A task sees failures only when the workflow says it runs on upstream failure
/// (`on_upstream_failure = "run"`); otherwise it is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// Its final status.
    pub status: TaskStatus,
    /// The kind of error its last attempt ended with.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

/// An upstream task and how it ended: its output, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream<T> {
    /// The upstream task's node id.
    pub node: String,
    /// Its output, or its failure.
    pub outcome: Result<T, UpstreamFailure>,
}

/// The input of one task: typed parameters plus upstream outcomes.
#[derive(Debug)]
pub struct Context<P> {
    /// The task's parameters, from `with` in the workflow file.
    pub params: P,
    task: Task,
    upstream: Vec<types::Upstream>,
}

impl<P> Context<P> {
    pub(crate) fn new(params: P, task: types::Task, upstream: Vec<types::Upstream>) -> Self {
        let task = Task {
            run_id: task.run_id,
            node: task.node,
            branch: task.branch,
            attempt: task.attempt,
            tenant: task.tenant,
        };
        Self {
            params,
            task,
            upstream,
        }
    }

    /// Where this task runs.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The output of the upstream task `node`, deserialized.
    ///
    /// Fails with `invalid-input` if this task does not depend on `node`, if `node` failed,
    /// or if its output does not have the expected shape.
    pub fn upstream<T: DeserializeOwned>(&self, node: &str) -> Result<T, Error> {
        let up = self
            .upstream
            .iter()
            .find(|u| u.node == node)
            .ok_or_else(|| Error::invalid_input(format!("no upstream task named `{node}`")))?;
        output(up)
    }

    /// In a loop (`loop = { max_iterations = N }` on the task), what the previous iteration
    /// returned; `None` on the first. Return `"done": true` (or `"escalate": true`) in an
    /// object to stop the loop before its last iteration.
    pub fn previous<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.upstream
            .iter()
            .find(|u| u.node == self.task.node)
            .map(output)
            .transpose()
    }

    /// Every upstream output, in `depends_on` order, deserialized as `T`. Fails if any upstream
    /// task failed: use [`Context::upstream_outcomes`] to handle failures.
    pub fn upstream_all<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        self.dependencies().map(output).collect()
    }

    /// The upstream tasks this one depends on: all but a loop's previous iteration (which
    /// the host passes as this task's own node; see [`Context::previous`]).
    fn dependencies(&self) -> impl Iterator<Item = &types::Upstream> {
        self.upstream.iter().filter(|u| u.node != self.task.node)
    }

    /// Every upstream task with its output (deserialized as `T`) or its failure, in
    /// `depends_on` order. An output of the wrong shape is an error.
    pub fn upstream_outcomes<T: DeserializeOwned>(&self) -> Result<Vec<Upstream<T>>, Error> {
        self.dependencies()
            .map(|up| {
                let outcome = match &up.outcome {
                    UpstreamOutcome::Output(_) => Ok(output(up)?),
                    UpstreamOutcome::Failed(f) => Err(UpstreamFailure {
                        status: f.status,
                        kind: f.kind,
                        message: f.message.clone(),
                    }),
                };
                Ok(Upstream {
                    node: up.node.clone(),
                    outcome,
                })
            })
            .collect()
    }

    /// Upstream node ids and their raw JSON outputs (`None` for a failed one), in
    /// `depends_on` order.
    pub fn upstream_raw(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.dependencies().map(|u| {
            let output = match &u.outcome {
                UpstreamOutcome::Output(json) => Some(json.as_str()),
                UpstreamOutcome::Failed(_) => None,
            };
            (u.node.as_str(), output)
        })
    }
}

fn output<T: DeserializeOwned>(up: &types::Upstream) -> Result<T, Error> {
    match &up.outcome {
        UpstreamOutcome::Output(json) => serde_json::from_str(json).map_err(|e| {
            Error::invalid_input(format!(
                "output of upstream task `{}` has an unexpected shape: {e}",
                up.node
            ))
        }),
        UpstreamOutcome::Failed(f) => Err(Error::invalid_input(format!(
            "upstream task `{}` ended {} ({}): {}",
            up.node, f.status, f.kind, f.message
        ))),
    }
}
