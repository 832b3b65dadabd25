//! Loops: a task runs again, each iteration seeing the previous one's output, until its guest
//! says done or it reaches `max_iterations`; each iteration is an attempt of its own. A loop
//! over a child workflow (a sub-DAG) grows the run by one iteration at a time, each a copy of
//! the body, until the body's last task says done or `max_iterations`; killed in the middle,
//! it resumes without running an iteration's finished tasks again. And the composed example:
//! calc as a child workflow beside both kinds of loop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasm_orch::events::EventKind;
use wasm_orch::{RunStatus, TaskStatus};
use wasm_orch_tests::{Finished, Scratch, cli, exited_0, kv_store};

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
                "climb": { "value": 21, "iteration": 4, "done": true },
                "polish.4.review": { "value": 20, "iteration": 4, "done": true }
            },
            "failed": {}
        }))
    );
    let (running, _) = attempts(&done, "climb");
    assert_eq!(running, [1, 2, 3, 4]);
}

/// A loop's body: a draft that goes on from the last review, and its review, which says done
/// once the draft reaches `target`.
const BODY: &str = r#"
[workflow]
name = "body"
[params]
step = 5
target = 20
[agents.refine]
component = "{guests}/refine.wasm"
[[tasks]]
id = "draft"
agent = "refine"
with = { start = "${step}", step = "${step}" }
[[tasks]]
id = "review"
agent = "refine"
depends_on = ["draft"]
with = { review = true, target = "${target}" }
"#;

/// A workflow looping over `body.toml` at most `max` times, `with` its parameters, and a task
/// after the loop; `extra` goes into its `[workflow]`.
fn looping_over(scratch: &Scratch, with: &str, max: u32, extra: &str) -> String {
    scratch.workflow("body.toml", BODY);
    format!(
        "[workflow]\nname = \"subloop\"\n{extra}\n\
         [agents.collect]\ncomponent = \"{{guests}}/collect.wasm\"\n\
         [[tasks]]\nid = \"loop\"\nworkflow = \"body.toml\"\nwith = {with}\nloop = {{ max_iterations = {max} }}\n\
         [[tasks]]\nid = \"after\"\nagent = \"collect\"\ndepends_on = [\"loop\"]\n"
    )
}

/// An iteration the run added: (loop, iteration, planner, its tasks, the tasks that wait).
type Added = (String, u32, String, Vec<String>, Vec<String>);

