//! Planner agents: a task's output is a plan that joins the running DAG, checked as a workflow
//! file is. The seeds' "Simple Decomposition Test" (21, the additions at once, the product
//! after both), the "Complex Dependency Test" (fetch → process → analyze → visualize, nothing
//! early), a plan two levels deep, refused plans (an unknown agent, too many tasks, an agent
//! the tenant may not use) beside a run that goes on, and a grown run killed and resumed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasm_orch::events::EventKind;
use wasm_orch::{RunStatus, TaskStatus, Workflow};
use wasm_orch_tests::{Finished, Scratch, cli, exited_0, kv_store, root};

const AGENTS: &str = r#"
[agents.planner]
component = "{guests}/planner.wasm"
planner = true
[agents.add]
component = "{guests}/add.wasm"
tools = ["sleep"]
[agents.mul]
component = "{guests}/mul.wasm"
tools = ["sleep"]
[agents.scribe]
component = "{guests}/scribe.wasm"
"#;

/// A workflow of one planner task asked `query`, with `extra` TOML after the agents.
fn planning(query: &str, extra: &str) -> String {
    format!(
        "[workflow]\nname = \"planned\"\nmax_concurrency = 8\n{AGENTS}{extra}\n\
         [[tasks]]\nid = \"plan\"\nagent = \"planner\"\nwith = {{ query = \"{query}\", delay_ms = 300 }}\n"
    )
}

