//! Loops: a task runs again, each iteration seeing the previous one's output, until its guest
//! says done or it reaches `max_iterations`; each iteration is an attempt of its own. And the
//! composed example: calc as a child workflow beside a loop.

use serde_json::json;
use wasm_orch::events::EventKind;
use wasm_orch::{RunStatus, TaskStatus};
use wasm_orch_tests::{Finished, Scratch};

fn looping(with: &str, max: u32) -> String {
    format!(
        "[workflow]\nname = \"loops\"\n\
         [agents.refine]\ncomponent = \"{{guests}}/refine.wasm\"\n\
         [agents.collect]\ncomponent = \"{{guests}}/collect.wasm\"\n\
         [[tasks]]\nid = \"loop\"\nagent = \"refine\"\nwith = {with}\nloop = {{ max_iterations = {max} }}\n\
         [[tasks]]\nid = \"after\"\nagent = \"collect\"\ndepends_on = [\"loop\"]\n"
    )
}

/// The attempt numbers of `node`'s `running` events, and its statuses after attempts.
fn attempts(done: &Finished, node: &str) -> (Vec<u32>, Vec<TaskStatus>) {
    let mut running = Vec::new();
    let mut ended = Vec::new();
    for e in done.events_of(node) {
        if let EventKind::TaskStatus(u) = &e.kind {
            match u.status {
                TaskStatus::Running => running.push(u.task.attempt),
                TaskStatus::Iterated | TaskStatus::Succeeded | TaskStatus::Failed => {
                    ended.push(u.status)
                }
                _ => {}
            }
        }
    }
    (running, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_stops_when_its_guest_says_done_and_its_dependents_get_the_last_output() {
    let scratch = Scratch::new();
    let done = scratch
        .run(&looping("{ start = 1, step = 2, target = 5 }", 10))
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    let last = json!({ "value": 5, "iteration": 3, "done": true });
    assert_eq!(done.report.output("loop"), Some(last.clone()));
    let (running, ended) = attempts(&done, "loop");
    assert_eq!(
        running,
        [1, 2, 3],
        "each iteration is an attempt of its own"
    );
    assert_eq!(
        ended,
        [
            TaskStatus::Iterated,
            TaskStatus::Iterated,
            TaskStatus::Succeeded
        ]
    );
    // Each iteration saw the one before: the outputs climb 1, 3, 5.
    let values: Vec<i64> = done
        .events_of("loop")
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus(u) => u.output.as_ref(),
            _ => None,
        })
        .filter_map(|o| serde_json::from_str::<serde_json::Value>(o.0.get()).ok())
        .filter_map(|v| v["value"].as_i64())
        .collect();
    assert_eq!(values, [1, 3, 5]);
    // The dependent ran once, after the last iteration, and saw only its output.
    assert_eq!(
        done.report.output("after"),
        Some(json!({ "succeeded": { "loop": last }, "failed": {} }))
    );
    assert!(done.when("after", TaskStatus::Running) >= done.when("loop", TaskStatus::Succeeded));
    assert_eq!(
        done.report.metrics.retry_total, 0,
        "iterations are not retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_whose_guest_never_says_done_stops_at_max_iterations() {
    let scratch = Scratch::new();
    let done = scratch.run(&looping("{ start = 10, step = 5 }", 4)).await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(
        done.report.output("loop"),
        Some(json!({ "value": 25, "iteration": 4, "done": false }))
    );
    let (running, ended) = attempts(&done, "loop");
    assert_eq!(running, [1, 2, 3, 4]);
    assert_eq!(ended.last(), Some(&TaskStatus::Succeeded));
    assert_eq!(ended.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_is_checked_like_any_setting() {
    let scratch = Scratch::new();
    for (toml, says) in [
        (looping("{ start = 1 }", 0), "max_iterations"),
        (
            looping("{ start = 1 }", 3)
                .replace("max_iterations = 3", "max_iterations = 3, until = 4"),
            "until",
        ),
    ] {
        let path = scratch.workflow("bad.toml", &toml);
        let e = wasm_orch::Workflow::from_file(&path).expect_err("refused");
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_composed_example_runs_calc_as_a_child_and_climbs_to_21_in_four_iterations() {
    let done = Scratch::new().run_example("composed.toml").await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(
        done.report.output("report"),
        Some(json!({
            "succeeded": {
                "calc.product": 21,
                "climb": { "value": 21, "iteration": 4, "done": true }
            },
            "failed": {}
        }))
    );
    let (running, _) = attempts(&done, "climb");
    assert_eq!(running, [1, 2, 3, 4]);
}
