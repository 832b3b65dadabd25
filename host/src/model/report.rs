//! The results of a run as one document (what `--output results.json` writes): the run's
//! status, every task's outcome, output, timings, fuel and attempts, the sink tasks' outputs,
//! and what the run measured.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::events::Artifact;
use super::limits::{Budget, Limits};
use super::status::{RunStatus, TaskError, TaskStatus};
use super::time::Timestamp;

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub tenant: String,
    /// `succeeded` when every critical task succeeded.
    pub status: RunStatus,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub duration_ms: f64,
    /// The outputs of the sink tasks (those no task depends on), by node; `null` for a sink
    /// that did not succeed.
    pub outputs: BTreeMap<String, Option<Arc<RawValue>>>,
    /// Every task, in file order.
    pub tasks: Vec<TaskReport>,
    /// The agents the run used and how their components were loaded.
    pub agents: BTreeMap<String, AgentReport>,
    /// The run's blackboard at the end: key → `{ value, version }`.
    pub blackboard: BTreeMap<String, serde_json::Value>,
    /// Diagnoses of blocked tasks by the diagnostic agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnoses: Vec<DiagnosisReport>,
    /// The run's budget (within its tenant's).
    #[serde(default, skip_serializing_if = "budget_is_unlimited")]
    pub budget: Budget,
    pub metrics: RunMetrics,
    /// How many tasks ended in each state.
    pub counts: BTreeMap<TaskStatus, usize>,
    /// How many events the run published.
    pub events: u64,
    /// The run's directory (tasks' working directories).
    pub directory: PathBuf,
}

/// How one task ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskReport {
    pub node: String,
    /// The agent of its last attempt (or the agent it would have run on).
    pub agent: String,
    /// The capability it asked for, if it named one instead of an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    pub status: TaskStatus,
    pub critical: bool,
    pub depends_on: Vec<String>,
    /// Attempts made (0 when it never ran).
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Arc<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Running time of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Time between ready and running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<u64>,
    /// Files its last attempt left in its working directory (`directory/<branch>/<path>`),
    /// which its dependents may read under `upstream/<node>/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Every attempt, first to last (more than one when it was retried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptReport>,
    /// The messages it sent and received (none: it did neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
}

/// What one task did with messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageCounts {
    /// Messages it sent (that reached an inbox).
    pub sent: u64,
    /// Messages it took from its inbox.
    pub received: u64,
    /// Sends of its that were refused (each is an audit record).
    pub refused: u64,
    /// Messages left unread in its inbox when it ended.
    pub unread: u64,
}

/// One attempt of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttemptReport {
    pub attempt: u32,
    pub agent: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    pub started_at: Timestamp,
    pub latency_ms: f64,
    pub fuel_used: u64,
    /// The worker (of a pool) that ran it; absent: the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// A diagnostic agent's answer about a blocked task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiagnosisReport {
    /// The blocked task and its attempt.
    pub node: String,
    pub attempt: u32,
    /// The diagnostic agent.
    pub agent: String,
    pub status: TaskStatus,
    /// The handoff report it was given.
    pub report: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Arc<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// What the run measured (names after the source documents' metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunMetrics {
    /// `agent.task.parallelism`: tasks running at once, over time.
    pub parallelism: Parallelism,
    /// Attempts started.
    pub attempts: u64,
    /// Attempts beyond a task's first (retries, reassignments).
    pub retry_total: u64,
    /// `agent.task.repeat_total`: repeated claims of an attempt's idempotency key, refused
    /// (a task never runs twice for one dispatch).
    pub repeat_total: u64,
    /// `agent.task.blocked_total`: times a running task was found silent past its stall
    /// timeout.
    pub blocked_total: u64,
    /// Attempts that did not succeed (cancelled ones aside).
    pub failures: u64,
    /// `agent.statebus.lag_ms`: from an event's publication to its receipt by a subscriber.
    pub statebus_lag_ms: Lag,
    /// `agent.result.generation_latency`: from the last task's end to the aggregated result.
    pub result_generation_latency_ms: f64,
    /// Fuel burned by this run, and by its tenant in this runtime so far.
    pub fuel: FuelUse,
    /// Events the run's bus dropped from its bounded history (a subscriber that read late
    /// missed them; see `EventStream::missed`).
    #[serde(default)]
    pub events_evicted: u64,
    /// Per agent: attempts, time busy, utilisation, learned score.
    pub agents: BTreeMap<String, AgentUsage>,
    /// Per worker of a pool that ran attempts of this run: attempts, successes, time busy.
    /// Attempts started and counted in none of them ran on the coordinator (`local_attempts`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workers: BTreeMap<String, WorkerUsage>,
    /// Attempts started on the coordinator itself (all of them, without a pool).
    #[serde(default)]
    pub local_attempts: u64,
    /// `total_messages`: messages the run's tasks sent one another (per task: `messages` of
    /// each task's results).
    #[serde(default)]
    pub total_messages: u64,
}