/// The plans of the run, in order: (planner, the tasks it added).
fn plans(done: &Finished) -> Vec<(Option<String>, Vec<String>)> {
    done.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanCreated(p) => Some((
                p.planner.clone(),
                p.tasks.iter().map(|t| t.node.clone()).collect(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simple_decomposition_gives_21_with_both_additions_at_once_and_the_product_after() {
    // The example a newcomer runs.
    let done = Scratch::new().run_example("planner.toml").await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(done.report.output("plan.product"), Some(json!(21)));
    assert_eq!(done.report.output("plan.sum-1"), Some(json!(3)));
    assert_eq!(done.report.output("plan.sum-2"), Some(json!(7)));
    let finals: Vec<&String> = done.report.outputs.keys().collect();
    assert_eq!(
        finals,
        ["plan.product"],
        "the grown DAG's end is the run's output"
    );
    assert_eq!(
        plans(&done),
        [
            (None, vec!["plan".to_owned()]),
            (
                Some("plan".to_owned()),
                vec![
                    "plan.sum-1".to_owned(),
                    "plan.sum-2".to_owned(),
                    "plan.product".to_owned()
                ]
            ),
        ]
    );
    let span = |node: &str| {
        (
            done.when(node, TaskStatus::Running),
            done.when(node, TaskStatus::Succeeded),
        )
    };
    let ((s1, e1), (s2, e2)) = (span("plan.sum-1"), span("plan.sum-2"));
    assert!(
        s1 < e2 && s2 < e1,
        "the additions did not run at the same time"
    );
    let product = done.when("plan.product", TaskStatus::Running);
    assert!(
        product >= e1 && product >= e2,
        "the product started before both sums"
    );
    assert!(s1 >= done.when("plan", TaskStatus::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complex_dependency_chain_runs_in_order_with_nothing_early() {
    let scratch = Scratch::new();
    let done = scratch
        .run(&planning("fetch → process → analyze → visualize", ""))
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    let steps = [
        "plan.fetch",
        "plan.process",
        "plan.analyze",
        "plan.visualize",
    ];
    for pair in steps.windows(2) {
        assert!(
            done.when(pair[1], TaskStatus::Running) >= done.when(pair[0], TaskStatus::Succeeded),
            "`{}` started before `{}` ended",
            pair[1],
            pair[0]
        );
        let output = done.report.output(pair[1]).expect("an output");
        let from = pair[0].trim_start_matches("plan.");
        assert_eq!(output["from"], json!([pair[0]]), "{from}: {output}");
    }
    assert_eq!(done.report.outputs.len(), 1, "only the last step is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_research_plan_plans_again_two_levels_deep_then_reports_and_presents() {
    let done = Scratch::new().run_example("research.toml").await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(
        done.report.tasks.len(),
        12,
        "1 planner, 3 planned planners, 6 notes and summaries, a report, slides"
    );
    let planners: Vec<Option<String>> = plans(&done).into_iter().map(|(p, _)| p).collect();
    assert_eq!(planners.len(), 5);
    assert_eq!(planners[1].as_deref(), Some("plan"));
    assert!(planners[2..].iter().all(|p| {
        p.as_deref()
            .is_some_and(|p| p.starts_with("plan.research-"))
    }));
    // The report waited for every topic's summary (a task of the plans below the planners).
    let report = done.report.output("plan.report").expect("a report");
    let from: Vec<&str> = report["from"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        from,
        [
            "plan.research-webassembly.summary",
            "plan.research-wasi.summary",
            "plan.research-the-component-model.summary"
        ]
    );
    assert!(
        report["text"]
            .as_str()
            .is_some_and(|t| t.contains("from 3 findings"))
    );
    assert!(
        done.when("plan.presentation", TaskStatus::Running)
            >= done.when("plan.report", TaskStatus::Succeeded)
    );
    assert_eq!(
        done.report.outputs.keys().collect::<Vec<_>>(),
        ["plan.presentation"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plan_fails_its_planner_with_a_clear_error_and_the_rest_of_the_run_goes_on() {
    let research = "Research wasm and wasi, then write a report";
    let registry = r#"
[agents.scribe]
component = "{guests}/scribe.wasm"
tenants = ["someone-else"]
"#;
    let without_scribe = AGENTS.replace(
        "[agents.scribe]\ncomponent = \"{guests}/scribe.wasm\"\n",
        "",
    );
    let cases = [
        (
            // The plan names an agent the workflow does not have.
            format!(
                "[workflow]\nname = \"planned\"\n{without_scribe}\n[[tasks]]\nid = \"plan\"\nagent = \"planner\"\nwith = {{ query = \"fetch → process\" }}\n"
            ),
            "scribe",
        ),
        (
            // More tasks than the run may grow to.
            planning(research, "")
                .replace("max_concurrency = 8", "max_concurrency = 8\nmax_tasks = 3"),
            "max_tasks",
        ),
        (
            // An agent its tenant may not use (the registry says so).
            format!(
                "[workflow]\nname = \"planned\"\nregistry = \"registry.toml\"\n{without_scribe}\n[[tasks]]\nid = \"plan\"\nagent = \"planner\"\nwith = {{ query = \"fetch → process\" }}\n"
            ),
            "may not use agent `scribe`",
        ),
    ];
    for (toml, why) in cases {
        let scratch = Scratch::new();
        scratch.workflow("registry.toml", registry);
        let toml = format!(
            "{toml}[[tasks]]\nid = \"after\"\nagent = \"add\"\ndepends_on = [\"plan\"]\n\
             [[tasks]]\nid = \"side\"\nagent = \"add\"\nwith = {{ a = 2, b = 2 }}\n"
        );
        let done = scratch.run(&toml).await;
        assert_eq!(done.status("plan"), TaskStatus::Failed, "{why}");
        let task = done.report.task("plan").expect("the planner");
        let error = task.error.as_ref().expect("an error");
        assert_eq!(error.kind, wasm_orch::ErrorKind::InvalidPlan);
        assert!(error.message.contains(why), "{why}: {}", error.message);
        assert_eq!(done.status("after"), TaskStatus::Skipped, "{why}");
        assert_eq!(done.status("side"), TaskStatus::Succeeded, "{why}");
        assert_eq!(done.report.output("side"), Some(json!(4)));
        assert_eq!(done.report.tasks.len(), 3, "{why}: nothing was added");
    }
}

fn run_cmd(scratch: &Scratch, file: &std::path::Path, run_id: &str) -> Command {
    let mut cmd = cli!();
    scratch.dirs(cmd.args(["run", "--plain", "--run-id", run_id]).arg(file));
    cmd
}

#[test]
fn a_grown_run_killed_mid_plan_resumes_without_planning_or_redoing_work_again() {
    let scratch = Scratch::new();
    let toml = format!(
        "[workflow]\nname = \"grown\"\n{AGENTS}\n[agents.step]\ncomponent = \"{{guests}}/step.wasm\"\ntools = [\"kv\", \"sleep\"]\n\
         [[tasks]]\nid = \"plan\"\nagent = \"planner\"\n\
         with = {{ query = \"a → b → c → d → e\", step_agent = \"step\", step_with = {{ ms = 150, value = 1 }} }}\n"
    );
    let flow = scratch.workflow("grown.toml", &toml);
    let state = scratch.state_dir();
    let mut child = run_cmd(&scratch, &flow, "grown")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    // Killed once the third step has begun: two steps had succeeded.
    let began = |node: &str| {
        kv_store(&state, "default")
            .iter()
            .any(|(k, _, _)| k == &format!("exec/grown/{node}"))
    };
    let waited = Instant::now();
    while !began("plan.c") && waited.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(began("plan.c"), "the run got as far as the third step");
    // What the journal holds as succeeded when the process died does not run again.
    let done_before: Vec<String> = scratch
        .journal("grown")
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus(u) if u.status == TaskStatus::Succeeded => {
                Some(u.task.node.to_string())
            }
            _ => None,
        })
        .collect();
    assert!(
        done_before.iter().any(|n| n == "plan"),
        "the plan was journaled: {done_before:?}"
    );

    let mut resume = cli!();
    scratch.dirs(resume.args(["resume", "--plain", "grown"]));
    let out = resume.output().expect("resumes");
    exited_0(&out);
    let counts: Vec<(String, String)> = kv_store(&state, "default")
        .into_iter()
        .filter(|(k, _, _)| k.starts_with("exec/grown/"))
        .map(|(k, v, _)| (k, v))
        .collect();
    let count = |node: &str| {
        counts
            .iter()
            .find(|(k, _)| k == &format!("exec/grown/{node}"))
            .map(|(_, v)| v.clone())
    };
    for node in done_before.iter().filter(|n| n.starts_with("plan.")) {
        assert_eq!(
            count(node).as_deref(),
            Some("1"),
            "{node} ran again: {counts:?}"
        );
    }
    for node in ["plan.a", "plan.b", "plan.c", "plan.d", "plan.e"] {
        assert!(count(node).is_some(), "{node} ran: {counts:?}");
    }
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("tenants/default/runs/grown/results.json"))
            .expect("results"),
    )
    .expect("json");
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["tasks"].as_array().map(Vec::len), Some(6));
    // The planner ran once: its plan was spliced in again from the journal.
    let events = scratch.journal("grown");
    let planner_runs = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::TaskStatus(u) if &*u.task.node == "plan" && u.status == TaskStatus::Running))
        .count();
    assert_eq!(planner_runs, 1, "the planner planned once");
    let plans = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::PlanCreated(p) if p.planner.is_some()))
        .count();
    assert_eq!(plans, 1, "the journal holds the plan once");
    let summary = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(scratch.runtime().run_summary("grown"))
        .expect("the journal")
        .expect("the run");
    assert_eq!((summary.tasks, summary.settled), (6, 6), "{summary:?}");
}

/// A child workflow (`workflow = "sub.toml"`): its own parameters from the task's `with`, its
/// agents, its tasks inlined below the task.
const CHILD: &str = r#"
[workflow]
name = "sub"
[params]
x = 1
[agents.add]
component = "{guests}/add.wasm"
[agents.mul]
component = "{guests}/mul.wasm"
[[tasks]]
id = "left"
agent = "add"
with = { a = "${x}", b = 1 }
[[tasks]]
id = "right"
agent = "add"
with = { a = 2, b = 2 }
[[tasks]]
id = "product"
agent = "mul"
depends_on = ["left", "right"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_workflow_runs_below_its_task_with_its_parameters_and_its_dependents_see_its_end() {
    let scratch = Scratch::new();
    scratch.workflow("sub.toml", CHILD);
    let done = scratch
        .run(
            r#"
[workflow]
name = "parent"
[agents.add]
component = "{guests}/add.wasm"
[[tasks]]
id = "base"
agent = "add"
with = { a = 1, b = 1 }
[[tasks]]
id = "calc"
workflow = "sub.toml"
with = { x = 5 }
depends_on = ["base"]
[[tasks]]
id = "total"
agent = "add"
depends_on = ["calc"]
"#,
        )
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    let ids: Vec<&str> = done.report.tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(
        ids,
        ["base", "total", "calc.left", "calc.right", "calc.product"]
    );
    // left = x + 1 + base (2) = 8, right = 4 + base = 6: the child's first tasks depend on
    // what the task depended on; the product is 48, and `total` sees it.
    assert_eq!(done.report.output("calc.left"), Some(json!(8)));
    assert_eq!(done.report.output("calc.right"), Some(json!(6)));
    assert_eq!(done.report.output("calc.product"), Some(json!(48)));
    assert_eq!(done.report.output("total"), Some(json!(48)));
    let agents: Vec<&str> = done.report.tasks.iter().map(|t| t.agent.as_str()).collect();
    assert_eq!(agents, ["add", "add", "calc.add", "calc.add", "calc.mul"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_workflows_budget_is_cut_to_what_its_parent_has_left() {
    let scratch = Scratch::new();
    let burn =
        |iterations: u32| format!("agent = \"burn\"\nwith = {{ iterations = {iterations} }}\n");
    let child = format!(
        "[workflow]\nname = \"heavy\"\nbudget = {{ fuel = 100_000_000_000 }}\n\
         [agents.burn]\ncomponent = \"{{guests}}/burn.wasm\"\n\
         [[tasks]]\nid = \"b1\"\n{}\
         [[tasks]]\nid = \"b2\"\ndepends_on = [\"b1\"]\n{}",
        burn(200_000),
        burn(200_000)
    );
    scratch.workflow("heavy.toml", &child);
    let parent = |budget: &str| {
        format!(
            "[workflow]\nname = \"parent\"\n{budget}\n\
             [agents.burn]\ncomponent = \"{{guests}}/burn.wasm\"\n\
             [[tasks]]\nid = \"first\"\n{}\
             [[tasks]]\nid = \"child\"\nworkflow = \"heavy.toml\"\ndepends_on = [\"first\"]\n",
            burn(200_000)
        )
    };
    let free = scratch.run(&parent("")).await;
    assert_eq!(
        free.report.status,
        RunStatus::Succeeded,
        "{:?}",
        free.report
    );
    let cost = free
        .report
        .task("first")
        .and_then(|t| t.fuel_used)
        .expect("fuel");
    // The parent can pay for two and a half tasks: the child's second runs out, whatever the
    // child's own file says it may spend.
    let budget = 2 * cost + cost / 2;
    let done = scratch
        .run(&parent(&format!("budget = {{ fuel = {budget} }}")))
        .await;
    assert_eq!(done.status("first"), TaskStatus::Succeeded);
    assert_eq!(done.status("child.b1"), TaskStatus::Succeeded);
    assert_eq!(done.status("child.b2"), TaskStatus::BudgetExhausted);
    assert_eq!(done.report.metrics.fuel.run, budget);
}

#[test]
fn a_bad_child_workflow_is_an_error_that_names_its_file() {
    let scratch = Scratch::new();
    scratch.workflow(
        "sub.toml",
        &CHILD.replace("agent = \"mul\"", "agent = \"nope\""),
    );
    scratch.workflow(
        "loop.toml",
        "[workflow]\nname = \"again\"\n[[tasks]]\nid = \"me\"\nworkflow = \"loop.toml\"\n",
    );
    let parent = |task: &str| {
        format!(
            "[workflow]\nname = \"parent\"\n[agents.add]\ncomponent = \"{{guests}}/add.wasm\"\n[[tasks]]\nid = \"calc\"\n{task}\n"
        )
    };
    for (task, says) in [
        ("workflow = \"sub.toml\"", "sub.toml"),
        ("workflow = \"sub.toml\"", "unknown agent `nope`"),
        (
            "workflow = \"sub.toml\"\nwith = { y = 1 }",
            "`y` is not a parameter",
        ),
        ("workflow = \"loop.toml\"", "include each other"),
        (
            "workflow = \"sub.toml\"\nagent = \"add\"",
            "takes no `agent` or `capability`",
        ),
        ("workflow = \"../outside.toml\"", "cannot run workflow"),
    ] {
        let path = scratch.workflow("parent.toml", &parent(task));
        let e = Workflow::from_file(&path).expect_err(says);
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}

/// The tasks a plan adds are memoized like the file's own: with `cache = true` on their
/// agents, a second run plans again (the planner is not cached) and reuses every planned
/// task's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_tasks_of_memoized_agents_are_reused_by_the_next_run() {
    let scratch = Scratch::new();
    let cached = AGENTS.replace(
        "tools = [\"sleep\"]\n",
        "tools = [\"sleep\"]\ncache = true\n",
    );
    let toml = format!(
        "[workflow]\nname = \"planned\"\n{cached}\n\
         [[tasks]]\nid = \"plan\"\nagent = \"planner\"\n\
         with = {{ query = \"Calculate 1+2 and 3+4, then multiply results\", delay_ms = 200 }}\n"
    );
    let path = scratch.workflow("memo.toml", &toml);
    let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let runtime = scratch.runtime();
    let planned = ["plan.sum-1", "plan.sum-2", "plan.product"];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let done = scratch
            .run_workflow(&runtime, &workflow, wasm_orch::RunOptions::new())
            .await;
        assert_eq!(
            done.report.status,
            RunStatus::Succeeded,
            "{:?}",
            done.report
        );
        assert_eq!(done.report.output("plan.product"), Some(json!(21)));
        runs.push(done);
    }
    let (first, second) = (&runs[0], &runs[1]);
    for node in planned {
        let status = |done: &Finished| done.report.task(node).map(|t| t.status);
        assert_eq!(status(first), Some(TaskStatus::Succeeded), "{node}");
        assert_eq!(status(second), Some(TaskStatus::Cached), "{node}");
        let from = second.events.iter().find_map(|e| match &e.kind {
            EventKind::TaskStatus(u) if u.task.node.as_str() == node => u.cached_from.clone(),
            _ => None,
        });
        assert_eq!(
            from.as_deref(),
            Some(first.report.run_id.as_str()),
            "{node} reused the first run's output"
        );
    }
    // The planner itself is not memoized: it planned again.
    assert_eq!(
        second.report.task("plan").map(|t| t.status),
        Some(TaskStatus::Succeeded)
    );
}

/// A planner inside a child workflow plans as it does at the top: its plan is checked against
/// the child's own file (its agents, for the run's tenant) and joins the run below the child's
/// task (`calc.plan.sum-1`, ...); the parent's tasks that wait for the child see the plan's
/// result, and a top-level planner beside it plans too. A loop's body may not have one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_inside_a_child_workflow_grows_the_run_below_its_task() {
    let scratch = Scratch::new();
    // The example itself, as a child.
    let example = std::fs::read_to_string(root().join("examples/planner.toml"))
        .expect("the example")
        .replace("../target/guests", "{guests}");
    let child = scratch.workflow("child.toml", &example);
    let toml = format!(
        "[workflow]\nname = \"outer\"\nmax_tasks = 60\n{AGENTS}\n\
         [[tasks]]\nid = \"calc\"\nworkflow = \"{}\"\n\
         with = {{ query = \"Calculate 1+2 and 3+4, then multiply results\" }}\n\
         [[tasks]]\nid = \"steps\"\nagent = \"planner\"\nwith = {{ query = \"fetch → process\" }}\n\
         [[tasks]]\nid = \"double\"\nagent = \"mul\"\nwith = {{ a = 2 }}\ndepends_on = [\"calc\"]\n",
        child.display()
    );
    let done = scratch.run(&toml).await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(done.report.output("calc.plan.product"), Some(json!(21)));
    assert_eq!(
        done.report.output("double"),
        Some(json!(42)),
        "it saw the plan's result"
    );
    let planned = plans(&done);
    let inner = planned
        .iter()
        .find(|(p, _)| p.as_deref() == Some("calc.plan"))
        .expect("the child's planner planned");
    assert_eq!(
        inner.1,
        ["calc.plan.sum-1", "calc.plan.sum-2", "calc.plan.product"]
    );
    assert!(
        planned.iter().any(|(p, _)| p.as_deref() == Some("steps")),
        "the top-level planner planned too: {planned:?}"
    );
    // The planned tasks ran on the child's agents.
    let agent = |node: &str| done.report.task(node).map(|t| t.agent.clone());
    assert_eq!(agent("calc.plan.sum-1").as_deref(), Some("calc.add"));
    assert_eq!(agent("calc.plan.product").as_deref(), Some("calc.mul"));

    let body = scratch.workflow(
        "body.toml",
        &format!("[workflow]\nname = \"body\"\n{AGENTS}\n[[tasks]]\nid = \"plan\"\nagent = \"planner\"\nwith = {{ query = \"fetch\" }}\n"),
    );
    let looped = scratch.workflow(
        "looped.toml",
        &format!(
            "[workflow]\nname = \"looped\"\n[[tasks]]\nid = \"again\"\nworkflow = \"{}\"\nloop = {{ max_iterations = 2 }}\n",
            body.display()
        ),
    );
    let error = Workflow::from_file(&looped)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("which has planner agents"), "{error}");
    assert!(error.contains("looped.toml:"), "the file and line: {error}");
}
