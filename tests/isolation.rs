//! Tenant isolation: two tenants' workflows run side by side in one runtime. An adversarial
//! guest of tenant `mallory` tries to reach tenant `alice`'s files, blackboard, tools,
//! secrets and tasks; every attempt is denied and on the record (an audit event with tenant,
//! run, node and reason), while alice's tasks succeed and her files stay as they were.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wasm_orch::events::{AuditResource, CredentialAction, Decision, EventKind};
use wasm_orch::policy::Policy;
use wasm_orch::secrets::{SecretBackend, SecretFuture};
use wasm_orch::{ClaimError, RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::{Finished, Scratch, guests, kv_store, shared_cache};

const ALICE_TOKEN: &str = "alice-s3cr3t-7f3a9b1c";
const MALLORY_TOKEN: &str = "mallory-s3cr3t-5e2d8a40";

/// Secrets from a map of (tenant, name).
struct Fixed(HashMap<(String, String), String>);

impl SecretBackend for Fixed {
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
        let value = self.0.get(&(tenant.to_owned(), name.to_owned())).cloned();
        Box::pin(async move { Ok(value) })
    }
}

fn policy(extra: &str) -> Policy {
    Policy::parse(
        &format!(
            r#"
[defaults]
credential_ttl = "10m"

[tenants.alice]
tools = ["sleep", "kv", "http_get"]
secrets = {{ alice-token = ["secretive"] }}

[tenants.mallory]
tools = ["sleep", "kv"]
tool_limits = {{ kv = {{ per_run = 3 }} }}
secrets = {{ mallory-token = ["secretive"] }}
{extra}"#
        ),
        "policy.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A runtime shared by both tenants, its state in a scratch directory.
struct World {
    scratch: Scratch,
    runtime: Runtime,
}

/// Alice's workflow: a probe that writes a file, a counter on a shared key, a key-value
/// write, and a pause that keeps her run going while mallory's runs.
const ALICE: &str = r#"
[workflow]
name = "notes"
tenant = "alice"

[agents.probe]
component = "{guests}/probe.wasm"

[agents.counter]
component = "{guests}/counter.wasm"

[agents.intruder]
component = "{guests}/intruder.wasm"
tools = ["kv"]

[agents.wait]
component = "{guests}/wait.wasm"
tools = ["sleep"]

[[tasks]]
id = "note"
agent = "probe"
with = { write = "note.txt", read = ["note.txt"] }

[[tasks]]
id = "count"
agent = "counter"
with = { key = "shared/count", times = 50 }

[[tasks]]
id = "remember"
agent = "intruder"
with = { attempts = [{ do = "tool", name = "kv", input = { op = "put", key = "alice-note", value = "alice's own" } }] }

[[tasks]]
id = "pause"
agent = "wait"
with = { ms = 400 }
"#;

impl World {
    fn new() -> Self {
        Self::with_policy(policy(""))
    }

    fn with_policy(policy: Policy) -> Self {
        let scratch = Scratch::new();
        let secret = |tenant: &str, name: &str, value: &str| {
            ((tenant.to_owned(), name.to_owned()), value.to_owned())
        };
        let secrets = Fixed(HashMap::from([
            secret("alice", "alice-token", ALICE_TOKEN),
            secret("mallory", "mallory-token", MALLORY_TOKEN),
            // The same name as alice's, another tenant's value.
            secret("mallory", "alice-token", "mallory-owns-this-name"),
        ]));
        let runtime = Runtime::builder()
            .state_dir(scratch.state_dir())
            .cache_dir(shared_cache())
            .max_instances(100)
            .policy(policy)
            .secrets(secrets)
            .build()
            .expect("a runtime");
        Self { scratch, runtime }
    }

    async fn run(&self, file: &str, toml: &str, run_id: &str) -> Finished {
        let path = self.scratch.workflow(file, toml);
        let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        self.scratch
            .run_workflow(&self.runtime, &workflow, RunOptions::new().run_id(run_id))
            .await
    }

    /// Alice's first run, which leaves her files and her key-value store behind.
    async fn alice_first(&self) -> Finished {
        let done = self.run("alice.toml", ALICE, "alice-1").await;
        all_succeeded(&done);
        done
    }

    fn alice_dir(&self) -> PathBuf {
        self.scratch.state_dir().join("tenants/alice")
    }

    /// Mallory's workflow `attack` (its task `intrude`, agent `intruder`), run beside a second
    /// run of alice's. Returns (mallory's run, alice's run).
    async fn side_by_side(&self, mallory: &str) -> (Finished, Finished) {
        let before = snapshot(&self.alice_dir().join("runs/alice-1"));
        // Keys and values (her own second run writes her note again: a new version).
        let contents = |store: Vec<(String, String, i64)>| -> Vec<(String, String)> {
            store.into_iter().map(|(k, v, _)| (k, v)).collect()
        };
        let kv_before = contents(kv_store(&self.scratch.state_dir(), "alice"));
        assert!(!kv_before.is_empty(), "alice has a store");
        let (attack, alice) = tokio::join!(
            self.run("attack.toml", mallory, "attack-1"),
            self.run("alice.toml", ALICE, "alice-2"),
        );
        all_succeeded(&alice);
        assert_eq!(
            std::fs::read_to_string(self.alice_dir().join("runs/alice-2/notes.note/note.txt"))
                .ok()
                .as_deref(),
            Some("written by probe")
        );
        assert_eq!(
            snapshot(&self.alice_dir().join("runs/alice-1")),
            before,
            "alice's files changed"
        );
        assert_eq!(
            contents(kv_store(&self.scratch.state_dir(), "alice")),
            kv_before,
            "alice's key-value store changed"
        );
        // Her blackboard is her own: 50 increments, by her counter only.
        assert_eq!(alice.report.blackboard["shared/count"]["value"], 50);
        (attack, alice)
    }

    /// Mallory's working directory in run `attack-1`.
    fn mallory_work(&self) -> PathBuf {
        self.scratch
            .state_dir()
            .join("tenants/mallory/runs/attack-1/attack.intrude")
    }
}

fn all_succeeded(done: &Finished) {
    for task in &done.report.tasks {
        assert_eq!(
            task.status,
            TaskStatus::Succeeded,
            "{} of {}: {:?}",
            task.node,
            done.report.tenant,
            task.error
        );
    }
}

/// Every file under `dir` (recursively) with its bytes; symlinks as their targets.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable").flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                files.insert(path, target.to_string_lossy().as_bytes().to_vec());
            } else {
                files.insert(path, std::fs::read(entry.path()).expect("read"));
            }
        }
    }
    assert!(!files.is_empty(), "nothing under {}", dir.display());
    files
}

