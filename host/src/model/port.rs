//! The port between the scheduler and whatever runs an attempt: the local Wasm engine, a test
//! fake, or (later) a remote worker. The scheduler decides *when* an attempt runs and with what
//! grants; an [`Executor`] decides *how*. They share only these types.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::Name;
use super::events::{Artifact, TaskRef};
use super::limits::Limits;
use super::status::{ErrorKind, TaskError, TaskStatus};
use super::time::Timestamp;

/// One attempt of one task (or a diagnosis of one), as handed to an executor.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) task_ref: TaskRef,
    /// The task (an index in the workflow's tasks); `None` for a diagnosis.
    pub(crate) task: Option<usize>,
    /// The attempt's idempotency key: an executor claims it before running anything.
    pub(crate) key: Name,
    /// The agent that runs it (an index in the run's agents).
    pub(crate) agent: usize,
    /// Its limits: the agent's, cut to what the budgets have left.
    pub(crate) limits: Limits,
    /// Where the attempt's progress reports are recorded.
    pub(crate) heartbeat: Arc<Heartbeat>,
    /// The task's parameters, JSON text (shared by every attempt of the task).
    pub(crate) params: Arc<str>,
    /// How the tasks it depends on ended, in `depends_on` order.
    pub(crate) upstream: Vec<(Name, UpstreamResult)>,
    /// Cancelled when the run is (or the attempt is stopped): the executor must then end the
    /// attempt promptly.
    pub(crate) cancel: CancellationToken,
    /// A retry that keeps the files earlier attempts left in its working directory (by its
    /// retry policy); otherwise every attempt starts with an empty one.
    pub(crate) keep_files: bool,
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
    /// The output (valid JSON) if the attempt succeeded, and its SHA-256.
    pub(crate) output: Option<Arc<RawValue>>,
    pub(crate) output_digest: Option<Name>,
    /// For a memoized attempt (`cached`): the run whose output it reused.
    pub(crate) cached_from: Option<Name>,
    /// The worker (of a pool) that ran it; `None`: this process.
    pub(crate) worker: Option<Name>,
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
    /// An attempt that ended before the guest ran, for `message`.
    pub(crate) fn not_run(status: TaskStatus, kind: ErrorKind, message: String) -> Self {
        let now = Timestamp::now();
        Self {
            status,
            output: None,
            output_digest: None,
            cached_from: None,
            worker: None,
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

/// When a running attempt last reported progress, and what: how the scheduler tells a blocked
/// attempt from a busy one. The executor beats it; the scheduler reads it.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    started: Instant,
    /// Milliseconds after `started` of the last progress report (0: none yet).
    last_ms: AtomicU64,
    last: Mutex<Option<(f32, String)>>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    pub(crate) fn beat(&self, fraction: f32, message: &str) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms.max(1), Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((fraction, message.to_owned()));
    }

    /// How long, at `now`, since the last progress report (or since the attempt started).
    pub(crate) fn silent_at(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.started)
            .saturating_sub(last)
    }

    /// When the attempt last showed life (its last report, or its start).
    pub(crate) fn last_sign(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// The last progress reported, if any.
    pub(crate) fn last(&self) -> Option<(f32, String)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
