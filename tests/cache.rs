//! Components are compiled once: a second run in the same process takes them from memory, a
//! new process (a new runtime) takes them from the disk cache, and a corrupt cache entry is
//! recompiled instead of breaking the run.

use wasm_orch::report::CacheSource;
use wasm_orch::{RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::Scratch;

const FLOW: &str = r#"
[workflow]
name = "cached"
[agents.add]
component = "{guests}/add.wasm"
[[tasks]]
id = "sum"
agent = "add"
with = { a = 2, b = 3 }
"#;

fn runtime(scratch: &Scratch) -> Runtime {
    Runtime::builder()
        .state_dir(scratch.state_dir())
        .cache_dir(scratch.path().join("cache"))
        .max_instances(16)
        .build()
        .expect("runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_does_not_recompile() {
    let scratch = Scratch::new();
    let workflow = Workflow::from_file(scratch.workflow("flow.toml", FLOW)).expect("valid");

    let first = runtime(&scratch);
    let a = scratch
        .run_workflow(&first, &workflow, RunOptions::new())
        .await;
    assert_eq!(a.report.agents["add"].cache, CacheSource::Compiled);
    let b = scratch
        .run_workflow(&first, &workflow, RunOptions::new())
        .await;
    assert_eq!(b.report.agents["add"].cache, CacheSource::Memory);

    // A new runtime, as in a new process: loaded from disk, not compiled.
    let second = runtime(&scratch);
    let c = scratch
        .run_workflow(&second, &workflow, RunOptions::new())
        .await;
    assert_eq!(c.report.agents["add"].cache, CacheSource::DiskCache);
    assert_eq!(c.report.output("sum"), Some(serde_json::json!(5)));
    assert_eq!(a.report.agents["add"].digest, c.report.agents["add"].digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_entry_is_recompiled() {
    let scratch = Scratch::new();
    let workflow = Workflow::from_file(scratch.workflow("flow.toml", FLOW)).expect("valid");
    scratch
        .run_workflow(&runtime(&scratch), &workflow, RunOptions::new())
        .await;
    let mut entries = 0;
    for dir in std::fs::read_dir(scratch.path().join("cache")).expect("cache dir") {
        for file in std::fs::read_dir(dir.expect("entry").path()).expect("engine dir") {
            std::fs::write(file.expect("file").path(), b"garbage").expect("corrupt");
            entries += 1;
        }
    }
    assert_eq!(entries, 1);
    let done = scratch
        .run_workflow(&runtime(&scratch), &workflow, RunOptions::new())
        .await;
    assert_eq!(done.status("sum"), TaskStatus::Succeeded);
    assert_eq!(done.report.agents["add"].cache, CacheSource::Compiled);
}
