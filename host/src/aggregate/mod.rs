//! The results of a run: one document with the run's status, every task's outcome, output,
//! timings, fuel and attempts, and the final outputs of the sink tasks.
//!
//! Owns the report's shape (it is what `--output results.json` writes). Builds it from the
//! scheduler's outcomes; never runs anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::limits::Budget;
use crate::model::report::{
    AgentReport, AttemptReport, DiagnosisReport, MessageCounts, RunMetrics, RunReport, TaskReport,
};
use crate::model::status::{ErrorKind, RunStatus};
use crate::model::time::Timestamp;
use crate::model::time::millis;
use crate::scheduler;
use crate::workflow::{Target, Workflow};

/// What the report is built from.
pub(crate) struct Finished<'a> {
    pub(crate) workflow: &'a Workflow,
    pub(crate) run_id: String,
    pub(crate) run: scheduler::Finished,
    pub(crate) agent_names: Vec<String>,
    pub(crate) cancelled: bool,
    pub(crate) started_at: Timestamp,
    pub(crate) duration: std::time::Duration,
    pub(crate) agents: BTreeMap<String, AgentReport>,
    pub(crate) blackboard: BTreeMap<String, serde_json::Value>,
    pub(crate) budget: Budget,
    pub(crate) metrics: RunMetrics,
    pub(crate) events: u64,
    pub(crate) directory: PathBuf,
    /// What each task did with messages, by node id (those that did nothing are absent).
    pub(crate) messages: BTreeMap<String, MessageCounts>,
}

/// A task that starts on a message and got none: it was not needed, which is no failure.
fn not_needed(o: &scheduler::TaskOutcome) -> bool {
    o.error
        .as_ref()
        .is_some_and(|e| e.kind == ErrorKind::NotNeeded)
}

pub(crate) fn report(f: Finished<'_>) -> RunReport {
    let wf = f.workflow;
    let outcomes = f.run.tasks;
    let all_critical_succeeded = wf
        .tasks
        .iter()
        .zip(&outcomes)
        .all(|(t, o)| !t.critical || o.status.is_success() || not_needed(o));
    let status = match (all_critical_succeeded, f.cancelled) {
        (true, _) => RunStatus::Succeeded,
        (false, true) => RunStatus::Cancelled,
        (false, false) => RunStatus::Failed,
    };
    let name = |agent: usize| f.agent_names.get(agent).cloned().unwrap_or_default();
    let mut counts = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let mut tasks = Vec::with_capacity(wf.tasks.len());

    for (i, (t, o)) in wf.tasks.iter().zip(outcomes).enumerate() {
        *counts.entry(o.status).or_insert(0) += 1;
        let last = o.attempts.last();
        let a = last.map(|(_, a)| a);
        let output = a
            .and_then(|a| a.output.clone())
            .filter(|_| o.status.is_success());
        let is_sink = wf
            .graph
            .neighbors(petgraph::graph::NodeIndex::new(i))
            .next()
            .is_none();
        if is_sink {
            outputs.insert(t.id.clone(), output.clone());
        }
        let (agent, capability) = match (&t.target, last) {
            (_, Some((agent, _))) => (name(*agent), capability_of(&t.target)),
            (Target::Agent(agent), None) => (name(*agent), None),
            (Target::Capability { name: cap, .. }, None) => (String::new(), Some(cap.clone())),
        };
        let history = o
            .attempts
            .iter()
            .enumerate()
            .map(|(n, (agent, a))| AttemptReport {
                attempt: n as u32 + 1,
                agent: name(*agent),
                status: a.status,
                error: a.error.clone(),
                started_at: a.started_at,
                latency_ms: millis(a.latency),
                fuel_used: a.fuel_used,
                worker: a.worker.as_ref().map(|w| w.to_string()),
            })
            .collect();
        tasks.push(TaskReport {
            node: t.id.clone(),
            agent,
            capability,
            status: o.status,
            critical: t.critical,
            depends_on: t.deps.iter().map(|&d| wf.tasks[d].id.clone()).collect(),
            attempts: o.attempts.len() as u32,
            output,
            error: o.error,
            started_at: a.map(|a| a.started_at),
            finished_at: a.map(|a| a.finished_at),
            latency_ms: a.map(|a| millis(a.latency)),
            queued_ms: o.queued.map(millis),
            fuel_used: a.map(|a| a.fuel_used),
            memory_peak: a.map(|a| a.memory_peak),
            artifacts: a.map(|a| a.artifacts.clone()).unwrap_or_default(),
            history,
            messages: f.messages.get(&t.id).copied(),
        });
    }
    let diagnoses = f
        .run
        .diagnoses
        .into_iter()
        .map(|d| DiagnosisReport {
            node: d.node,
            attempt: d.attempt,
            agent: d.agent,
            status: d.attempt_result.status,
            report: d.report,
            diagnosis: d.attempt_result.output,
            error: d.attempt_result.error,
        })
        .collect();
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
        diagnoses,
        budget: f.budget,
        metrics: f.metrics,
        counts,
        events: f.events,
        directory: f.directory,
    }
}

fn capability_of(target: &Target) -> Option<String> {
    match target {
        Target::Capability { name, .. } => Some(name.clone()),
        Target::Agent(_) => None,
    }
}
