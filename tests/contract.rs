//! Versions of the WIT contract: a component built against the previous one,
//! `wasm-orch:agent@0.2.0` (`guest-examples/add-v02`, wit-bindgen alone, no SDK), runs
//! unchanged beside 0.3 components, and one of a version the host does not serve is refused
//! with what to rebuild.

use serde_json::json;
use wasm_orch::RunStatus;
use wasm_orch_tests::{Scratch, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_says_which_version_a_component_implements() {
    let runtime = Scratch::new().runtime();
    for (name, version) in [
        ("add-v02", "wasm-orch:agent@0.2.0"),
        ("add", "wasm-orch:agent@0.3.0"),
    ] {
        let info = runtime.inspect(guest(name)).await.expect("inspect");
        assert_eq!(info.contract.as_deref(), Some(version), "{name}");
        let agent = info.sub_agent.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(agent.name, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_component_runs_between_0_3_ones_with_its_imports() {
    let done = Scratch::new()
        .run(
            r#"
[workflow]
name = "mixed"

[agents.add]
component = "{guests}/add.wasm"

[agents.old]
component = "{guests}/add-v02.wasm"

[[tasks]]
id = "first"
agent = "add"
with = { a = 1, b = 2 }

[[tasks]]
id = "legacy"
agent = "old"
depends_on = ["first"]
with = { a = 10 }

[[tasks]]
id = "last"
agent = "add"
depends_on = ["legacy"]
with = { b = 100 }
"#,
        )
        .await;
    assert_eq!(
        done.report.status,
        RunStatus::Succeeded,
        "{:?}",
        done.report
    );
    assert_eq!(done.report.output("legacy"), Some(json!(13)));
    assert_eq!(done.report.output("last"), Some(json!(113)));
    // Its 0.2 blackboard and status imports reached the same host as 0.3 ones do.
    let sums: Vec<&serde_json::Value> = done
        .report
        .blackboard
        .iter()
        .filter(|(key, _)| key.ends_with("sum"))
        .map(|(_, entry)| &entry["value"])
        .collect();
    assert_eq!(sums, [&json!(13)], "{:?}", done.report.blackboard);
    let progress: Vec<String> = done
        .events_of("legacy")
        .filter_map(|e| match &e.kind {
            wasm_orch::events::EventKind::Progress(p) => Some(p.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(progress, ["sum = 13", "done"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_component_is_told_an_upstream_failure_in_strings() {
    let done = Scratch::new()
        .run(
            r#"
[workflow]
name = "told"

[agents.crash]
component = "{guests}/crash.wasm"
retry = { max_attempts = 1 }

[agents.old]
component = "{guests}/add-v02.wasm"

[[tasks]]
id = "boom"
agent = "crash"
critical = false

[[tasks]]
id = "legacy"
agent = "old"
depends_on = ["boom"]
on_upstream_failure = "run"
"#,
        )
        .await;
    let error = done.error("legacy");
    assert!(
        error.contains("`boom` ended trapped (trap): "),
        "the 0.3 enums reach a 0.2 component as their names: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_a_version_the_host_does_not_serve_is_told_what_to_rebuild() {
    let scratch = Scratch::new();
    // add-v02 with every `wasm-orch:agent...@0.2.0` renamed `@0.9.0`: the same length, so
    // the component stays valid; only the version it claims changes.
    let mut bytes = std::fs::read(guest("add-v02")).expect("add-v02.wasm");
    let (package, old, new) = (b"wasm-orch:agent", b"@0.2.0", b"@0.9.0");
    let mut renamed = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(package.len()).position(|w| w == package) {
        let start = i + at + package.len();
        let window = &bytes[start..(start + 40).min(bytes.len())];
        if let Some(v) = window.windows(old.len()).position(|w| w == old) {
            bytes[start + v..start + v + old.len()].copy_from_slice(new);
            renamed += 1;
        }
        i = start;
    }
    assert!(renamed >= 2, "{renamed} names renamed");
    let path = scratch.path().join("future.wasm");
    std::fs::write(&path, bytes).expect("write");
    let info = scratch.runtime().inspect(&path).await.expect("inspect");
    let why = info.sub_agent.expect_err("not served");
    assert!(
        why.contains("`wasm-orch:agent@0.9.0`, which this host does not run")
            && why.contains("`wasm-orch:agent@0.3.0` and `wasm-orch:agent@0.2.0`")
            && why.contains("Rebuild it"),
        "{why}"
    );
}