/// The iterations the run added.
fn iterations(done: &Finished) -> Vec<Added> {
    done.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanCreated(p) => {
                let it = p.iteration.as_ref()?;
                Some((
                    it.looped.clone(),
                    it.n,
                    p.planner.clone().unwrap_or_default(),
                    p.tasks.iter().map(|t| t.node.clone()).collect(),
                    p.waiting.iter().map(|t| t.node.clone()).collect(),
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_over_a_child_workflow_adds_an_iteration_at_a_time_until_its_last_task_says_done() {
    let scratch = Scratch::new();
    let done = scratch
        .run(&looping_over(&scratch, "{ step = 5, target = 20 }", 10, ""))
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    let nodes: Vec<&str> = done.report.tasks.iter().map(|t| t.node.as_str()).collect();
    let mut expected = vec!["after"];
    let names: Vec<String> = (1..=4)
        .flat_map(|n| [format!("loop.{n}.draft"), format!("loop.{n}.review")])
        .collect();
    expected.extend(names.iter().map(String::as_str));
    let mut sorted = nodes.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "four iterations, then it stopped");
    // Each iteration was added when the one before ended, and the task after the loop waits
    // for each new one.
    let added = iterations(&done);
    assert_eq!(added.len(), 3, "{added:?}");
    for (i, (looped, n, planner, tasks, waiting)) in added.iter().enumerate() {
        let n_expected = i as u32 + 2;
        assert_eq!((looped.as_str(), *n), ("loop", n_expected));
        assert_eq!(planner, &format!("loop.{}.review", n_expected - 1));
        assert_eq!(
            tasks,
            &[
                format!("loop.{n_expected}.draft"),
                format!("loop.{n_expected}.review")
            ]
        );
        assert_eq!(waiting, &["after"]);
    }
    // Iterations run one after the other: a draft starts once the review before has ended,
    // and goes on from it.
    for n in 2..=4 {
        assert!(
            done.when(&format!("loop.{n}.draft"), TaskStatus::Running)
                >= done.when(&format!("loop.{}.review", n - 1), TaskStatus::Succeeded),
            "iteration {n} started early"
        );
        assert_eq!(
            done.report.output(&format!("loop.{n}.draft")),
            Some(json!({ "value": 5 * n, "iteration": n, "done": false }))
        );
    }
    // The loop's agents are the loop's, not an iteration's.
    let agents: Vec<&str> = done.report.tasks.iter().map(|t| t.agent.as_str()).collect();
    assert!(
        agents
            .iter()
            .filter(|a| **a != "collect")
            .all(|a| *a == "loop.refine"),
        "{agents:?}"
    );
    // What comes after the loop ran once, after its last iteration, and saw only its output.
    assert_eq!(
        done.report.output("after"),
        Some(json!({
            "succeeded": { "loop.4.review": { "value": 20, "iteration": 4, "done": true } },
            "failed": {}
        }))
    );
    assert!(
        done.when("after", TaskStatus::Running)
            >= done.when("loop.4.review", TaskStatus::Succeeded)
    );
    assert_eq!(
        done.statuses("after"),
        [
            TaskStatus::Pending,
            TaskStatus::Ready,
            TaskStatus::Running,
            TaskStatus::Succeeded
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_over_a_child_workflow_whose_review_never_says_done_stops_at_max_iterations() {
    let scratch = Scratch::new();
    let done = scratch
        .run(&looping_over(
            &scratch,
            "{ step = 5, target = 1000 }",
            3,
            "",
        ))
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(
        done.report.tasks.len(),
        7,
        "three iterations of two, and after"
    );
    assert_eq!(iterations(&done).len(), 2);
    assert_eq!(
        done.report.output("after"),
        Some(json!({
            "succeeded": { "loop.3.review": { "value": 15, "iteration": 3, "done": false } },
            "failed": {}
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_over_a_workflow_inside_a_plain_child_workflow_runs_every_iteration_below_its_task()
{
    let scratch = Scratch::new();
    let inner = looping_over(&scratch, "{ step = 5, target = 15 }", 10, "");
    scratch.workflow("inner.toml", &inner);
    let done = scratch
        .run(
            "[workflow]\nname = \"outer\"\n\
             [agents.collect]\ncomponent = \"{guests}/collect.wasm\"\n\
             [[tasks]]\nid = \"child\"\nworkflow = \"inner.toml\"\n\
             [[tasks]]\nid = \"last\"\nagent = \"collect\"\ndepends_on = [\"child\"]\n",
        )
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    let mut nodes: Vec<&str> = done.report.tasks.iter().map(|t| t.node.as_str()).collect();
    nodes.sort_unstable();
    let mut expected: Vec<String> = (1..=3)
        .flat_map(|n| {
            [
                format!("child.loop.{n}.draft"),
                format!("child.loop.{n}.review"),
            ]
        })
        .chain(["child.after".to_string(), "last".to_string()])
        .collect();
    expected.sort_unstable();
    assert_eq!(nodes, expected, "three iterations below the child's task");
    // Each iteration is named after the loop below its owner, and goes on from the one before.
    let added = iterations(&done);
    let loops: Vec<(&str, u32)> = added.iter().map(|a| (a.0.as_str(), a.1)).collect();
    assert_eq!(loops, [("child.loop", 2), ("child.loop", 3)]);
    assert_eq!(
        done.report.output("child.loop.3.draft"),
        Some(json!({ "value": 15, "iteration": 3, "done": false }))
    );
    assert_eq!(
        done.report.output("child.after"),
        Some(json!({
            "succeeded": { "child.loop.3.review": { "value": 15, "iteration": 3, "done": true } },
            "failed": {}
        }))
    );
    assert!(
        done.when("last", TaskStatus::Running) >= done.when("child.after", TaskStatus::Succeeded)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_would_grow_past_max_tasks_ends_out_of_budget_with_a_clear_error() {
    let scratch = Scratch::new();
    let done = scratch
        .run(&looping_over(
            &scratch,
            "{ step = 5, target = 1000 }",
            10,
            "max_tasks = 5",
        ))
        .await;
    assert_eq!(done.report.status, RunStatus::Failed, "{:?}", done.report);
    assert_eq!(
        done.report.tasks.len(),
        5,
        "the first two iterations, and after"
    );
    assert_eq!(done.status("loop.2.review"), TaskStatus::BudgetExhausted);
    let why = done.error("loop.2.review");
    assert!(
        why.contains("iteration 3") && why.contains("max_tasks"),
        "{why}"
    );
    assert_eq!(done.status("after"), TaskStatus::Skipped);
}

#[test]
fn a_loops_body_must_end_in_one_task_and_hold_no_loop_over_a_workflow() {
    let scratch = Scratch::new();
    let two_ends = BODY.replace("depends_on = [\"draft\"]\n", "");
    scratch.workflow("body.toml", &two_ends);
    let parent = "[workflow]\nname = \"p\"\n[[tasks]]\nid = \"loop\"\nworkflow = \"body.toml\"\nloop = { max_iterations = 3 }\n";
    let path = scratch.workflow("parent.toml", parent);
    let e = wasm_orch::Workflow::from_file(&path)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("parent.toml:6")
            && e.contains("ends in 2 tasks (`draft`, `review`)")
            && e.contains("add a last task"),
        "{e}"
    );
    // A body that loops over a workflow itself.
    scratch.workflow("body.toml", BODY);
    scratch.workflow(
        "middle.toml",
        &parent.replace("name = \"p\"", "name = \"m\""),
    );
    let outer = parent.replace("body.toml", "middle.toml");
    let path = scratch.workflow("outer.toml", &outer);
    let e = wasm_orch::Workflow::from_file(&path)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("outer.toml:6") && e.contains("do not nest"),
        "{e}"
    );
    // One loop over a workflow is a workflow like any.
    assert!(wasm_orch::Workflow::from_file(scratch.path().join("middle.toml")).is_ok());
}

/// A body of two steps that count their runs in the kv store: `a` waits 150 ms.
const STEPS: &str = r#"
[workflow]
name = "steps"
[agents.step]
component = "{guests}/step.wasm"
tools = ["kv", "sleep"]
[[tasks]]
id = "a"
agent = "step"
with = { value = 1, ms = 150 }
[[tasks]]
id = "b"
agent = "step"
depends_on = ["a"]
"#;

#[test]
fn a_loop_over_a_child_workflow_killed_mid_iteration_resumes_without_redoing_what_had_finished() {
    let scratch = Scratch::new();
    scratch.workflow("steps.toml", STEPS);
    let flow = scratch.workflow(
        "looped.toml",
        "[workflow]\nname = \"looped\"\n\
         [[tasks]]\nid = \"loop\"\nworkflow = \"steps.toml\"\nloop = { max_iterations = 4 }\n",
    );
    let state = scratch.state_dir();
    let mut run = cli!();
    scratch.dirs(
        run.args(["run", "--plain", "--run-id", "looped"])
            .arg(&flow),
    );
    let mut child = run
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let began = |node: &str| {
        kv_store(&state, "default")
            .iter()
            .any(|(k, _, _)| k == &format!("exec/looped/{node}"))
    };
    // Killed in the middle of the third iteration: two had ended.
    let waited = Instant::now();
    while !began("loop.3.a") && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        began("loop.3.a"),
        "the run got as far as the third iteration"
    );
    let done_before: Vec<String> = scratch
        .journal("looped")
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus(u) if u.status == TaskStatus::Succeeded => {
                Some(u.task.node.to_string())
            }
            _ => None,
        })
        .collect();
    assert!(
        done_before.iter().any(|n| n == "loop.1.b"),
        "an iteration was journaled: {done_before:?}"
    );

    let mut resume = cli!();
    scratch.dirs(resume.args(["resume", "--plain", "looped"]));
    let out = resume.output().expect("resumes");
    exited_0(&out);
    let counts = kv_store(&state, "default");
    let count = |node: &str| {
        counts
            .iter()
            .find(|(k, _, _)| k == &format!("exec/looped/{node}"))
            .map(|(_, v, _)| v.clone())
    };
    for node in &done_before {
        assert_eq!(
            count(node).as_deref(),
            Some("1"),
            "{node} ran again: {counts:?}"
        );
    }
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("tenants/default/runs/looped/results.json"))
            .expect("results"),
    )
    .expect("json");
    assert_eq!(report["status"], "succeeded", "{report}");
    let tasks = report["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 8, "four iterations of two: {report}");
    // Each iteration went on from the one before, across the crash: 1, 2, 3, 4.
    let last = tasks
        .iter()
        .find(|t| t["node"] == "loop.4.b")
        .map(|t| t["output"].clone());
    assert_eq!(last, Some(json!(4)), "{report}");
    // The journal holds each added iteration once: the resumed run added them again from it.
    let added: Vec<u32> = scratch
        .journal("looped")
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanCreated(p) => p.iteration.as_ref().map(|it| it.n),
            _ => None,
        })
        .collect();
    assert_eq!(added, [2, 3, 4]);
}
