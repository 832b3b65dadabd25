//! The `wasm-orch` command line: `run` (exit codes, results file, JSON-lines events, plain
//! progress lines in a pipe), `graph`, `inspect`, and usage errors.

use std::path::PathBuf;

use serde_json::Value;
use wasm_orch_tests::{Scratch, cli, exited_0, guest, root, shared_cache};

fn calc() -> PathBuf {
    root().join("examples/calc.toml")
}

#[test]
fn run_exits_0_writes_results_and_streams_events_as_json_lines() {
    let scratch = Scratch::new();
    let results = scratch.path().join("out/results.json");
    let out = scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(calc())
                .args(["--events", "-", "--output"])
                .arg(&results),
        )
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results file"))
            .expect("json");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["outputs"]["product"], 21);
    assert_eq!(report["tasks"].as_array().map(Vec::len), Some(3));

    // stdout is the event stream, one JSON object per line, in order.
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some("agent.plan.created".into())
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some("agent.run.completed".into())
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "agent.task.status.updated"
                && e["node"] == "product"
                && e["status"] == "succeeded"
                && e["fuel_used"].as_u64().is_some_and(|f| f > 0))
    );

    // The run's directory keeps its own copies.
    let run_dir = PathBuf::from(report["directory"].as_str().expect("directory"));
    assert!(run_dir.join("results.json").is_file());
    let journal = std::fs::read_to_string(run_dir.join("events.jsonl")).expect("journal");
    assert_eq!(journal.lines().count(), events.len());

    // In a pipe, progress is plain lines on stderr, then the summary table.
    assert!(
        stderr.contains("left") && stderr.contains("running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TASK") && stderr.contains("product"),
        "{stderr}"
    );
    assert!(stderr.contains("calc succeeded"), "{stderr}");
}

#[test]
fn run_exits_1_when_a_task_fails() {
    let scratch = Scratch::new();
    let file = scratch.workflow(
        "fail.toml",
        r#"[workflow]
name = "fail"
[agents.crash]
component = "{guests}/crash.wasm"
[[tasks]]
id = "boom"
agent = "crash"
"#,
    );
    let out = scratch
        .dirs(cli!().arg("run").arg(&file).args(["--output", "-"]))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("results on stdout");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["tasks"][0]["status"], "trapped");
}

#[test]
fn params_are_passed_with_dash_dash_param_and_unknown_ones_exit_2() {
    let scratch = Scratch::new();
    let file = scratch.workflow(
        "params.toml",
        r#"[workflow]
name = "params"
[params]
a = 1
[agents.add]
component = "{guests}/add.wasm"
[[tasks]]
id = "sum"
agent = "add"
with = { a = "${a}", b = 1 }
"#,
    );
    let run = |param: &str| {
        scratch
            .dirs(
                cli!()
                    .arg("run")
                    .arg(&file)
                    .args(["--param", param, "--output", "-"]),
            )
            .output()
            .expect("runs")
    };
    let out = run("a=41");
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outputs"]["sum"], 42);

    let out = run("b=1");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--param `b` is not a parameter"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(cli!().output().expect("runs").status.code(), Some(2));
    assert_eq!(
        cli!().args(["run"]).output().expect("runs").status.code(),
        Some(2)
    );
    let out = cli!()
        .args(["run", "does-not-exist.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.toml"));
    let out = cli!()
        .arg("run")
        .arg(calc())
        .args(["--output", "-", "--events", "-"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_for_a_tenant_refuses_another_tenants_file() {
    let scratch = Scratch::new();
    // calc.toml names no tenant: it is `default`'s.
    let out = scratch
        .dirs(cli!().arg("run").arg(calc()).args(["--tenant", "acme"]))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("calc.toml"), "{stderr}");
    assert!(
        stderr.contains("belongs to tenant `default`, not to `acme`"),
        "{stderr}"
    );
    // Nothing ran.
    let runs = |tenant: &str| {
        std::fs::read_dir(
            scratch
                .state_dir()
                .join("tenants")
                .join(tenant)
                .join("runs"),
        )
        .map(|d| d.count())
        .unwrap_or(0)
    };
    assert_eq!((runs("default"), runs("acme")), (0, 0));
    let out = scratch
        .dirs(cli!().arg("run").arg(calc()).args(["--tenant", "default"]))
        .output()
        .expect("runs");
    exited_0(&out);
    assert_eq!(runs("default"), 1);
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let out = cli!().arg("graph").arg(calc()).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph \"calc\""), "{dot}");
    assert!(dot.contains("\"left\" -> \"product\";") && dot.contains("\"right\" -> \"product\";"));

    let out = cli!()
        .arg("graph")
        .arg(calc())
        .args(["--format", "mermaid"])
        .output()
        .expect("runs");
    let mermaid = String::from_utf8_lossy(&out.stdout);
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    assert!(
        mermaid.contains("t0 --> t2") && mermaid.contains("t1 --> t2"),
        "{mermaid}"
    );
}

