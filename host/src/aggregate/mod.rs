//! The results of a run: one document with the run's status, every task's outcome, output,
//! timings, fuel and attempts, and the final outputs of the sink tasks.
//!
//! Owns the report's shape (it is what `--output results.json` writes). Builds it from the
//! scheduler's outcomes; never runs anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::bus::{RunStatus, TaskError, TaskStatus, Timestamp};
use crate::engine::CacheSource;
use crate::scheduler::{TaskOutcome, millis};
use crate::workflow::{Limits, Workflow};

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
    pub agent: String,
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

/// What the report is built from.
pub(crate) struct Finished<'a> {
    pub(crate) workflow: &'a Workflow,
    pub(crate) run_id: String,
    pub(crate) outcomes: Vec<TaskOutcome>,
    pub(crate) cancelled: bool,
    pub(crate) started_at: Timestamp,
    pub(crate) duration: std::time::Duration,
    pub(crate) agents: BTreeMap<String, AgentReport>,
    pub(crate) blackboard: BTreeMap<String, serde_json::Value>,
    pub(crate) events: u64,
    pub(crate) directory: PathBuf,
}

pub(crate) fn report(f: Finished<'_>) -> RunReport {
    let wf = f.workflow;
    let all_critical_succeeded = wf
        .tasks
        .iter()
        .zip(&f.outcomes)
        .all(|(t, o)| !t.critical || o.status == TaskStatus::Succeeded);
    let status = match (all_critical_succeeded, f.cancelled) {
        (true, _) => RunStatus::Succeeded,
        (false, true) => RunStatus::Cancelled,
        (false, false) => RunStatus::Failed,
    };
    let mut counts = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let mut tasks = Vec::with_capacity(wf.tasks.len());
    for (i, (t, o)) in wf.tasks.iter().zip(f.outcomes).enumerate() {
        *counts.entry(o.status).or_insert(0) += 1;
        let a = o.attempt.as_ref();
        let output = a.and_then(|a| a.output.clone());
        let is_sink = wf
            .graph
            .neighbors(petgraph::graph::NodeIndex::new(i))
            .next()
            .is_none();
        if is_sink {
            outputs.insert(t.id.clone(), output.clone());
        }
        tasks.push(TaskReport {
            node: t.id.clone(),
            agent: wf.agents[t.agent].name.clone(),
            status: o.status,
            critical: t.critical,
            depends_on: t.deps.iter().map(|&d| wf.tasks[d].id.clone()).collect(),
            attempts: o.attempts,
            output,
            error: o.error,
            started_at: a.map(|a| a.started_at),
            finished_at: a.map(|a| a.finished_at),
            latency_ms: a.map(|a| millis(a.latency)),
            queued_ms: o.queued.map(millis),
            fuel_used: a.map(|a| a.fuel_used),
            memory_peak: a.map(|a| a.memory_peak),
        });
    }
    RunReport {
        run_id: f.run_id,
        workflow: wf.name.clone(),
        tenant: wf.tenant.clone(),
        status,
        started_at: f.started_at,
        finished_at: Timestamp::now(),
        duration_ms: millis(f.duration),
        outputs,
        tasks,
        agents: f.agents,
        blackboard: f.blackboard,
        counts,
        events: f.events,
        directory: f.directory,
    }
}
