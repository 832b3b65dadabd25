//! Each task runs in its own WASI sandbox: an empty environment, its own working directory
//! (files it writes stay there; `..`, absolute paths and symlinks do not leave it), no
//! network, stdout and stderr turned into log events. The blackboard is shared by the run's
//! tasks, and compare-and-swap loses no update between parallel branches.

use std::net::TcpListener;

use serde_json::Value;
use wasm_orch::events::{EventKind, LogStream};
use wasm_orch::{RunOptions, TaskStatus, Workflow};
use wasm_orch_tests::Scratch;

const PROBE: &str = r#"
[workflow]
name = "sandbox"

[agents.probe]
component = "{guests}/probe.wasm"
"#;

fn read_results(output: &Value) -> Vec<(String, Result<String, String>)> {
    serde_json::from_value(output["reads"].clone()).expect("reads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_only_its_own_directory_and_no_environment() {
    let scratch = Scratch::new();
    // Plant a symlink (to a file outside) in the task's working directory before it starts.
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "outside the sandbox").expect("write");
    let work = scratch
        .state_dir()
        .join("tenants/default/runs/fixed-run/sandbox.one");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::os::unix::fs::symlink(&secret, work.join("link")).expect("symlink");
    let toml = format!(
        r#"{PROBE}
[[tasks]]
id = "one"
agent = "probe"
with = {{ write = "note.txt", read = ["note.txt", "link", "../../../../secret.txt", "{}", "/etc/passwd"] }}

[[tasks]]
id = "two"
agent = "probe"
with = {{ write = "note.txt", read = ["../sandbox.one/note.txt"] }}
"#,
        secret.display()
    );
    let path = scratch.workflow("sandbox.toml", &toml);
    let workflow = Workflow::from_file(&path).expect("valid");
    let done = scratch
        .run_workflow(
            &scratch.runtime(),
            &workflow,
            RunOptions::new().run_id("fixed-run"),
        )
        .await;
    assert_eq!(
        done.status("one"),
        TaskStatus::Succeeded,
        "{}",
        done.error("one")
    );
    let one = done.report.output("one").expect("output");

    assert_eq!(
        one["env_vars"],
        serde_json::json!([]),
        "the host environment leaked"
    );
    assert_eq!(one["write"]["Ok"], "written by probe");
    let reads = read_results(&one);
    assert_eq!(reads[0].1, Ok("written by probe".to_owned()));
    for (path, result) in &reads[1..] {
        assert!(
            result.is_err(),
            "`{path}` was readable from the sandbox: {result:?}"
        );
    }
    // The file written stays in the task's own directory, and only there.
    assert_eq!(
        std::fs::read_to_string(work.join("note.txt")).expect("artifact"),
        "written by probe"
    );
    let two = done.report.output("two").expect("output");
    assert!(
        read_results(&two)[0].1.is_err(),
        "a task read another task's directory"
    );
    let two_dir = scratch
        .state_dir()
        .join("tenants/default/runs/fixed-run/sandbox.two");
    assert!(two_dir.join("note.txt").is_file());

    // stdout and stderr became log events of the task.
    let streams: Vec<(LogStream, String)> = done
        .events_of("one")
        .filter_map(|e| match &e.kind {
            EventKind::Log(l) => Some((l.stream, l.message.clone())),
            _ => None,
        })
        .collect();
    assert!(
        streams.contains(&(LogStream::Stdout, "probe: hello on stdout".into())),
        "{streams:?}"
    );
    assert!(
        streams.contains(&(LogStream::Stderr, "probe: hello on stderr".into())),
        "{streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_workdir_has_no_filesystem_at_all() {
    let scratch = Scratch::new();
    let done = scratch
        .run(
            r#"
[workflow]
name = "nofs"
[agents.probe]
component = "{guests}/probe.wasm"
workdir = false
[[tasks]]
id = "p"
agent = "probe"
with = { write = "note.txt", read = ["note.txt", "/etc/passwd"] }
"#,
        )
        .await;
    assert_eq!(
        done.status("p"),
        TaskStatus::Succeeded,
        "{}",
        done.error("p")
    );
    let output = done.report.output("p").expect("output");
    assert!(
        output["write"].get("Err").is_some(),
        "it wrote a file: {output}"
    );
    assert!(read_results(&output).iter().all(|(_, r)| r.is_err()));
    assert!(
        !scratch
            .state_dir()
            .join("tenants/default/runs")
            .read_dir()
            .is_ok_and(|mut runs| {
                runs.any(|run| run.is_ok_and(|r| r.path().join("nofs.p").exists()))
            }),
        "a working directory was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_has_no_network() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let scratch = Scratch::new();
    let toml = format!(
        "{PROBE}\n[[tasks]]\nid = \"net\"\nagent = \"probe\"\nwith = {{ connect = {{ ip = [127, 0, 0, 1], port = {port} }} }}\n"
    );
    let done = scratch.run(&toml).await;
    assert_eq!(
        done.status("net"),
        TaskStatus::Succeeded,
        "{}",
        done.error("net")
    );
    let output = done.report.output("net").expect("output");
    let connect = &output["connect"];
    assert!(
        connect.get("Err").is_some(),
        "the guest connected: {connect}"
    );
    assert!(listener.accept().is_err(), "a connection reached the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_compare_and_swap_increments_lose_no_update() {
    let scratch = Scratch::new();
    let done = scratch
        .run(
            r#"
[workflow]
name = "counting"
max_concurrency = 2

[agents.counter]
component = "{guests}/counter.wasm"

[[tasks]]
id = "left"
agent = "counter"
with = { key = "shared/count", times = 1000 }

[[tasks]]
id = "right"
agent = "counter"
with = { key = "shared/count", times = 1000 }
"#,
        )
        .await;
    assert_eq!(
        done.status("left"),
        TaskStatus::Succeeded,
        "{}",
        done.error("left")
    );
    assert_eq!(
        done.status("right"),
        TaskStatus::Succeeded,
        "{}",
        done.error("right")
    );
    let entry = &done.report.blackboard["shared/count"];
    assert_eq!(entry["value"], 2000);
    assert_eq!(entry["version"], 2000);
    let last = [done.report.output("left"), done.report.output("right")];
    assert!(last.contains(&Some(serde_json::json!(2000))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_reads_its_upstream_artifacts_read_only() {
    let scratch = Scratch::new();
    let done = scratch
        .run(
            r#"
[workflow]
name = "files"

[agents.probe]
component = "{guests}/probe.wasm"

[agents.intruder]
component = "{guests}/intruder.wasm"

[[tasks]]
id = "make"
agent = "probe"
with = { write = "note.txt" }

[[tasks]]
id = "use"
agent = "intruder"
depends_on = ["make"]
with = { attempts = [
    { do = "read", path = "upstream/make/note.txt" },
    { do = "list", path = "upstream/make" },
    { do = "write", path = "upstream/make/note.txt", text = "changed" },
    { do = "write", path = "upstream/make/new.txt", text = "added" },
] }
"#,
        )
        .await;
    assert_eq!(
        done.status("use"),
        TaskStatus::Succeeded,
        "{}",
        done.error("use")
    );
    let make = done.report.task("make").expect("make");
    assert_eq!(make.artifacts.len(), 1);
    assert_eq!(
        (make.artifacts[0].path.as_str(), make.artifacts[0].bytes),
        ("note.txt", 16)
    );
    let output = done.report.output("use").expect("output");
    let results: Vec<&Value> = output
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| &a["result"])
        .collect();
    assert_eq!(results[0]["Ok"], "written by probe");
    assert_eq!(results[1]["Ok"], "note.txt");
    assert!(results[2].get("Err").is_some(), "{output}");
    assert!(results[3].get("Err").is_some(), "{output}");
    let denied: Vec<String> = done
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.decision == wasm_orch::events::Decision::Denied => {
                Some(a.action.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(denied, ["open note.txt", "open new.txt"]);
    let note = done.report.directory.join("files.make/note.txt");
    assert_eq!(
        std::fs::read_to_string(note).ok().as_deref(),
        Some("written by probe")
    );
    // The grants in force said so when the task started.
    let grants = done
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TaskGrants(g) if g.task.node == "use" => Some(g.inputs.clone()),
            _ => None,
        })
        .expect("grants of `use`");
    assert_eq!(grants, ["upstream/make"]);
}
