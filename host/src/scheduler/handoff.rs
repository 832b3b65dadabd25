//! Handoff reports: what whoever takes over a problem needs to know — the task, its attempts
//! and errors, its last progress, and a snapshot of the run's blackboard.

use serde_json::{Value, json};

use crate::model::status::TaskError;
use crate::model::time::Timestamp;

/// One attempt, as a report shows it.
fn attempt_json(agent: &str, a: &super::Attempt, attempt: usize) -> Value {
    json!({
        "attempt": attempt + 1,
        "agent": agent,
        "status": a.status,
        "error": a.error,
        "latency_ms": a.latency.as_secs_f64() * 1000.0,
        "fuel_used": a.fuel_used,
    })
}

/// What a diagnostic agent receives about a task that stopped reporting progress.
#[allow(clippy::too_many_arguments)]
pub(crate) fn blocked(
    run: &RunInfo<'_>,
    node: &str,
    agent: &str,
    attempt: u32,
    params: &Value,
    stalled_ms: f64,
    stall_timeout_ms: f64,
    last_progress: Option<(f32, String)>,
    earlier: &[(String, super::Attempt)],
    blackboard: Value,
) -> Value {
    json!({
        "report_type": "blocked_task",
        "run_id": run.run_id,
        "workflow": run.workflow,
        "tenant": run.tenant,
        "timestamp": Timestamp::now(),
        "task": {
            "node": node,
            "agent": agent,
            "attempt": attempt,
            "params": params,
            "stalled_ms": stalled_ms,
            "stall_timeout_ms": stall_timeout_ms,
        },
        "last_progress": last_progress.map(|(fraction, message)| json!({ "fraction": fraction, "message": message })),
        "attempts": earlier.iter().enumerate().map(|(i, (agent, a))| attempt_json(agent, a, i)).collect::<Vec<_>>(),
        "blackboard_snapshot": blackboard,
    })
}

/// What a run publishes when its error budget runs out: every failure so far.
pub(crate) fn error_budget(
    run: &RunInfo<'_>,
    failures: &[(String, u32, TaskError)],
    blackboard: Value,
) -> Value {
    json!({
        "report_type": "error_budget",
        "run_id": run.run_id,
        "workflow": run.workflow,
        "tenant": run.tenant,
        "timestamp": Timestamp::now(),
        "summary": {
            "total_errors": failures.len(),
            "error_types": distinct(failures.iter().map(|(_, _, e)| e.kind.as_str())),
            "affected_tasks": distinct(failures.iter().map(|(node, _, _)| node.as_str())),
        },
        "errors": failures.iter().map(|(node, attempt, error)| json!({
            "node": node, "attempt": attempt, "kind": error.kind, "message": error.message,
        })).collect::<Vec<_>>(),
        "blackboard_snapshot": blackboard,
    })
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// Which run a report is about.
pub(crate) struct RunInfo<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) workflow: &'a str,
    pub(crate) tenant: &'a str,
}
