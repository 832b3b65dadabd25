//! Sub-agents in Python and JavaScript, built from source by `cargo xtask guests`
//! (componentize-py from PyPI, componentize-js from npm) into components of the same
//! `sub-agent` world, run beside Rust agents in one workflow.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wasm_orch::events::EventKind;
use wasm_orch::{ErrorKind, RunStatus, TaskStatus};
use wasm_orch_tests::{Scratch, guest};

async fn run_example(file: &str) -> wasm_orch_tests::Finished {
    Scratch::new().run_example(file).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_components_are_sub_agents() {
    let runtime = Scratch::new().runtime();
    for (name, lang) in [
        ("word-count-py", "Python"),
        ("tally-py", "Python"),
        ("add-js", "JavaScript"),
    ] {
        let info = runtime.inspect(guest(name)).await.expect("inspect");
        assert_eq!(
            info.contract.as_deref(),
            Some("wasm-orch:agent@0.3.0"),
            "{name}"
        );
        let agent = info.sub_agent.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(agent.name, name);
        assert!(
            agent.description.contains(lang),
            "{name}: {}",
            agent.description
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_mapper_counts_the_book_exactly_as_the_rust_one() {
    let rust = run_example("word-count.toml").await;
    let python = run_example("word-count-py.toml").await;
    assert_eq!(python.report.status, RunStatus::Succeeded);
    let counts = |r: &wasm_orch_tests::Finished| -> (Value, BTreeMap<String, u64>) {
        let merged = r.report.output("merge").expect("merged");
        let counts = serde_json::from_value(merged["counts"].clone()).expect("counts");
        (merged["words"].clone(), counts)
    };
    assert_eq!(counts(&python), counts(&rust));
    assert_eq!(counts(&python).0, 109_214);
    // Each Python mapper reported progress as it went.
    let progress = python
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Progress(p) if p.task.agent.as_ref() == "word-count-py"))
        .count();
    assert!(progress >= 12, "{progress} progress events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_agent_uses_the_blackboard_a_tool_progress_and_partials() {
    let done = run_example("tally-py.toml").await;
    assert_eq!(done.report.status, RunStatus::Succeeded);
    let last = done.report.output("last").expect("last");
    // Two parallel tasks and one after them add to one shared tally: nothing is lost.
    assert_eq!(
        last["tally"],
        json!({ "apple": 4, "pear": 1, "fig": 2, "kiwi": 1 })
    );
    assert_eq!(
        done.report.blackboard["shared/tally"]["value"], last["tally"],
        "{:?}",
        done.report.blackboard
    );
    let partials = done
        .events_of("fruit")
        .filter(|e| matches!(e.kind, EventKind::Partial(_)))
        .count();
    assert_eq!(partials, 4, "one partial result per item");
    let logs: Vec<String> = done
        .events_of("fruit")
        .filter_map(|e| match &e.kind {
            EventKind::Log(l) => Some(l.message.clone()),
            _ => None,
        })
        .collect();
    assert!(logs.iter().any(|l| l == "fruit added 4 items"), "{logs:?}");
    let audits: Vec<String> = done
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.task.node.as_ref() == "fruit" => {
                Some(format!("{} {}", a.resource.as_str(), a.action))
            }
            _ => None,
        })
        .collect();
    assert!(
        audits.iter().any(|a| a.contains("sleep")),
        "the sleep tool call is on the record: {audits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_adder_and_a_rust_multiplier_give_21() {
    let done = run_example("calc-js.toml").await;
    assert_eq!(done.report.status, RunStatus::Succeeded);
    assert_eq!(done.report.output("product"), Some(json!(21)));
    assert_eq!(done.report.output("left"), Some(json!(3)));
    assert_eq!(done.report.output("right"), Some(json!(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_python_and_javascript_keep_their_kind() {
    let scratch = Scratch::new();
    let toml = r#"
[workflow]
name = "bad-input"
[agents.add-js]
component = "{guests}/add-js.wasm"
workdir = false
[agents.tally]
component = "{guests}/tally-py.wasm"
memory = "128MiB"
workdir = false
[[tasks]]
id = "js"
agent = "add-js"
with = { a = "one" }
[[tasks]]
id = "py"
agent = "tally"
with = { items = 3 }
"#;
    let done = scratch.run(toml).await;
    for node in ["js", "py"] {
        assert_eq!(done.status(node), TaskStatus::Failed, "{node}");
        let task = done
            .report
            .tasks
            .iter()
            .find(|t| t.node == node)
            .expect("task");
        let error = task.error.as_ref().expect("an error");
        assert_eq!(error.kind, ErrorKind::InvalidInput, "{node}: {error:?}");
    }
    assert!(
        done.error("js").contains("integers"),
        "{}",
        done.error("js")
    );
    assert!(
        done.error("py").contains("list of strings"),
        "{}",
        done.error("py")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_python_agent_is_held_like_any_other() {
    let scratch = Scratch::new();
    let toml = r#"
[workflow]
name = "misbehave"
max_concurrency = 8
[agents.bad]
component = "{guests}/misbehave-py.wasm"
fuel = 2_000_000_000
memory = "128MiB"
timeout = "20s"
workdir = false
[[tasks]]
id = "loop"
agent = "bad"
with = { mode = "loop" }
[[tasks]]
id = "memory"
agent = "bad"
with = { mode = "memory" }
[[tasks]]
id = "raise"
agent = "bad"
with = { mode = "raise" }
[[tasks]]
id = "flood"
agent = "bad"
with = { mode = "flood" }
[[tasks]]
id = "ok"
agent = "bad"
with = { mode = "ok" }
"#;
    let done = scratch.run(toml).await;
    assert_eq!(
        done.status("loop"),
        TaskStatus::OutOfFuel,
        "{}",
        done.error("loop")
    );
    assert_eq!(
        done.status("memory"),
        TaskStatus::MemoryExceeded,
        "{}",
        done.error("memory")
    );
    assert_eq!(done.status("raise"), TaskStatus::Failed);
    assert!(
        done.error("raise").contains("KeyError"),
        "{}",
        done.error("raise")
    );
    // A flood is cut at the host's per-attempt budgets; escape sequences stay inert.
    assert_eq!(done.status("flood"), TaskStatus::Succeeded);
    let logs = done
        .events_of("flood")
        .filter(|e| matches!(e.kind, EventKind::Log(_)))
        .count();
    let partials = done
        .events_of("flood")
        .filter(|e| matches!(e.kind, EventKind::Partial(_)))
        .count();
    assert!(
        logs <= 1_001 && partials <= 100,
        "{logs} logs, {partials} partials"
    );
    assert_eq!(
        done.status("ok"),
        TaskStatus::Succeeded,
        "the others were not harmed"
    );
}
