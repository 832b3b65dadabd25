//! Cancellation: a cancelled run stops its running guests promptly (CPU-bound ones and ones
//! waiting in a host call alike), starts nothing new, and every unfinished task ends as
//! cancelled; Ctrl-C does the same for the CLI, which exits 130.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use wasm_orch::{RunOptions, RunStatus, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, cli};

const LONG: &str = r#"
[workflow]
name = "long"
max_concurrency = 4

[agents.spin]
component = "{guests}/spin.wasm"
fuel = 1_000_000_000_000_000
timeout = "10m"

[agents.wait]
component = "{guests}/wait.wasm"
timeout = "10m"
tools = ["sleep"]

[[tasks]]
id = "spinning"
agent = "spin"

[[tasks]]
id = "waiting"
agent = "wait"
with = { ms = 600000 }

[[tasks]]
id = "after"
agent = "wait"
with = { ms = 1 }
depends_on = ["waiting"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_running_guests_and_ends_every_task_cancelled() {
    let scratch = Scratch::new();
    let path = scratch.workflow("long.toml", LONG);
    let workflow = Workflow::from_file(&path).expect("valid");
    let run = scratch
        .runtime()
        .start(&workflow, RunOptions::new())
        .await
        .expect("starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled_at = Instant::now();
    run.cancel();
    let report = run.wait().await.expect("ends");
    // The guests would run for ten minutes; the run ends as soon as they are dropped.
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(20),
        "took {:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(report.status, RunStatus::Cancelled);
    for node in ["spinning", "waiting", "after"] {
        assert_eq!(
            report.task(node).map(|t| t.status),
            Some(TaskStatus::Cancelled),
            "{node}"
        );
    }
    assert_eq!(
        report.task("after").map(|t| t.attempts),
        Some(0),
        "nothing new started"
    );
    let spun = report
        .task("spinning")
        .and_then(|t| t.fuel_used)
        .unwrap_or(0);
    assert!(
        spun > 10_000_000,
        "the spinning guest's fuel is recorded: {spun}"
    );
}

#[test]
fn ctrl_c_cancels_the_cli_run_which_exits_130() {
    let scratch = Scratch::new();
    let path = scratch.workflow("long.toml", LONG);
    let mut child = scratch
        .dirs(cli!().arg("run").arg(&path).args(["--output", "-"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Wait until both guests are running, then interrupt.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut running = 0;
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if line.contains(" running") {
            running += 1;
        }
        if running == 2 {
            break;
        }
    }
    let sent = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = child.wait_with_output().expect("exits");
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", rest.join("\n"));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("results");
    assert_eq!(report["status"], "cancelled");
    let statuses: Vec<&str> = report["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(statuses, ["cancelled", "cancelled", "cancelled"]);
    assert!(
        rest.iter().any(|l| l.contains("cancelling the run")),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_run_cancels_it_unless_it_was_detached() {
    use wasm_orch::events::EventKind;
    let scratch = Scratch::new();
    let runtime = scratch.runtime();
    let end = |mut events: wasm_orch::events::EventStream| async move {
        while let Some(event) = events.next().await {
            if let EventKind::RunCompleted(done) = &event.kind {
                return Some(done.status);
            }
        }
        None
    };
    // Ten minutes of work, dropped: it ends, cancelled, at once.
    let long = Workflow::from_file(scratch.workflow("long.toml", LONG)).expect("valid");
    let run = runtime
        .start(&long, RunOptions::new())
        .await
        .expect("starts");
    let events = run.events();
    drop(run);
    let status = tokio::time::timeout(Duration::from_secs(60), end(events))
        .await
        .expect("the dropped run ends");
    assert_eq!(status, Some(RunStatus::Cancelled));

    // A detached run goes on without anyone holding it, to its end.
    let short = scratch.workflow(
        "short.toml",
        r#"
[workflow]
name = "short"
[agents.wait]
component = "{guests}/wait.wasm"
tools = ["sleep"]
[[tasks]]
id = "pause"
agent = "wait"
with = { ms = 300 }
"#,
    );
    let short = Workflow::from_file(short).expect("valid");
    let run = runtime
        .start(&short, RunOptions::new())
        .await
        .expect("starts");
    let events = run.events();
    let _handle = run.detach();
    let status = tokio::time::timeout(Duration::from_secs(60), end(events))
        .await
        .expect("the detached run ends");
    assert_eq!(status, Some(RunStatus::Succeeded));
}
