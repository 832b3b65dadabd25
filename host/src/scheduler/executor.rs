//! The interface between the scheduler and whatever runs a task: the local Wasm engine now,
//! remote workers later. The scheduler decides *when* a task runs; an executor decides *how*.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::bus::{ErrorKind, TaskError, TaskRef, TaskStatus, Timestamp};

/// One attempt of one task, as handed to an executor.
#[derive(Debug)]
pub(crate) struct Job {
    /// Index of the task in the workflow.
    pub(crate) task: usize,
    pub(crate) task_ref: TaskRef,
    /// The task's parameters, JSON text.
    pub(crate) params: String,
    /// Outputs of the tasks it depends on, in `depends_on` order.
    pub(crate) upstream: Vec<(String, Arc<RawValue>)>,
    /// Cancelled when the run is: the executor must then end the attempt promptly.
    pub(crate) cancel: CancellationToken,
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