#[test]
fn inspect_shows_the_world_and_the_agents_description() {
    let out = cli!()
        .arg("inspect")
        .arg(guest("add"))
        .arg("--cache-dir")
        .arg(shared_cache())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    exited_0(&out);
    assert!(stdout.contains("sub-agent: yes"), "{stdout}");
    assert!(stdout.contains("name:         add 0.1.0"), "{stdout}");
    assert!(stdout.contains("capabilities: math.add"), "{stdout}");
    assert!(
        stdout.contains("import wasm-orch:agent/status@0.3.0;"),
        "{stdout}"
    );
    assert!(
        stdout.contains("export wasm-orch:agent/agent@0.3.0;"),
        "{stdout}"
    );
}

#[test]
fn inspect_says_why_a_component_is_not_a_sub_agent() {
    let scratch = Scratch::new();
    let empty = scratch.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").expect("write");
    let out = cli!()
        .arg("inspect")
        .arg(&empty)
        .arg("--no-cache")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.contains("sub-agent: no"), "{stdout}");
    assert!(stdout.contains("wasm-orch:agent/agent"), "{stdout}");
}

#[test]
fn new_creates_an_agent_project_and_refuses_what_it_cannot_make() {
    let scratch = Scratch::new();
    let dir = scratch.path().join("my-agent");
    let out = cli!()
        .args(["new", "my-agent", "--dir"])
        .arg(&dir)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("cargo test") && said.contains("wasm-orch run workflow.toml"),
        "{said}"
    );
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("the agent");
    assert!(
        lib.contains("impl Agent for MyAgent") && lib.contains("TestRun"),
        "{lib}"
    );
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).expect("its Cargo.toml");
    assert!(
        cargo.contains("wasm-orch-sdk = { path = ") && cargo.contains("[workspace]"),
        "{cargo}"
    );
    // The workflow points at the component `cargo build` makes (`cargo xtask test` builds and
    // runs a new project end to end).
    let workflow = std::fs::read_to_string(dir.join("workflow.toml")).expect("its workflow");
    assert!(
        workflow.contains("target/wasm32-wasip2/release/my_agent.wasm"),
        "{workflow}"
    );
    for (args, why) in [
        (vec!["new", "my-agent", "--dir"], "exists already"),
        (vec!["new", "Bad Name"], "not an agent name"),
        (vec!["new", "x", "--lang", "cobol"], "unknown language"),
    ] {
        let mut cmd = cli!();
        cmd.args(&args).current_dir(scratch.path());
        if args.contains(&"--dir") {
            cmd.arg(&dir);
        }
        let out = cmd.output().expect("run the CLI");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // Python and JavaScript projects carry the WIT contract their toolchains build from.
    for (lang, files) in [
        (
            "python",
            [
                "app.py",
                "test_app.py",
                "wasm_orch.py",
                "wasm_orch_testing.py",
            ],
        ),
        (
            "js",
            [
                "agent.js",
                "agent.test.mjs",
                "package.json",
                "testing/fake/tools.mjs",
            ],
        ),
    ] {
        let dir = scratch.path().join(format!("agent-{lang}"));
        let out = cli!()
            .args(["new", "greeter", "--lang", lang, "--dir"])
            .arg(&dir)
            .output()
            .expect("run the CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in files {
            assert!(dir.join(file).is_file(), "{lang}: no {file}");
        }
        assert!(dir.join("wit/agent.wit").is_file());
        let workflow = std::fs::read_to_string(dir.join("workflow.toml")).expect("workflow");
        assert!(
            workflow.contains("component = \"greeter.wasm\""),
            "{workflow}"
        );
    }
}
