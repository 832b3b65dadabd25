//! Misbehaving guests end with the right outcome while the other tasks of the same run
//! succeed, and the host stays healthy: an infinite loop runs out of fuel or time, a memory
//! bomb is denied memory, a panic is a trap with its message, a status flood stays bounded,
//! and a huge output is rejected.

use wasm_orch::events::EventKind;
use wasm_orch::{ErrorKind, RunStatus, TaskStatus};
use wasm_orch_tests::{Finished, Scratch};

/// A run of `bad` (an agent of component `component` with `limits`) beside a well-behaved
/// task, then a second run on the same runtime to show the host is still healthy.
async fn beside_a_good_task(component: &str, limits: &str, with: &str) -> Finished {
    let scratch = Scratch::new();
    let toml = format!(
        r#"
[workflow]
name = "misbehaving"

[agents.bad]
component = "{{guests}}/{component}.wasm"
{limits}

[agents.add]
component = "{{guests}}/add.wasm"

[[tasks]]
id = "bad"
agent = "bad"
with = {with}

[[tasks]]
id = "good"
agent = "add"
with = {{ a = 20, b = 22 }}
"#
    );
    let runtime = scratch.runtime();
    let path = scratch.workflow("misbehaving.toml", &toml);
    let workflow = wasm_orch::Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let done = scratch
        .run_workflow(&runtime, &workflow, wasm_orch::RunOptions::new())
        .await;
    assert_eq!(
        done.status("good"),
        TaskStatus::Succeeded,
        "the good task suffered"
    );
    assert_eq!(done.report.output("good"), Some(serde_json::json!(42)));
    let expected = if done.status("bad") == TaskStatus::Succeeded {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    assert_eq!(done.report.status, expected);

    // The same runtime runs the next workflow as if nothing happened.
    let again = scratch
        .run_workflow(&runtime, &workflow, wasm_orch::RunOptions::new())
        .await;
    assert_eq!(again.status("good"), TaskStatus::Succeeded);
    assert_eq!(again.status("bad"), done.status("bad"));
    done
}

fn error_kind(done: &Finished, node: &str) -> Option<ErrorKind> {
    done.report
        .task(node)
        .and_then(|t| t.error.as_ref())
        .map(|e| e.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_runs_out_of_fuel() {
    let done = beside_a_good_task("spin", "fuel = 100_000_000", "{}").await;
    assert_eq!(done.status("bad"), TaskStatus::OutOfFuel);
    assert_eq!(error_kind(&done, "bad"), Some(ErrorKind::OutOfFuel));
    let fuel = done.report.task("bad").and_then(|t| t.fuel_used);
    assert_eq!(
        fuel,
        Some(100_000_000),
        "fuel used is recorded after the trap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_with_fuel_to_spare_times_out() {
    let done = beside_a_good_task(
        "spin",
        "fuel = 1_000_000_000_000_000\ntimeout = \"500ms\"",
        "{}",
    )
    .await;
    assert_eq!(done.status("bad"), TaskStatus::TimedOut);
    assert!(done.error("bad").contains("500ms"), "{}", done.error("bad"));
    let latency = done
        .report
        .task("bad")
        .and_then(|t| t.latency_ms)
        .unwrap_or(0.0);
    assert!(
        (500.0..10_000.0).contains(&latency),
        "stopped after {latency} ms"
    );
    // The fuel it burned in that half second is counted, though it never returned.
    let fuel = done
        .report
        .task("bad")
        .and_then(|t| t.fuel_used)
        .unwrap_or(0);
    assert!(
        fuel > 100_000_000,
        "only {fuel} fuel counted for half a second of spinning"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_waiting_in_a_host_call_times_out_too() {
    let done = beside_a_good_task(
        "wait",
        "timeout = \"300ms\"\ntools = [\"sleep\"]",
        "{ ms = 60000 }",
    )
    .await;
    assert_eq!(done.status("bad"), TaskStatus::TimedOut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_denied_memory() {
    let done = beside_a_good_task("hog", "memory = \"32MiB\"", "{}").await;
    assert_eq!(done.status("bad"), TaskStatus::MemoryExceeded);
    assert!(done.error("bad").contains("32MiB"), "{}", done.error("bad"));
    let peak = done
        .report
        .task("bad")
        .and_then(|t| t.memory_peak)
        .unwrap_or(0);
    assert!(
        peak > 16 << 20 && peak <= 32 << 20,
        "peak {peak} is not near the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_the_initial_memory_is_reported_as_memory_exceeded() {
    let done = beside_a_good_task("add", "memory = \"64KiB\"", "{}").await;
    assert_eq!(done.status("bad"), TaskStatus::MemoryExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_that_carries_the_guests_message() {
    let done = beside_a_good_task("crash", "", "{ message = \"the reactor is on fire\" }").await;
    assert_eq!(done.status("bad"), TaskStatus::Trapped);
    assert_eq!(error_kind(&done, "bad"), Some(ErrorKind::Trap));
    let message = done.error("bad");
    assert!(
        message.contains("panicked at") && message.contains("the reactor is on fire"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_flood_completes_and_its_events_stay_bounded() {
    let done = beside_a_good_task("flood", "", "{ iterations = 100000 }").await;
    // The flood agent itself is fine: it just talks too much.
    assert_eq!(done.status("bad"), TaskStatus::Succeeded);
    assert_eq!(done.report.output("bad"), Some(serde_json::json!(100_000)));
    let (mut logs, mut partials, mut progress) = (0, 0, 0);
    for event in done.events_of("bad") {
        match &event.kind {
            EventKind::Log(_) => logs += 1,
            EventKind::Partial(_) => partials += 1,
            EventKind::Progress(_) => progress += 1,
            _ => {}
        }
    }
    // 300,000 calls became at most the budget: 1,000 logs (+1 note), 100 partials, and
    // progress coalesced to a bounded rate.
    assert_eq!(logs, 1_001, "log events");
    assert_eq!(partials, 100, "partial events");
    assert!(progress < 1_000, "{progress} progress events");
    let note = done
        .events_of("bad")
        .find_map(|e| match &e.kind {
            EventKind::Log(l) if l.message.contains("were dropped") => Some(l.message.clone()),
            _ => None,
        })
        .expect("a note of what was dropped");
    assert!(
        note.contains("99000 log lines and 99900 partial results"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_output_is_rejected() {
    let done = beside_a_good_task("bloat", "max_output = \"1MiB\"", "{ mib = 4 }").await;
    assert_eq!(done.status("bad"), TaskStatus::OutputRejected);
    assert_eq!(error_kind(&done, "bad"), Some(ErrorKind::OutputTooLarge));
    assert!(
        done.report
            .task("bad")
            .and_then(|t| t.output.as_ref())
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_error_is_a_failed_outcome_not_a_crash() {
    // `mul` with nothing to multiply returns invalid-input.
    let done = beside_a_good_task("mul", "", "{}").await;
    assert_eq!(done.status("bad"), TaskStatus::Failed);
    assert_eq!(error_kind(&done, "bad"), Some(ErrorKind::InvalidInput));
    assert!(
        done.error("bad").contains("nothing to multiply"),
        "{}",
        done.error("bad")
    );
}
