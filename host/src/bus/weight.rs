//! How much an event weighs in the bus's history: an estimate of the memory it holds (its
//! fixed part plus the text and JSON it carries), cheap to compute, never an exact count.

use serde_json::Value;

use crate::model::events::EventKind;

/// What every event costs besides what it carries: the `Arc`, the event and its enum.
const BASE: usize = 256;

pub(super) fn of(kind: &EventKind) -> usize {
    BASE + match kind {
        EventKind::PlanCreated(p) => p
            .tasks
            .iter()
            .map(|t| {
                96 + t.node.len()
                    + t.agent.len()
                    + t.depends_on.iter().map(|d| 24 + d.len()).sum::<usize>()
            })
            .sum(),
        EventKind::TaskStatus(u) => {
            u.error.as_ref().map_or(0, |e| e.message.len())
                + u.artifacts.iter().map(|a| 48 + a.path.len()).sum::<usize>()
        }
        EventKind::Progress(p) => p.message.len(),
        EventKind::Partial(p) => json(&p.data),
        EventKind::Log(l) => l.message.len(),
        EventKind::TaskBlocked(b) => b.last_progress.as_ref().map_or(0, |p| p.message.len()),
        EventKind::TaskHandoff(h) => {
            h.diagnosis.as_ref().map_or(0, json) + h.error.as_ref().map_or(0, |e| e.message.len())
        }
        EventKind::RunPaused(p) => json(&p.handoff),
        EventKind::TaskGrants(g) => {
            g.tools
                .iter()
                .chain(&g.secrets)
                .chain(&g.inputs)
                .map(|s| 24 + s.len())
                .sum::<usize>()
                + g.workdir.as_ref().map_or(0, String::len)
                + g.blackboard.len()
        }
        EventKind::Audit(a) => a.action.len() + a.reason.len(),
        EventKind::Credential(c) => c.credential.len() + c.reason.len(),
        EventKind::RunMetrics(m) => 32 * m.parallelism.timeline.len() + 128 * m.agents.len(),
        EventKind::Dispatch(d) => d.reason.len(),
        EventKind::MessageSent(m) => m.to.len(),
        EventKind::MessageReceived(m) => m.from.len(),
        EventKind::RunResumed(_) | EventKind::RunCompleted(_) => 0,
    }
}

/// The memory a JSON value holds, roughly.
fn json(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => 24 + s.len(),
        Value::Array(items) => 24 + items.iter().map(json).sum::<usize>(),
        Value::Object(map) => {
            48 + map
                .iter()
                .map(|(k, v)| 24 + k.len() + json(v))
                .sum::<usize>()
        }
    }
}
