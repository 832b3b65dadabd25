//! Durable runs: a run killed at any moment resumes to the same results without redoing what
//! had succeeded; `kv` loses no update between processes; memoized tasks are reused exactly
//! when nothing they depend on changed; a damaged journal is an error that names the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use wasm_orch::{RunOptions, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, cli, exited_0, kv_store};

/// 33 tasks: eight starters, each followed by two more in a chain, a join of the eight
/// chains, and eight tasks after the join; four at a time. Each counts its executions, waits,
/// writes a file and a blackboard key.
fn long_flow() -> String {
    let mut toml = String::from(
        "[workflow]\nname = \"long\"\nmax_concurrency = 4\n\
         [agents.step]\ncomponent = \"{guests}/step.wasm\"\ntools = [\"kv\", \"sleep\"]\n",
    );
    let task = |toml: &mut String, id: &str, value: i64, deps: &[String]| {
        let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        toml.push_str(&format!(
            "[[tasks]]\nid = \"{id}\"\nagent = \"step\"\nwith = {{ value = {value}, ms = 40 }}\n\
             depends_on = [{}]\n",
            deps.join(", ")
        ));
    };
    let mut ends = Vec::new();
    for i in 0..8 {
        task(&mut toml, &format!("s{i}"), i, &[]);
        task(&mut toml, &format!("m{i}"), 10 + i, &[format!("s{i}")]);
        task(&mut toml, &format!("e{i}"), 20 + i, &[format!("m{i}")]);
        ends.push(format!("e{i}"));
    }
    task(&mut toml, "join", 100, &ends);
    for i in 0..8 {
        task(&mut toml, &format!("f{i}"), 200 + i, &["join".to_owned()]);
    }
    toml
}

fn run_cmd(scratch: &Scratch, file: &Path, run_id: &str) -> Command {
    let mut cmd = cli!();
    scratch.dirs(cmd.args(["run", "--plain", "--run-id", run_id]).arg(file));
    cmd
}

fn resume_cmd(scratch: &Scratch, run_id: &str) -> Command {
    let mut cmd = cli!();
    scratch.dirs(cmd.args(["resume", "--plain", run_id]));
    cmd
}

/// Every event of a run, as the journal gives it back (`Runtime::run_events`).
fn journal_events(scratch: &Scratch, run_id: &str) -> Vec<Value> {
    scratch
        .journal(run_id)
        .iter()
        .map(|e| serde_json::to_value(&**e).expect("an event is JSON"))
        .collect()
}

/// Tasks whose success the journal holds.
fn succeeded(scratch: &Scratch, run_id: &str) -> Vec<String> {
    journal_events(scratch, run_id)
        .iter()
        .filter(|e| e["event"] == "agent.task.status.updated" && e["status"] == "succeeded")
        .filter_map(|e| e["node"].as_str().map(str::to_owned))
        .collect()
}

/// How many times each task of a run executed (its `exec/<run>/<node>` counter).
fn executions(state: &Path, run_id: &str) -> BTreeMap<String, i64> {
    let prefix = format!("exec/{run_id}/");
    kv_store(state, "default")
        .into_iter()
        .filter_map(|(k, v, _)| {
            let node = k.strip_prefix(&prefix)?.to_owned();
            Some((node, v.parse().unwrap_or(0)))
        })
        .collect()
}

/// What a run produced: each task's output, the blackboard's values, each task's file.
fn results(
    state: &Path,
    run_id: &str,
) -> (
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
    BTreeMap<String, String>,
) {
    let dir = state.join("tenants/default/runs").join(run_id);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results"))
            .expect("json");
    let outputs = report["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["node"].as_str().unwrap_or("").to_owned(),
                t["output"].clone(),
            )
        })
        .collect();
    let board = report["blackboard"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["value"].clone()))
        .collect();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("run dir").flatten() {
        let file = entry.path().join("step.txt");
        if let Ok(text) = std::fs::read_to_string(&file) {
            files.insert(entry.file_name().to_string_lossy().into_owned(), text);
        }
    }
    (outputs, board, files)
}

