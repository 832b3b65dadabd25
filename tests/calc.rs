//! The calc example end to end: (1+2)·(3+4) = 21, the two additions running at the same time,
//! the multiplication after both, and guest progress streamed while the guests run.

use wasm_orch::events::EventKind;
use wasm_orch::{RunOptions, RunStatus, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calc_computes_21_with_both_additions_running_at_once() {
    let scratch = Scratch::new();
    let workflow = Workflow::from_file(root().join("examples/calc.toml")).expect("valid");
    let done = scratch
        .run_workflow(&scratch.runtime(), &workflow, RunOptions::new())
        .await;

    assert_eq!(done.report.status, RunStatus::Succeeded);
    assert_eq!(done.report.output("left"), Some(serde_json::json!(3)));
    assert_eq!(done.report.output("right"), Some(serde_json::json!(7)));
    assert_eq!(done.report.output("product"), Some(serde_json::json!(21)));
    let sinks: Vec<&String> = done.report.outputs.keys().collect();
    assert_eq!(
        sinks,
        ["product"],
        "only the sink's output is a final output"
    );

    // The additions' running intervals overlap; the product starts after both ended.
    let (left_start, left_end) = (
        done.when("left", TaskStatus::Running),
        done.when("left", TaskStatus::Succeeded),
    );
    let (right_start, right_end) = (
        done.when("right", TaskStatus::Running),
        done.when("right", TaskStatus::Succeeded),
    );
    assert!(
        left_start < right_end && right_start < left_end,
        "the additions did not overlap"
    );
    let product_start = done.when("product", TaskStatus::Running);
    assert!(product_start >= left_end && product_start >= right_end);
    assert_eq!(
        done.statuses("product"),
        [
            TaskStatus::Pending,
            TaskStatus::Ready,
            TaskStatus::Running,
            TaskStatus::Succeeded
        ]
    );

    // Progress is an event the moment the guest reports it: `left` says "thinking" before
    // it sleeps 400 ms in the host, long before it succeeds.
    let thinking = done
        .events_of("left")
        .find_map(|e| match &e.kind {
            EventKind::Progress(p) if p.message == "thinking" => Some(e.at.0),
            _ => None,
        })
        .expect("a progress event");
    let lead = left_end
        .duration_since(thinking)
        .expect("progress before the end");
    assert!(
        lead.as_millis() >= 300,
        "progress arrived only {lead:?} before the end"
    );

    // Events are numbered without gaps and end with the run's completion.
    let seqs: Vec<u64> = done.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(matches!(
        done.events.last().map(|e| &e.kind),
        Some(EventKind::RunCompleted(c)) if c.status == RunStatus::Succeeded && c.succeeded == 3
    ));
    assert!(matches!(
        done.events.first().map(|e| &e.kind),
        Some(EventKind::PlanCreated(p)) if p.tasks.len() == 3
    ));

    // Each attempt's fuel and timings are recorded.
    for node in ["left", "right", "product"] {
        let task = done.report.task(node).expect("task");
        assert_eq!(task.attempts, 1);
        assert!(
            task.fuel_used.is_some_and(|f| f > 0),
            "{node}: no fuel recorded"
        );
        assert!(
            task.latency_ms.is_some_and(|ms| ms >= 190.0),
            "{node}: latency"
        );
    }
}
