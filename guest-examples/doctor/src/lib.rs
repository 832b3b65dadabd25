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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::ErrorKind;
    use wasm_orch_sdk::testing::TestRun;

    use super::Doctor;

    fn report(last_progress: Value, attempts: Value, blackboard: Value) -> Value {
        json!({
            "report_type": "blocked_task",
            "task": { "node": "fetch", "agent": "wait", "attempt": 1, "stalled_ms": 2500.0 },
            "last_progress": last_progress,
            "attempts": attempts,
            "blackboard_snapshot": blackboard,
        })
    }

    #[test]
    fn a_task_stuck_at_the_start_waits_on_an_external_call() {
        let outcome = TestRun::new(report(
            json!({ "fraction": 0.0, "message": "waiting 9000 ms" }),
            json!([]),
            json!({}),
        ))
        .run::<Doctor>();
        let d: Value = outcome.output();
        assert_eq!(d["node"], "fetch");
        assert_eq!(
            d["diagnosis"],
            "`fetch` on `wait` has been waiting 2.5 s since \"waiting 9000 ms\": it looks stuck on an external call"
        );
        assert_eq!(
            d["recommended_actions"],
            json!(["give the external call a deadline"])
        );
        assert_eq!(outcome.progress, [(0.5, "examining fetch".to_owned())]);
    }

    #[test]
    fn earlier_failures_and_partial_state_add_actions() {
        let outcome = TestRun::new(report(
            json!({ "fraction": 0.4, "message": "page 4" }),
            json!([{ "error": "timeout" }, { "error": "timeout" }]),
            json!({ "shared/pages": 4 }),
        ))
        .run::<Doctor>();
        let d: Value = outcome.output();
        assert_eq!(
            d["diagnosis"],
            "`fetch` on `wait` stopped at 40% (\"page 4\") 2.5 s ago"
        );
        assert_eq!(
            d["recommended_actions"],
            json!([
                "split the task into smaller parts",
                "it failed 2 time(s) before: try another agent",
                "the blackboard holds partial state: resume from it",
            ])
        );
    }

    #[test]
    fn silence_is_a_diagnosis_too() {
        let outcome = TestRun::new(report(Value::Null, json!([]), json!({}))).run::<Doctor>();
        let d: Value = outcome.output();
        assert_eq!(d["diagnosis"], "`fetch` never reported progress in 2.5 s");
    }

    #[test]
    fn other_reports_are_invalid_input() {
        let mut r = report(Value::Null, json!([]), json!({}));
        r["report_type"] = json!("weather");
        let outcome = TestRun::new(r).run::<Doctor>();
        assert_eq!(outcome.error().kind(), ErrorKind::InvalidInput);
        assert_eq!(
            outcome.error().message(),
            "cannot diagnose a `weather` report"
        );
    }
}