/// A small, seeded pseudo-random sequence (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn a_run_killed_at_twenty_random_moments_resumes_to_the_same_results_without_redoing_work() {
    let scratch = Scratch::new();
    let state = scratch.state_dir();
    let flow = scratch.workflow("long.toml", &long_flow());

    // The reference: an uninterrupted run.
    let out = run_cmd(&scratch, &flow, "reference")
        .output()
        .expect("runs");
    exited_0(&out);
    let expected = results(&state, "reference");
    assert_eq!(expected.0.len(), 33);
    assert_eq!(expected.0["f7"], 631, "the sums");

    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    eprintln!("kill moments seeded with {seed}");
    let mut random = Lcg(seed);
    let mut mid_run = 0;
    for trial in 0..20 {
        let run_id = format!("crash-{trial}");
        let mut child = run_cmd(&scratch, &flow, &run_id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns");
        // At a random point of its progress: once a random number of its 33 tasks have
        // begun (their execution counters are in `kv`), a random slice of a task later. A
        // moment picked by progress, not by the clock, stays mid-run on a loaded machine.
        let begun_target = 1 + random.next(33) as usize;
        let slice = Duration::from_millis(random.next(40));
        let waited = Instant::now();
        while executions(&state, &run_id).len() < begun_target
            && waited.elapsed() < Duration::from_secs(120)
            && matches!(child.try_wait(), Ok(None))
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(slice);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        let done_before = succeeded(&scratch, &run_id);
        let counts_before = executions(&state, &run_id);
        if done_before.len() < 33 {
            mid_run += 1;
        }
        let out = resume_cmd(&scratch, &run_id).output().expect("resumes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "trial {trial}: {stderr}");
        let counts_after = executions(&state, &run_id);
        for node in &done_before {
            assert_eq!(
                counts_after.get(node),
                counts_before.get(node),
                "trial {trial}: `{node}` had succeeded before the kill and ran again"
            );
        }
        assert_eq!(counts_after.len(), 33, "trial {trial}: every task ran");
        assert!(counts_after.values().all(|n| *n >= 1));
        assert_eq!(
            results(&state, &run_id),
            expected,
            "trial {trial}: other results"
        );
        // Attempts of the tasks the kill interrupted go on numbering.
        let events = journal_events(&scratch, &run_id);
        for node in counts_after.keys().filter(|n| counts_after[*n] > 1) {
            let attempts: Vec<u64> = events
                .iter()
                .filter(|e| e["node"] == node.as_str() && e["status"] == "running")
                .filter_map(|e| e["attempt"].as_u64())
                .collect();
            assert!(
                attempts.windows(2).all(|w| w[1] > w[0]),
                "trial {trial}: `{node}`'s attempts {attempts:?} do not go on"
            );
        }
    }
    assert!(
        mid_run >= 15,
        "only {mid_run} of 20 kills came in the middle of a run"
    );
}

#[test]
fn two_processes_on_one_state_directory_lose_no_kv_update() {
    let scratch = Scratch::new();
    let mut toml = String::from(
        "[workflow]\nname = \"count\"\nmax_concurrency = 4\n\
         [agents.step]\ncomponent = \"{guests}/step.wasm\"\ntools = [\"kv\", \"sleep\"]\n",
    );
    for i in 0..25 {
        toml.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nagent = \"step\"\nwith = {{ counter = \"shared\", ms = 2 }}\n"
        ));
    }
    let flow = scratch.workflow("count.toml", &toml);
    let a = run_cmd(&scratch, &flow, "left")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let b = run_cmd(&scratch, &flow, "right")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    for child in [a, b] {
        let out = child.wait_with_output().expect("ends");
        exited_0(&out);
    }
    let store = kv_store(&scratch.state_dir(), "default");
    let shared = store
        .iter()
        .find(|(k, _, _)| k == "shared")
        .map(|(_, v, _)| v.clone());
    assert_eq!(
        shared.as_deref(),
        Some("50"),
        "25 increments from each process"
    );
    let per_task = store
        .iter()
        .filter(|(k, _, _)| k.starts_with("exec/"))
        .count();
    assert_eq!(per_task, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memoized_workflow_is_reused_whole_and_a_changed_parameter_reruns_what_it_reaches() {
    let scratch = Scratch::new();
    let flow = r#"
[workflow]
name = "memo"
[params]
x = 1
[agents.add]
component = "{guests}/add.wasm"
cache = true
[agents.mul]
component = "{guests}/mul.wasm"
cache = true
[agents.wait]
component = "{guests}/wait.wasm"
tools = ["sleep"]
cache = true          # it calls a tool: memoized only because the agent says so
[[tasks]]
id = "slow1"
agent = "wait"
with = { ms = 300 }
[[tasks]]
id = "slow2"
agent = "wait"
with = { ms = 300 }
depends_on = ["slow1"]
[[tasks]]
id = "left"
agent = "add"
with = { a = "${x}", b = 2 }
[[tasks]]
id = "right"
agent = "add"
with = { a = 3, b = 4 }
[[tasks]]
id = "product"
agent = "mul"
depends_on = ["left", "right"]
"#;
    let path = scratch.workflow("memo.toml", flow);
    let runtime = scratch.runtime();
    let run = |params: Vec<(String, String)>| {
        let runtime = runtime.clone();
        let path = path.clone();
        async move {
            let wf = Workflow::from_file_with_params(&path, &params).expect("valid");
            let started = Instant::now();
            let run = runtime.start(&wf, RunOptions::new()).await.expect("starts");
            let report = run.wait().await.expect("ends");
            let statuses: BTreeMap<String, TaskStatus> = report
                .tasks
                .iter()
                .map(|t| (t.node.clone(), t.status))
                .collect();
            (report, statuses, started.elapsed())
        }
    };
    let (first, statuses, first_took) = run(Vec::new()).await;
    assert!(
        statuses.values().all(|s| *s == TaskStatus::Succeeded),
        "{statuses:?}"
    );
    assert_eq!(first.output("product"), Some(serde_json::json!(21)));

    let (second, statuses, second_took) = run(Vec::new()).await;
    assert!(
        statuses.values().all(|s| *s == TaskStatus::Cached),
        "{statuses:?}"
    );
    assert_eq!(second.output("product"), Some(serde_json::json!(21)));
    let from = second
        .task("slow2")
        .and_then(|t| t.history.first())
        .map(|h| h.status);
    assert_eq!(from, Some(TaskStatus::Cached));
    // The first run waits 600 ms by construction; the second waits for nothing.
    eprintln!("first run {first_took:?}; second, every task cached, {second_took:?}");
    assert!(
        second_took < first_took / 2,
        "{second_took:?} vs {first_took:?}"
    );

    let (third, statuses, _) = run(vec![("x".to_owned(), "5".to_owned())]).await;
    assert_eq!(third.output("product"), Some(serde_json::json!(49)));
    for (node, status) in &statuses {
        let rerun = node == "left" || node == "product";
        let expected = if rerun {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Cached
        };
        assert_eq!(*status, expected, "{node}");
    }
}

/// A run that starts right after another finds that run's memoized outputs: the memo and its
/// output are stored together, not the output later with the run's events (with `async`
/// durability those reach the database a few milliseconds after the run ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_at_once_after_another_reuses_its_memoized_output() {
    let scratch = Scratch::new();
    let path = scratch.workflow(
        "once.toml",
        r#"
[workflow]
name = "once"
[agents.add]
component = "{guests}/add.wasm"
cache = true
[[tasks]]
id = "sum"
agent = "add"
with = { a = 20, b = 1 }
"#,
    );
    let wf = Workflow::from_file(&path).expect("valid");
    let runtime = scratch.runtime();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let run = runtime.start(&wf, RunOptions::new()).await.expect("starts");
        let report = run.wait().await.expect("ends");
        assert_eq!(report.output("sum"), Some(serde_json::json!(21)));
        statuses.push(report.task("sum").map(|t| t.status));
    }
    assert_eq!(statuses[0], Some(TaskStatus::Succeeded));
    assert!(
        statuses[1..].iter().all(|s| *s == Some(TaskStatus::Cached)),
        "{statuses:?}"
    );
}