/// Mallory's workflow: the intruder with `attempts`, plus `agent_extra` lines on its agent
/// and `task_extra` lines on its task.
fn attack(attempts: &Value, agent_extra: &str, task_extra: &str) -> String {
    format!(
        r#"
[workflow]
name = "attack"
tenant = "mallory"

[agents.intruder]
component = "{}/intruder.wasm"
{agent_extra}

[[tasks]]
id = "intrude"
agent = "intruder"
with = {{ attempts = {} }}
{task_extra}
"#,
        guests().display(),
        toml_value(attempts)
    )
}

/// A JSON value as a TOML inline value.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", Value::String(k.clone()), toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The intruder's answers: attempt → Ok(text) or Err(message).
fn answers(done: &Finished) -> Vec<(String, Result<String, String>)> {
    let output = done.report.output("intrude").unwrap_or_else(|| {
        panic!(
            "the intruder did not finish: {:?}",
            done.report.task("intrude").map(|t| &t.error)
        )
    });
    output
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            let result = &a["result"];
            let result = match (result.get("Ok"), result.get("Err")) {
                (Some(ok), _) => Ok(ok.as_str().unwrap_or_default().to_owned()),
                (_, Some(err)) => Err(err.as_str().unwrap_or_default().to_owned()),
                _ => panic!("{a}"),
            };
            (a["attempt"].as_str().unwrap_or_default().to_owned(), result)
        })
        .collect()
}

