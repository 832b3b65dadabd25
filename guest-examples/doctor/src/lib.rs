//! `doctor`: the diagnostic agent. Reads the handoff report about a blocked task (the task,
//! its attempts and errors, its last progress, the blackboard) and answers with a diagnosis
//! and recommended actions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Report {
    report_type: String,
    task: BlockedTask,
    last_progress: Option<Progress>,
    #[serde(default)]
    attempts: Vec<Value>,
    #[serde(default)]
    blackboard_snapshot: Value,
}

#[derive(Deserialize)]
struct BlockedTask {
    node: String,
    agent: String,
    attempt: u32,
    stalled_ms: f64,
}

#[derive(Deserialize)]
struct Progress {
    fraction: f32,
    message: String,
}

#[derive(Serialize)]
struct Diagnosis {
    node: String,
    diagnosis: String,
    recommended_actions: Vec<String>,
}

struct Doctor;

impl Agent for Doctor {
    type Params = Report;
    type Output = Diagnosis;
    const CAPABILITIES: &'static [&'static str] = &["diagnose"];

    fn run(cx: Context<Report>) -> Result<Diagnosis, Error> {
        let r = cx.params;
        if r.report_type != "blocked_task" {
            return Err(Error::invalid_input(format!(
                "cannot diagnose a `{}` report",
                r.report_type
            )));
        }
        status::progress(0.5, format!("examining {}", r.task.node));
        let seconds = r.task.stalled_ms / 1000.0;
        let (diagnosis, mut actions) = match &r.last_progress {
            Some(p) if p.fraction < 0.01 => (
                format!(
                    "`{}` on `{}` has been waiting {seconds:.1} s since \"{}\": it looks stuck on an external call",
                    r.task.node, r.task.agent, p.message
                ),
                vec!["give the external call a deadline".to_owned()],
            ),
            Some(p) => (
                format!(
                    "`{}` on `{}` stopped at {:.0}% (\"{}\") {seconds:.1} s ago",
                    r.task.node,
                    r.task.agent,
                    p.fraction * 100.0,
                    p.message
                ),
                vec!["split the task into smaller parts".to_owned()],
            ),
            None => (
                format!(
                    "`{}` never reported progress in {seconds:.1} s",
                    r.task.node
                ),
                vec!["make the agent report progress".to_owned()],
            ),
        };
        if r.task.attempt > 1 || !r.attempts.is_empty() {
            actions.push(format!(
                "it failed {} time(s) before: try another agent",
                r.attempts.len()
            ));
        }
        if r.blackboard_snapshot
            .as_object()
            .is_some_and(|o| !o.is_empty())
        {
            actions.push("the blackboard holds partial state: resume from it".to_owned());
        }
        Ok(Diagnosis {
            node: r.task.node,
            diagnosis,
            recommended_actions: actions,
        })
    }
}

wasm_orch_sdk::export!(Doctor);