/// What one worker did for a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerUsage {
    pub attempts: u64,
    pub succeeded: u64,
    /// Time its attempts ran, summed.
    pub busy_ms: f64,
}

/// Tasks running at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Parallelism {
    pub max: usize,
    /// Averaged over the run's duration.
    pub mean: f64,
    /// `[milliseconds since the start, tasks running from then on]`.
    pub timeline: Vec<(f64, usize)>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lag {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Lag {
    pub(crate) fn from_samples(mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| {
            samples
                .get(((samples.len().saturating_sub(1)) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Self {
            samples: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// Fuel of a run and of its tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FuelUse {
    pub run: u64,
    pub tenant: String,
    /// Everything the tenant burned in this runtime so far.
    pub tenant_total: u64,
}

/// How an agent was used in the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentUsage {
    pub attempts: u64,
    pub succeeded: u64,
    /// Time its attempts ran, summed.
    pub busy_ms: f64,
    /// Busy time over what it could have run (the run's duration times the tasks it may run
    /// at once).
    pub utilisation: f64,
    /// What the runtime has learned of it (moving averages, across runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<AgentScore>,
}

fn budget_is_unlimited(b: &Budget) -> bool {
    b.is_unlimited()
}

/// An agent of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub component: PathBuf,
    /// SHA-256 of the component file.
    pub digest: String,
    /// Whether it was compiled or loaded from a cache.
    pub cache: CacheSource,
    /// Time to compile or load it.
    pub load_ms: f64,
    pub limits: Limits,
}

impl RunReport {
    /// The report of a task, by node id.
    pub fn task(&self, node: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.node == node)
    }

    /// The output of a task, parsed, if it succeeded.
    pub fn output(&self, node: &str) -> Option<serde_json::Value> {
        let raw = self.task(node)?.output.as_ref()?;
        serde_json::from_str(raw.get()).ok()
    }
}

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CacheSource {
    /// Compiled from the `.wasm` file by this process.
    Compiled,
    /// Loaded from the on-disk cache: no compilation.
    DiskCache,
    /// Already loaded by this process.
    Memory,
}

/// An agent's record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentScore {
    /// Moving average of attempt latency, in milliseconds.
    pub latency_ms: f64,
    /// Moving average of success (1: every attempt succeeded).
    pub success_rate: f64,
    /// Attempts recorded.
    pub attempts: u64,
}

impl Default for AgentScore {
    /// An agent never tried is assumed good, so that it gets tried.
    fn default() -> Self {
        Self {
            latency_ms: 0.0,
            success_rate: 1.0,
            attempts: 0,
        }
    }
}

impl AgentScore {
    /// Higher is better: the success rate, discounted by latency (a second halves it).
    pub fn value(&self) -> f64 {
        self.success_rate / (1.0 + self.latency_ms / 1000.0)
    }
}