fn damaged(scratch: &Scratch, args: &[&str]) -> String {
    let out = scratch.dirs(cli!().args(args)).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("journal.db"), "names the file: {stderr}");
    stderr
}

fn db(scratch: &Scratch) -> PathBuf {
    scratch.state_dir().join("journal.db")
}

fn checkpoint(scratch: &Scratch) {
    let conn = rusqlite::Connection::open(db(scratch)).expect("open");
    let _: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .expect("checkpoint");
}

#[test]
fn a_damaged_journal_is_a_clear_error_never_a_panic_nor_an_empty_one() {
    let calc = wasm_orch_tests::root().join("examples/calc.toml");
    let fresh = || {
        let scratch = Scratch::new();
        let out = scratch
            .dirs(
                cli!()
                    .args(["run", "--plain", "--run-id", "calc-1"])
                    .arg(&calc),
            )
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0));
        checkpoint(&scratch);
        scratch
    };

    // Truncated.
    let s = fresh();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(db(&s))
        .expect("open");
    file.set_len(4096 + 100).expect("truncate");
    let stderr = damaged(&s, &["runs", "show", "calc-1"]);
    assert!(
        stderr.contains("damaged") || stderr.contains("malformed"),
        "{stderr}"
    );

    // Flipped bytes in the middle of the file.
    let s = fresh();
    let mut bytes = std::fs::read(db(&s)).expect("read");
    let len = bytes.len();
    for b in &mut bytes[len / 4..len - 64] {
        *b ^= 0x5a;
    }
    std::fs::write(db(&s), bytes).expect("write");
    damaged(&s, &["runs", "show", "calc-1"]);

    // A missing output object, in a run that was interrupted (its process is gone): it is not
    // resumed as if the outputs were there.
    let s = fresh();
    {
        let conn = rusqlite::Connection::open(db(&s)).expect("open");
        conn.execute_batch(
            "DELETE FROM outputs; DELETE FROM reports;
             UPDATE runs SET status = 'running', finished_ms = NULL;",
        )
        .expect("delete");
    }
    let stderr = damaged(&s, &["resume", "calc-1"]);
    assert!(
        stderr.contains("missing"),
        "a run is never taken as finished: {stderr}"
    );

    // An event batch that does not decompress.
    let s = fresh();
    {
        let conn = rusqlite::Connection::open(db(&s)).expect("open");
        conn.execute("UPDATE events SET body = x'ffffff7f0102'", [])
            .expect("update");
    }
    // (a run kept by the prune: which outputs it needs cannot be known, so nothing goes)
    let stderr = damaged(&s, &["runs", "prune", "--older-than", "30d"]);
    assert!(stderr.contains("damaged"), "{stderr}");
    assert!(stderr.contains("nothing was pruned"), "{stderr}");
    // A results document that does not decompress.
    {
        let conn = rusqlite::Connection::open(db(&s)).expect("open");
        conn.execute("UPDATE reports SET body = x'ffffff7f0102'", [])
            .expect("update");
    }
    let stderr = damaged(&s, &["runs", "show", "calc-1"]);
    assert!(stderr.contains("damaged"), "{stderr}");

    // Written by a newer version.
    let s = fresh();
    {
        let conn = rusqlite::Connection::open(db(&s)).expect("open");
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'", [])
            .expect("update");
    }
    let stderr = damaged(&s, &["runs"]);
    assert!(stderr.contains("newer wasm-orch"), "{stderr}");
}