/// Denials recorded for `resource`: (action, reason); checks that each names mallory, her
/// run and her task.
fn denials(done: &Finished, resource: AuditResource) -> Vec<(String, String)> {
    done.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.resource == resource && a.decision == Decision::Denied => {
                assert_eq!(a.tenant, "mallory");
                assert_eq!(e.run_id, "attack-1");
                assert_eq!(a.task.node, "intrude");
                assert!(!a.reason.is_empty());
                Some((a.action.clone(), a.reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn denied(denials: &[(String, String)], action: &str) -> bool {
    denials.iter().any(|(a, _)| a == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_sandbox_are_out_of_reach_and_every_try_is_audited() {
    let world = World::new();
    world.alice_first().await;
    let alice_note = world.alice_dir().join("runs/alice-1/notes.note/note.txt");
    // From mallory's working directory, up to `tenants/` and down into alice's.
    let climb = "../../../../alice/runs/alice-1/notes.note/note.txt";
    let absolute = alice_note.display().to_string();
    // A symlink to alice's file, planted in mallory's working directory before her run.
    std::fs::create_dir_all(world.mallory_work()).expect("mkdir");
    std::os::unix::fs::symlink(&alice_note, world.mallory_work().join("planted")).expect("link");
    std::fs::write(world.scratch.path().join("data.txt"), "mallory's input").expect("input");

    let attempts = json!([
        { "do": "read", "path": climb },
        { "do": "write", "path": climb, "text": "owned" },
        { "do": "raw_read", "path": absolute },
        { "do": "read", "path": absolute },
        { "do": "read", "path": "planted" },
        { "do": "symlink", "target": climb, "link": "made" },
        { "do": "symlink", "target": absolute, "link": "made-absolute" },
        { "do": "list", "path": ".." },
        { "do": "write", "path": "inputs/data.txt", "text": "overwritten" },
        { "do": "read", "path": "inputs/data.txt" },
        { "do": "write", "path": "mine.txt", "text": "mallory's own" },
    ]);
    let (done, _alice) = world
        .side_by_side(&attack(&attempts, "", "inputs = [\"data.txt\"]"))
        .await;
    let answers = answers(&done);
    let legit = ["read inputs/data.txt", "write mine.txt"];
    for (attempt, result) in &answers {
        if legit.contains(&attempt.as_str()) {
            assert!(result.is_ok(), "{attempt}: {result:?}");
        } else {
            assert!(result.is_err(), "{attempt} was allowed: {result:?}");
        }
    }
    assert_eq!(answers[9].1, Ok("mallory's input".to_owned()));

    let files = denials(&done, AuditResource::File);
    for action in [
        format!("open {climb}"),
        format!("open {absolute}"),
        "open planted".to_owned(),
        format!("symlink made-absolute -> {absolute}"),
        "open made".to_owned(),
        "open ..".to_owned(),
        "open data.txt".to_owned(),
    ] {
        assert!(
            denied(&files, &action),
            "no denial of `{action}` in {files:#?}"
        );
    }
    // An absolute path through the standard library is resolved inside the sandbox (its
    // root is the working directory), where there is no such file: it does not leave.
    assert!(
        answers[3]
            .1
            .as_ref()
            .is_err_and(|e| e.contains("No such file"))
    );
    // The input stayed as given; what mallory wrote is her artifact, listed in the results.
    assert_eq!(
        std::fs::read_to_string(world.scratch.path().join("data.txt"))
            .ok()
            .as_deref(),
        Some("mallory's input")
    );
    let artifacts: Vec<&str> = done
        .report
        .task("intrude")
        .map(|t| t.artifacts.iter().map(|a| a.path.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(artifacts, ["mine.txt"], "symlinks are not artifacts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_bomb_stops_at_the_quota_and_every_refusal_is_audited() {
    let world = World::new();
    world.alice_first().await;
    // Every way of writing, each refused once it would pass the quota: one write at an
    // offset, growing a sparse file, streaming until the quota is spent, then creating files.
    let attempts = json!([
        { "do": "raw_write", "path": "raw.bin", "bytes": 2_000_000 },
        { "do": "grow", "path": "sparse.bin", "size": 1_u64 << 40 },
        { "do": "fill", "path": "big.bin", "chunk": 65536 },
        { "do": "touch", "prefix": "f", "count": 100_000 },
        { "do": "write", "path": "late.txt", "text": "too late" },
    ]);
    let (done, _alice) = world
        .side_by_side(&attack(&attempts, "disk = \"1MiB\"", ""))
        .await;
    let answers = answers(&done);
    for (attempt, result) in &answers {
        let Err(e) = result else {
            panic!("{attempt} was allowed: {result:?}");
        };
        assert!(
            e.contains("No space left on device") || e.contains("InsufficientSpace"),
            "{attempt}: {e}"
        );
    }
    // The fill got as far as the quota, and no farther.
    let work = world.mallory_work();
    let size = |name: &str| std::fs::metadata(work.join(name)).map_or(0, |m| m.len());
    assert!(
        (900_000..=1 << 20).contains(&size("big.bin")),
        "{}",
        size("big.bin")
    );
    assert_eq!(size("raw.bin"), 0);
    assert_eq!(size("sparse.bin"), 0);
    let mut files: Vec<String> = std::fs::read_dir(&work)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    assert_eq!(files, ["big.bin", "raw.bin", "sparse.bin"]);

    let quota = denials(&done, AuditResource::Quota);
    for action in [
        "disk write",
        "disk set-size",
        "disk write (stream)",
        "disk create f0",
        "disk create late.txt",
    ] {
        assert!(
            denied(&quota, action),
            "no denial of `{action}` in {quota:#?}"
        );
    }
    assert!(
        quota
            .iter()
            .all(|(_, reason)| reason.contains("disk quota of 1MiB"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_and_runs_blackboard_keys_are_out_of_reach() {
    let world = World::new();
    world.alice_first().await;
    let attempts = json!([
        { "do": "get", "key": "tenants/alice/runs/alice-1/shared/count" },
        { "do": "put", "key": "tenants/alice/runs/alice-2/shared/count", "value": 0 },
        { "do": "get", "key": "runs/alice-2/shared/count" },
        { "do": "get", "key": "branches/notes.count/progress" },
        { "do": "swap", "key": "branches/notes.count/progress", "value": 0 },
        { "do": "get", "key": "../shared/count" },
        { "do": "put", "key": "/shared/count", "value": 1 },
        { "do": "put", "key": "shared/count", "value": 1_000_000 },
        { "do": "get", "key": "shared/count" },
        { "do": "swap", "key": "shared/mine", "value": 1 },
        { "do": "put", "key": "notes", "value": "mallory's own" },
    ]);
    let (done, alice) = world.side_by_side(&attack(&attempts, "", "")).await;
    let answers = answers(&done);
    for (attempt, result) in &answers[..8] {
        assert!(result.is_err(), "{attempt} was allowed: {result:?}");
    }
    // Mallory's own run has a `shared/count` namespace of its own: empty.
    assert_eq!(answers[8].1, Ok("absent".to_owned()));
    assert!(answers[9].1.is_ok() && answers[10].1.is_ok(), "{answers:?}");

    let denied_keys = denials(&done, AuditResource::Blackboard);
    for action in [
        "get tenants/alice/runs/alice-1/shared/count",
        "put tenants/alice/runs/alice-2/shared/count",
        "get runs/alice-2/shared/count",
        "get branches/notes.count/progress",
        "compare-and-swap branches/notes.count/progress",
        "get ../shared/count",
        "put /shared/count",
        "put shared/count",
    ] {
        assert!(
            denied(&denied_keys, action),
            "no denial of `{action}` in {denied_keys:#?}"
        );
    }
    // What mallory did write is in her run's blackboard, scoped to her branch, and nowhere
    // in alice's.
    let board = &done.report.blackboard;
    assert_eq!(
        board["branches/attack.intrude/notes"]["value"],
        "mallory's own"
    );
    assert_eq!(board["shared/mine"]["value"], 1);
    assert!(
        alice
            .report
            .blackboard
            .keys()
            .all(|k| !k.contains("attack"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_the_policy_does_not_grant_are_refused_and_quotas_hold() {
    let world = World::new();
    world.alice_first().await;
    let kv_put = |key: &str| json!({ "op": "put", "key": key, "value": "mallory's" });
    let attempts = json!([
        // Granted to the agent, but not allowed to tenant mallory by the policy.
        { "do": "tool", "name": "http_get", "input": { "url": "http://127.0.0.1:9/" } },
        // Allowed to the tenant, but not granted to the agent.
        { "do": "tool", "name": "sleep", "input": { "ms": 1 } },
        // No such tool.
        { "do": "tool", "name": "telepathy", "input": {} },
        // Alice's key-value store is not mallory's: her key is not there...
        { "do": "tool", "name": "kv", "input": { "op": "get", "key": "alice-note" } },
        // ...and the per-run quota of 3 calls (one spent above) stops the fourth.
        { "do": "tool", "name": "kv", "input": kv_put("a") },
        { "do": "tool", "name": "kv", "input": kv_put("b") },
        { "do": "tool", "name": "kv", "input": kv_put("c") },
    ]);
    let (done, _alice) = world
        .side_by_side(&attack(&attempts, "tools = [\"kv\", \"http_get\"]", ""))
        .await;
    let answers = answers(&done);
    let results: Vec<(&str, bool)> = answers
        .iter()
        .map(|(a, r)| (a.as_str(), r.is_ok()))
        .collect();
    assert_eq!(
        results,
        [
            ("tool http_get #1", false),
            ("tool sleep #1", false),
            ("tool telepathy #1", false),
            ("tool kv #1", true),
            ("tool kv #1", true),
            ("tool kv #1", true),
            ("tool kv #1", false),
        ]
    );
    let read: serde_json::Value =
        serde_json::from_str(answers[3].1.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(
        read["value"],
        serde_json::Value::Null,
        "alice's key is not mallory's"
    );
    let tools = denials(&done, AuditResource::Tool);
    assert!(
        tools
            .iter()
            .any(|(a, r)| a == "http_get" && r.contains("tenant `mallory` may not use")),
        "{tools:?}"
    );
    assert!(
        tools
            .iter()
            .any(|(a, r)| a == "sleep" && r.contains("not granted")),
        "{tools:?}"
    );
    assert!(denied(&tools, "telepathy"), "{tools:?}");
    let quota = denials(&done, AuditResource::Quota);
    assert_eq!(quota.len(), 1, "{quota:?}");
    assert!(quota[0].1.contains("3 calls of `kv` per run"), "{quota:?}");
    // Every call, allowed or denied, is on the record: 3 allowed kv calls.
    let allowed = done
        .events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Audit(a) if a.resource == AuditResource::Tool && a.decision == Decision::Allowed))
        .count();
    assert_eq!(allowed, 3);
    // The grants in force were published when the task started: only `kv` is effective.
    let grants = done
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TaskGrants(g) => Some(g.clone()),
            _ => None,
        })
        .expect("grants");
    assert_eq!(grants.tools, ["kv"]);
    assert_eq!(grants.tenant, "mallory");
    // Mallory's store is hers, beside alice's.
    let mallory_kv = kv_store(&world.scratch.state_dir(), "mallory");
    let keys: Vec<&str> = mallory_kv.iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"a")
            && mallory_kv
                .iter()
                .all(|(k, v, _)| !k.contains("alice") && !v.contains("alice")),
        "{mallory_kv:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_read_only_where_policy_grants_them() {
    let world = World::new();
    world.alice_first().await;
    let attempts = json!([
        { "do": "secret", "name": "alice-token" },
        { "do": "secret", "name": "mallory-token" },
        { "do": "secret", "name": "root-password" },
    ]);
    let (done, _alice) = world.side_by_side(&attack(&attempts, "", "")).await;
    for (attempt, result) in answers(&done) {
        assert!(
            result.as_ref().is_err_and(|e| e.contains("does not grant")),
            "{attempt}: {result:?}"
        );
    }
    let secrets = denials(&done, AuditResource::Secret);
    for action in ["get alice-token", "get mallory-token", "get root-password"] {
        assert!(
            denied(&secrets, action),
            "no denial of `{action}` in {secrets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_name_means_each_tenant_its_own_secret() {
    // Mallory's policy grants her intruder the name `alice-token`: what it reads is mallory's
    // secret of that name, never alice's.
    let world = World::with_policy(policy(
        "[tenants.eve]\nsecrets = { alice-token = [\"intruder\"] }\n",
    ));
    let toml = attack(&json!([{ "do": "secret", "name": "alice-token" }]), "", "")
        .replace("tenant = \"mallory\"", "tenant = \"eve\"");
    let done = world.run("eve.toml", &toml, "eve-1").await;
    assert_eq!(
        answers(&done)[0].1,
        Err("secret denied: no such secret".to_owned()),
        "eve has no secret of that name"
    );
    let world = World::with_policy(
        Policy::parse(
            "[tenants.mallory]\nsecrets = { alice-token = [\"intruder\"] }\n",
            "policy.toml",
        )
        .expect("policy"),
    );
    let toml = attack(&json!([{ "do": "secret", "name": "alice-token" }]), "", "");
    let done = world.run("mallory.toml", &toml, "attack-1").await;
    let mallorys = "mallory-owns-this-name".len();
    assert_ne!(mallorys, ALICE_TOKEN.len());
    assert_eq!(answers(&done)[0].1, Ok(format!("read {mallorys} bytes")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_claimed_once_and_only_by_its_tenant() {
    let world = World::new();
    let path = world.scratch.workflow("alice.toml", ALICE);
    let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let run = world
        .runtime
        .start(&workflow, RunOptions::new().run_id("alice-claimed"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut events = run.events();
    // While alice's `pause` runs, its attempt is claimed again: by mallory, and by alice. Its
    // key is announced when it is dispatched (`running`); the executor has claimed it once
    // it publishes the attempt's grants.
    let mut key = None;
    loop {
        let event = events.next().await.expect("the pause starts");
        match &event.kind {
            EventKind::TaskStatus(u)
                if u.task.node == "pause" && u.status == TaskStatus::Running =>
            {
                key = u.key.clone();
            }
            EventKind::TaskGrants(g) if g.task.node == "pause" => break,
            _ => {}
        }
    }
    let key = key.expect("a running event carries its key");
    assert_eq!(key, "alice-claimed/pause/1");
    assert!(matches!(
        world.runtime.claim("mallory", &key),
        Err(ClaimError::WrongTenant(_))
    ));
    assert!(matches!(
        world.runtime.claim("alice", &key),
        Err(ClaimError::Duplicate(_))
    ));
    let mut rest = Vec::new();
    while let Some(event) = events.next().await {
        rest.push(event);
    }
    let report = run.wait().await.expect("the run ends");
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    assert_eq!(report.metrics.repeat_total, 1, "the repeat was counted");
    let claims: Vec<(String, String)> = rest
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.resource == AuditResource::Claim => {
                assert_eq!(a.decision, Decision::Denied);
                Some((a.tenant.to_string(), a.reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(claims[0].0, "mallory");
    assert!(
        claims[0]
            .1
            .contains("may not claim a task of tenant `alice`")
    );
    assert!(claims[1].1.contains("claimed already"));
    // Once the run is over its keys are gone with it.
    assert!(matches!(
        world.runtime.claim("alice", &key),
        Err(ClaimError::UnknownRun(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_bound_to_a_tenant_refuses_another_tenants_workflow() {
    let world = World::new();
    let path = world.scratch.workflow("alice.toml", ALICE);
    let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    // A service authenticated mallory, who submits a file that names alice as its tenant.
    let refused = world
        .runtime
        .start(
            &workflow,
            RunOptions::new().run_id("posing").tenant("mallory"),
        )
        .await;
    let Err(error) = refused else {
        panic!("mallory ran alice's workflow");
    };
    assert!(
        error
            .to_string()
            .contains("belongs to tenant `alice`, not to `mallory`"),
        "{error}"
    );
    // Nothing ran: no run directory, under either tenant.
    let tenants = world.scratch.state_dir().join("tenants");
    assert!(!tenants.join("alice/runs/posing").exists());
    assert!(!tenants.join("mallory/runs/posing").exists());
    // Bound to its own tenant, the same workflow runs.
    let done = world
        .scratch
        .run_workflow(
            &world.runtime,
            &workflow,
            RunOptions::new().run_id("own").tenant("alice"),
        )
        .await;
    all_succeeded(&done);
    assert_eq!(done.report.tenant, "alice");
}

/// A one-shot HTTP server on localhost: answers every request with `body`, and hands over
/// the requests it received (head and headers).
fn http_server(body: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if tx.send(head).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

const SECRETIVE: &str = r#"
[workflow]
name = "leaky"
tenant = "alice"

[agents.secretive]
component = "{guests}/secretive.wasm"
tools = ["http_get"]

[[tasks]]
id = "leak"
agent = "secretive"
with = { name = "alice-token", url = "${url}" }

[[tasks]]
id = "fail"
agent = "secretive"
with = { name = "alice-token", fail = true }
critical = false

[params]
url = "http://127.0.0.1:1/"
"#;

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn a_secret_used_by_a_run_appears_in_none_of_the_files_it_wrote() {
    let (port, requests) = http_server("pong");
    let scratch = Scratch::new();
    let secrets = scratch.path().join("secrets");
    std::fs::create_dir_all(secrets.join("alice")).expect("mkdir");
    std::fs::write(
        secrets.join("alice/alice-token"),
        format!("{ALICE_TOKEN}\n"),
    )
    .expect("secret");
    let policy = scratch.workflow(
        "policy.toml",
        &format!(
            "[tenants.alice]\nhttp_allow = [\"127.0.0.1:{port}\"]\nsecrets = {{ alice-token = [\"secretive\"] }}\n"
        ),
    );
    let flow = scratch.workflow("leaky.toml", SECRETIVE);
    let out = scratch.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut cmd = wasm_orch_tests::cli!();
    cmd.arg("-v").arg("run").arg(&flow);
    let output = scratch
        .dirs(&mut cmd)
        .arg("--param")
        .arg(format!("url=http://127.0.0.1:{port}/ping"))
        .arg("--policy")
        .arg(&policy)
        .arg("--secrets-dir")
        .arg(&secrets)
        .arg("--output")
        .arg(out.join("results.json"))
        .arg("--events")
        .arg(out.join("events.jsonl"))
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    // The secret was usable: the server got it as a bearer token.
    let request = requests.recv().expect("a request");
    assert!(
        request.contains(&format!("authorization: Bearer {ALICE_TOKEN}")),
        "{request}"
    );
    // And nothing the run wrote holds it: results, events, the run's directory (artifacts
    // included), the CLI's own output and logs.
    assert!(!stdout.contains(ALICE_TOKEN) && !stderr.contains(ALICE_TOKEN));
    for dir in [&out, &scratch.state_dir()] {
        let leaked = files_containing(dir, ALICE_TOKEN);
        assert!(leaked.is_empty(), "the secret is in {leaked:?}");
    }
    // Each leak was caught where it was made, not merely left out.
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("events");
    for leak in ["stdout:", "stderr:", "log:", "progress:"] {
        assert!(
            events.contains(&format!("{leak} the secret is [redacted:alice-token]")),
            "{leak} not redacted in the events"
        );
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results"))
            .expect("json");
    let leak = &results["tasks"][0];
    assert_eq!(
        leak["output"]["leaked"],
        "output: the secret is [redacted:alice-token]"
    );
    assert_eq!(leak["output"]["answer"]["body"], "pong");
    assert_eq!(leak["artifacts"][0]["path"], "leak.txt");
    let fail = &results["tasks"][1];
    assert_eq!(
        fail["error"]["message"],
        "error: the secret is [redacted:alice-token]"
    );
    assert_eq!(
        results["blackboard"]["branches/leaky.leak/leak"]["value"]["secret"],
        "[redacted:alice-token]"
    );
    let run_dir = PathBuf::from(results["directory"].as_str().expect("directory"));
    assert_eq!(
        std::fs::read_to_string(run_dir.join("leaky.leak/leak.txt"))
            .ok()
            .as_deref(),
        Some("file: the secret is [redacted:alice-token]\n")
    );
    // The run's credential was issued, and revoked when it ended.
    let credential: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("\"agent.run.credential\""))
        .filter_map(|l| {
            ["\"issued\"", "\"renewed\"", "\"revoked\""]
                .into_iter()
                .find(|a| l.contains(a))
        })
        .collect();
    assert_eq!(credential.first(), Some(&"\"issued\""));
    assert_eq!(credential.last(), Some(&"\"revoked\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_reaches_only_the_hosts_a_tenant_allows() {
    let (port, requests) = http_server("hello from the allowed host");
    let (other, _) = http_server("must not be reached");
    let world = World::with_policy(policy(&format!(
        "[tenants.bob]\nhttp_allow = [\"127.0.0.1:{port}\"]\n"
    )));
    let flow = |tenant: &str, port: u16| {
        format!(
            r#"
[workflow]
name = "fetch"
tenant = "{tenant}"
[agents.intruder]
component = "{{guests}}/intruder.wasm"
tools = ["http_get"]
[[tasks]]
id = "intrude"
agent = "intruder"
with = {{ attempts = [{{ do = "tool", name = "http_get", input = {{ url = "http://127.0.0.1:{port}/x" }} }}] }}
"#
        )
    };
    let allowed = world.run("bob.toml", &flow("bob", port), "bob-1").await;
    let answer = &answers(&allowed)[0].1;
    let body: Value = serde_json::from_str(answer.as_ref().expect("allowed")).expect("json");
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "hello from the allowed host");
    assert!(requests.recv().is_ok());

    let refused = world.run("bob2.toml", &flow("bob", other), "bob-2").await;
    let answer = &answers(&refused)[0].1;
    assert!(
        answer
            .as_ref()
            .is_err_and(|e| e.contains("not in tenant `bob`'s http_allow")),
        "{answer:?}"
    );
    let tools: Vec<String> = refused
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.decision == Decision::Denied => Some(a.reason.clone()),
            _ => None,
        })
        .collect();
    assert!(tools.iter().any(|r| r.contains("http_allow")), "{tools:?}");
}

/// The credential events of a run: (action, credential id, reason).
fn lifecycle(done: &Finished) -> Vec<(CredentialAction, String, String)> {
    done.events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Credential(c) => Some((c.action, c.credential.clone(), c.reason.clone())),
            _ => None,
        })
        .collect()
}

fn ttl_policy(ttl: &str) -> Policy {
    Policy::parse(
        &format!(
            "[defaults]\ncredential_ttl = \"{ttl}\"\n\
             [tenants.alice]\nsecrets = {{ alice-token = [\"secretive\"] }}\n"
        ),
        "policy.toml",
    )
    .expect("policy")
}

const SECRETIVE_AGENTS: &str = r#"
[agents.crash]
component = "{guests}/crash.wasm"
[agents.secretive]
component = "{guests}/secretive.wasm"
tools = ["sleep"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_lives_past_its_ttl_by_renewal_and_is_revoked_when_the_run_ends() {
    let world = World::with_policy(ttl_policy("300ms"));
    // The secret is read 700 ms into the run: more than twice the credential's TTL.
    let done = world
        .run(
            "renew.toml",
            &format!(
                "[workflow]\nname = \"renew\"\ntenant = \"alice\"\n{SECRETIVE_AGENTS}\n\
                 [[tasks]]\nid = \"late\"\nagent = \"secretive\"\n\
                 with = {{ name = \"alice-token\", delay_ms = 700 }}\n"
            ),
            "renew-1",
        )
        .await;
    assert_eq!(
        done.status("late"),
        TaskStatus::Succeeded,
        "{}",
        done.error("late")
    );
    let events = lifecycle(&done);
    let actions: Vec<CredentialAction> = events.iter().map(|e| e.0).collect();
    assert_eq!(actions.first(), Some(&CredentialAction::Issued));
    assert!(
        actions
            .iter()
            .filter(|a| **a == CredentialAction::Renewed)
            .count()
            >= 2,
        "renewed at half its TTL while the run lived: {events:?}"
    );
    assert_eq!(actions.last(), Some(&CredentialAction::Revoked));
    assert_eq!(events.last().map(|e| e.2.as_str()), Some("the run ended"));
    assert!(
        events.iter().all(|e| e.1 == "cred-renew-1-1"),
        "one credential: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_error_budget_revokes_the_credential_and_a_resumed_run_gets_a_new_one() {
    let world = World::with_policy(ttl_policy("10m"));
    // `boom` fails at once and breaches the error budget (one failure): the credential is
    // revoked, so `reader`, already running, is refused its secret when it asks for it. The
    // run pauses, resumes with a new credential, and `later` reads the secret under it.
    let done = world
        .run(
            "budget.toml",
            &format!(
                r#"
[workflow]
name = "budget"
tenant = "alice"
max_concurrency = 2
error_budget = {{ max_failures = 1, action = "pause", resume_after = "200ms" }}
{SECRETIVE_AGENTS}
[[tasks]]
id = "reader"
agent = "secretive"
with = {{ name = "alice-token", delay_ms = 800 }}
priority = 2
critical = false

[[tasks]]
id = "boom"
agent = "crash"
priority = 2
critical = false

[[tasks]]
id = "later"
agent = "secretive"
with = {{ name = "alice-token" }}
"#
            ),
            "budget-1",
        )
        .await;
    assert_eq!(
        done.status("later"),
        TaskStatus::Succeeded,
        "{}",
        done.error("later")
    );
    assert_eq!(done.status("reader"), TaskStatus::Failed);
    let why = done.error("reader");
    assert!(
        why.contains("credential revoked") && why.contains("error budget was breached"),
        "{why}"
    );
    let events = lifecycle(&done);
    let first_breach = events
        .iter()
        .position(|e| e.0 == CredentialAction::Revoked)
        .expect("revoked");
    assert_eq!(events[first_breach].1, "cred-budget-1-1");
    assert!(events[first_breach].2.contains("error budget"));
    let reissued = &events[first_breach + 1];
    assert_eq!(reissued.0, CredentialAction::Issued);
    assert_eq!(reissued.1, "cred-budget-1-2");
    assert!(reissued.2.contains("resumed"), "{events:?}");
    assert_eq!(
        done.events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Audit(a) if a.resource == AuditResource::Secret && a.decision == Decision::Denied))
            .count(),
        1
    );
}
