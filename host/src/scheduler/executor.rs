//! The interface between the scheduler and whatever runs a task: the local Wasm engine now,
//! remote workers later. The scheduler decides *when* a task runs; an executor decides *how*.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::bus::{Artifact, ErrorKind, Heartbeat, TaskError, TaskRef, TaskStatus, Timestamp};
use crate::workflow::Limits;

/// One attempt of one task (or a diagnosis of one), as handed to an executor.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) task_ref: TaskRef,
    /// The task (an index in the workflow's tasks); `None` for a diagnosis.
    pub(crate) task: Option<usize>,
    /// The attempt's idempotency key: an executor claims it before running anything.
    pub(crate) key: String,
    /// The agent that runs it (an index in the run's agents).
    pub(crate) agent: usize,
    /// Its limits: the agent's, cut to what the budgets have left.
    pub(crate) limits: Limits,
    /// Where the attempt's progress reports are recorded.
    pub(crate) heartbeat: Arc<Heartbeat>,
    /// The task's parameters, JSON text.
    pub(crate) params: String,
    /// How the tasks it depends on ended, in `depends_on` order.
    pub(crate) upstream: Vec<(String, UpstreamResult)>,
    /// Cancelled when the run is: the executor must then end the attempt promptly.
    pub(crate) cancel: CancellationToken,
}

/// How an upstream task ended, as given to its dependents.
#[derive(Debug, Clone)]
pub(crate) enum UpstreamResult {
    Output(Arc<RawValue>),
    /// Given only to tasks that run on upstream failure.
    Failed {
        status: TaskStatus,
        error: TaskError,
    },
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// A final status.
    pub(crate) status: TaskStatus,
    /// The output (valid JSON) if the attempt succeeded.
    pub(crate) output: Option<Arc<RawValue>>,
    pub(crate) error: Option<TaskError>,
    pub(crate) started_at: Timestamp,
    pub(crate) finished_at: Timestamp,
    pub(crate) latency: Duration,
    pub(crate) fuel_used: u64,
    pub(crate) memory_peak: u64,
    /// Files left in its working directory.
    pub(crate) artifacts: Vec<Artifact>,
}

impl Attempt {
    /// An attempt that ended before the guest ran, for `reason`.
    pub(crate) fn not_run(status: TaskStatus, kind: ErrorKind, message: String) -> Self {
        let now = Timestamp::now();
        Self {
            status,
            output: None,
            error: Some(TaskError::new(kind, message)),
            started_at: now,
            finished_at: now,
            latency: Duration::ZERO,
            fuel_used: 0,
            memory_peak: 0,
            artifacts: Vec::new(),
        }
    }
}

/// Runs task attempts.
pub(crate) trait Executor: Send + Sync + 'static {
    /// Runs one attempt to its end. Never fails: every way an attempt can end is an
    /// [`Attempt`]. Guest events (progress, logs) are the executor's to publish; the scheduler
    /// publishes state changes.
    fn execute(&self, job: Job) -> impl Future<Output = Attempt> + Send;
}
