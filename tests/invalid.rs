//! Invalid workflows are refused before anything runs: the CLI exits 2 with an error that
//! names the file, the line and the fix, and no run directory is created.

use std::path::Path;
use std::process::Output;

use wasm_orch_tests::{Scratch, cli, exited_0, guest};

fn run_cli(scratch: &Scratch, file: &Path) -> Output {
    scratch
        .dirs(cli!().arg("run").arg(file))
        .output()
        .expect("the CLI runs")
}

/// Runs an invalid workflow; checks exit code 2, that nothing ran, and returns stderr.
fn refused(toml: &str) -> (String, String) {
    let scratch = Scratch::new();
    let file = scratch.workflow("flow.toml", toml);
    let out = run_cli(&scratch, &file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        !scratch.state_dir().join("tenants").exists(),
        "a run was started"
    );
    (stderr, file.display().to_string())
}

const AGENTS: &str = r#"[workflow]
name = "flow"

[agents.add]
component = "{guests}/add.wasm"
"#;

#[test]
fn a_cycle_exits_2_with_its_path_and_line() {
    let (stderr, file) = refused(&format!(
        "{AGENTS}
[[tasks]]
id = \"a\"
agent = \"add\"
depends_on = [\"c\"]

[[tasks]]
id = \"b\"
agent = \"add\"
depends_on = [\"a\"]

[[tasks]]
id = \"c\"
agent = \"add\"
depends_on = [\"b\"]
"
    ));
    assert!(
        stderr.contains("dependency cycle: a → c → b → a"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:10:")), "{stderr}");
    assert!(stderr.contains("help: "), "{stderr}");
}

#[test]
fn an_unknown_agent_exits_2_with_its_line() {
    let (stderr, file) = refused(&format!(
        "{AGENTS}\n[[tasks]]\nid = \"t\"\nagent = \"ad\"\n"
    ));
    assert!(stderr.contains("unknown agent `ad`"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:9:9")), "{stderr}");
    assert!(stderr.contains("did you mean `add`"), "{stderr}");
}

#[test]
fn a_missing_component_file_exits_2_with_its_line() {
    let (stderr, file) = refused(
        "[workflow]\nname = \"flow\"\n[agents.x]\ncomponent = \"nowhere/x.wasm\"\n[[tasks]]\nid = \"t\"\nagent = \"x\"\n",
    );
    assert!(
        stderr.contains("nowhere/x.wasm") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:4:13")), "{stderr}");
}

#[test]
fn a_duplicate_task_id_exits_2_with_its_line() {
    let (stderr, file) = refused(&format!(
        "{AGENTS}\n[[tasks]]\nid = \"t\"\nagent = \"add\"\n\n[[tasks]]\nid = \"t\"\nagent = \"add\"\n"
    ));
    assert!(stderr.contains("duplicate task id `t`"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:12:6")), "{stderr}");
    assert!(stderr.contains("first used on line 8"), "{stderr}");
}

#[test]
fn an_unknown_key_exits_2_with_its_line() {
    let (stderr, file) = refused(&format!(
        "{AGENTS}\n[[tasks]]\nid = \"t\"\nagent = \"add\"\nprio = 3\n"
    ));
    assert!(stderr.contains("unknown field `prio`"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:10:1")), "{stderr}");
}

/// Runs a workflow whose one agent's component file holds `bytes`; checks exit code 2 and
/// that the error points at the `component` line; returns stderr.
fn component_refused(bytes: &[u8]) -> String {
    let scratch = Scratch::new();
    std::fs::write(scratch.path().join("x.wasm"), bytes).expect("write");
    let file = scratch.workflow(
        "flow.toml",
        "[workflow]\nname = \"flow\"\n[agents.x]\ncomponent = \"x.wasm\"\n[[tasks]]\nid = \"t\"\nagent = \"x\"\n",
    );
    let out = run_cli(&scratch, &file);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4:13", file.display())),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_file_that_is_not_a_component_exits_2() {
    let stderr = component_refused(b"not wasm at all");
    assert!(stderr.contains("is not a valid component"), "{stderr}");
}

#[test]
fn a_component_that_is_not_a_sub_agent_exits_2() {
    // The smallest valid component: it exports nothing, so it is not a sub-agent.
    let stderr = component_refused(b"\0asm\x0d\0\x01\0");
    assert!(
        stderr.contains("does not implement `wasm-orch:agent/sub-agent`"),
        "{stderr}"
    );
    assert!(stderr.contains("wasm_orch_sdk::export!"), "{stderr}");
}

#[test]
fn a_core_module_is_told_apart_from_a_component() {
    let stderr = component_refused(b"\0asm\x01\0\0\0");
    assert!(
        stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );
}

#[test]
fn an_ungranted_unknown_tool_exits_2() {
    let (stderr, _) = refused(&format!(
        "{AGENTS}tools = [\"telepathy\"]\n[[tasks]]\nid = \"t\"\nagent = \"add\"\n"
    ));
    assert!(stderr.contains("tool `telepathy`"), "{stderr}");
    assert!(
        stderr.contains("tools of this host: http_get, kv, sleep"),
        "{stderr}"
    );
}

#[test]
fn validate_reports_the_same_problems_and_accepts_good_files() {
    let scratch = Scratch::new();
    let bad = scratch.workflow(
        "bad.toml",
        &format!("{AGENTS}\n[[tasks]]\nid = \"t\"\nagent = \"nope\"\n"),
    );
    let out = scratch
        .dirs(cli!().arg("validate").arg(&bad))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown agent `nope`"));

    assert!(guest("add").is_file());
    let good = scratch.workflow(
        "good.toml",
        &format!("{AGENTS}\n[[tasks]]\nid = \"t\"\nagent = \"add\"\n"),
    );
    let out = scratch
        .dirs(cli!().arg("validate").arg(&good))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    exited_0(&out);
    assert!(
        stdout.contains("is valid: 1 tasks, 1 agents (add)"),
        "{stdout}"
    );
}

#[test]
fn missing_inputs_and_inputs_without_a_filesystem_exit_2() {
    let (stderr, file) = refused(&format!(
        "{AGENTS}[[tasks]]\nid = \"t\"\nagent = \"add\"\ninputs = [\"nowhere.txt\"]\n"
    ));
    assert!(stderr.contains(&format!("{file}:9")), "{stderr}");
    assert!(stderr.contains("cannot read input"), "{stderr}");
    assert!(stderr.contains("nowhere.txt"), "{stderr}");

    let (stderr, _) = refused(&format!(
        "{AGENTS}workdir = false\n[[tasks]]\nid = \"t\"\nagent = \"add\"\ninputs = [\"flow.toml\"]\n"
    ));
    assert!(stderr.contains("has no filesystem"), "{stderr}");
    assert!(stderr.contains("workdir = false"), "{stderr}");

    let (stderr, _) = refused(&format!(
        "{AGENTS}[[tasks]]\nid = \"t\"\nagent = \"add\"\ninputs = [\"/etc/passwd\"]\n"
    ));
    assert!(
        stderr.contains("outside the workflow's directory"),
        "{stderr}"
    );
}