#[test]
fn runs_are_listed_shown_and_pruned_from_the_journal() {
    let scratch = Scratch::new();
    let flow = scratch.workflow(
        "two.toml",
        "[workflow]\nname = \"two\"\n\
         [agents.step]\ncomponent = \"{guests}/step.wasm\"\ntools = [\"kv\", \"sleep\"]\n\
         [[tasks]]\nid = \"a\"\nagent = \"step\"\nwith = { value = 1 }\n\
         [[tasks]]\nid = \"b\"\nagent = \"step\"\nwith = { value = 2 }\ndepends_on = [\"a\"]\n",
    );
    for id in ["first", "second"] {
        let out = run_cmd(&scratch, &flow, id).output().expect("runs");
        assert_eq!(out.status.code(), Some(0));
    }
    // A run id is one run: a second `run --run-id first` is refused, the first kept.
    let again = run_cmd(&scratch, &flow, "first").output().expect("runs");
    assert_ne!(again.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("first"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let mut list = cli!();
    scratch.dirs(list.args(["runs", "--json"]));
    let out = list.output().expect("lists");
    assert_eq!(out.status.code(), Some(0));
    let runs: Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = runs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert_eq!(ids, ["second", "first"], "newest first");
    assert!(runs[0]["state"] == "succeeded" && runs[0]["tasks"] == 2 && runs[0]["settled"] == 2);

    let mut show = cli!();
    scratch.dirs(show.args(["runs", "show", "first", "--json"]));
    let out = show.output().expect("shows");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["tasks"][1]["output"], 3, "b adds a's value");

    let mut unknown = cli!();
    scratch.dirs(unknown.args(["runs", "show", "nope"]));
    let out = unknown.output().expect("shows");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `nope`"));

    // Nothing ended a day ago; everything ended before now.
    let mut keep = cli!();
    scratch.dirs(keep.args(["runs", "prune", "--older-than", "1d", "--json"]));
    let pruned: Value =
        serde_json::from_slice(&keep.output().expect("prunes").stdout).expect("json");
    assert_eq!(pruned["runs"], 0);
    let run_dir = scratch.state_dir().join("tenants/default/runs/first");
    assert!(run_dir.exists());
    let mut all = cli!();
    scratch.dirs(all.args(["runs", "prune", "--older-than", "0s", "--json"]));
    let pruned: Value =
        serde_json::from_slice(&all.output().expect("prunes").stdout).expect("json");
    assert_eq!(pruned["runs"], 2);
    assert!(pruned["outputs"].as_u64().is_some_and(|n| n >= 2));
    assert!(!run_dir.exists(), "a pruned run's directory goes too");
    let mut list = cli!();
    scratch.dirs(list.args(["runs", "--json"]));
    let runs: Value = serde_json::from_slice(&list.output().expect("lists").stdout).expect("json");
    assert_eq!(runs.as_array().map(Vec::len), Some(0));

    let mut bad = cli!();
    scratch.dirs(bad.args(["runs", "prune", "--older-than", "soon"]));
    let out = bad.output().expect("runs");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--older-than"));
}

/// Pruning while another runtime on the same state directory keeps committing never fails:
/// the prune reads which outputs are still referenced and then deletes, and a transaction
/// that only takes the write lock at its first delete finds its snapshot outdated by the
/// other's commits (SQLite's BUSY_SNAPSHOT, which no busy timeout waits out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_while_another_runtime_commits_never_fails() {
    let scratch = Scratch::new();
    let mut toml = String::from(
        "[workflow]\nname = \"busy\"\n[agents.add]\ncomponent = \"{guests}/add.wasm\"\n",
    );
    for i in 0..50 {
        toml.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nagent = \"add\"\nwith = {{ a = {i}, b = 1 }}\n"
        ));
    }
    let wf = Workflow::from_file(scratch.workflow("busy.toml", &toml)).expect("valid");
    let busy = scratch.runtime();
    let pruner = scratch.runtime();
    // Something to prune, and events to read through, before the races start.
    for _ in 0..3 {
        let run = busy.start(&wf, RunOptions::new()).await.expect("starts");
        run.wait().await.expect("ends");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committing = tokio::spawn({
        let stop = std::sync::Arc::clone(&stop);
        async move {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let run = busy.start(&wf, RunOptions::new()).await.expect("starts");
                run.wait().await.expect("ends");
                runs += 1;
            }
            runs
        }
    });
    let mut failures = Vec::new();
    for _ in 0..40 {
        if let Err(e) = pruner.prune(Duration::ZERO).await {
            failures.push(e.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = committing.await.expect("the other runtime ran");
    assert!(runs > 0, "the other runtime committed nothing meanwhile");
    assert!(
        failures.is_empty(),
        "{} of 40 prunes failed: {failures:?}",
        failures.len()
    );
}
