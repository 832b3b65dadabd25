//! Attempts on workers: a coordinator (`wasm-orch run --pool`) and `wasm-orch worker`
//! processes on a real `nats-server` with JetStream (`examples/nats/server.conf`).
//!
//! - two workers share the word count, and it counts exactly what a local run counts;
//! - a worker killed in the middle of an attempt has it redelivered to another;
//! - an attempt whose every delivery is lost ends `worker-lost`, and its retry runs on the
//!   coordinator once no worker is alive (degraded mode, announced as an event);
//! - with NATS down, a run with a pool still runs, here;
//! - guests on workers reach the run's blackboard through the coordinator: parallel counters
//!   on two workers lose no update of a shared key, and a key out of a task's scope is refused
//!   and audited by the coordinator;
//! - agents on workers talk through the coordinator's mailboxes: the negotiation on two
//!   workers reaches the decision it reaches here, with the same message counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasm_orch_tests::nats::{NatsServer, SlowDoor, free_port};
use wasm_orch_tests::{Scratch, cli, exited_0, root};

/// A `wasm-orch worker` process, killed (SIGKILL) when dropped unless stopped first.
struct Worker {
    child: Option<Child>,
    id: String,
}

impl Worker {
    fn start(nats: &NatsServer, scratch: &Scratch, id: &str, pool: &str, extra: &[&str]) -> Self {
        let child = cli!()
            .arg("worker")
            .args(["--nats", &nats.url("worker", "worker-secret")])
            .args(["--pool", pool, "--id", id])
            .args(extra)
            .arg("--state-dir")
            .arg(scratch.path().join(id))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        Self {
            child: Some(child),
            id: id.to_owned(),
        }
    }

    /// SIGKILL: the worker vanishes with whatever it was running.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and what it printed: it says how many attempts it finished.
    fn stop(&mut self) -> String {
        let Some(child) = self.child.take() else {
            return String::new();
        };
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let out = child.wait_with_output().expect("the worker stops");
        assert_eq!(
            out.status.code(),
            Some(0),
            "worker {} stops cleanly",
            self.id
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The attempts a worker's last words say it finished.
fn finished(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("worker: stopped after "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in the worker's output:\n{stderr}"))
}

/// `wasm-orch workers --json` of `pool`.
fn live(nats: &NatsServer, pool: &str) -> Vec<Value> {
    let out = cli!()
        .args([
            "workers",
            "--nats",
            &nats.runtime_url(),
            "--pool",
            pool,
            "--json",
        ])
        .args(["--listen", "1500ms"])
        .output()
        .expect("workers runs");
    exited_0(&out);
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("a JSON list of workers")
}

/// Waits until `wasm-orch workers` shows the given ids, each passing `ok`.
fn await_workers(nats: &NatsServer, pool: &str, ids: &[&str], ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let workers = live(nats, pool);
        let all = ids.iter().all(|id| {
            workers
                .iter()
                .any(|w| w["id"].as_str() == Some(id) && ok(w))
        });
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workers {ids:?} of pool `{pool}` not as expected: {workers:?}"
        );
    }
}

fn run(scratch: &Scratch, flow: &Path, extra: &[&str], output: &Path) -> Output {
    scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(flow)
                .args(["--plain", "--output"])
                .arg(output)
                .args(extra),
        )
        .output()
        .expect("runs")
}

fn results(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("results.json")).expect("JSON")
}

/// The text of a run's `events.jsonl`, from its results document.
fn events_text(results: &Value) -> String {
    let dir = PathBuf::from(results["directory"].as_str().expect("directory"));
    std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl")
}

fn task<'a>(results: &'a Value, node: &str) -> &'a Value {
    results["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["node"] == node)
        .unwrap_or_else(|| panic!("no task {node}"))
}

#[test]
fn two_workers_share_the_word_count_and_count_what_a_local_run_counts() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "wc", &["--slots", "2"]);
    let mut w2 = Worker::start(&nats, &scratch, "w2", "wc", &["--slots", "2"]);
    await_workers(&nats, "wc", &["w1", "w2"], |w| w["slots"] == 2);

    let flow = root().join("examples/word-count.toml");
    let here = scratch.path().join("here.json");
    let out = run(&scratch, &flow, &[], &here);
    exited_0(&out);
    let there = scratch.path().join("there.json");
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nats.runtime_url(), "--pool", "wc"],
        &there,
    );
    exited_0(&out);
    let (here, there) = (results(&here), results(&there));

    // The same counts, word for word.
    assert_eq!(
        task(&here, "merge")["output"],
        task(&there, "merge")["output"]
    );
    assert!(
        task(&there, "merge")["output"]["words"]
            .as_u64()
            .unwrap_or(0)
            > 100_000
    );
    // Every task ran once, on a worker; both workers took some.
    let mut by = std::collections::BTreeMap::<String, u64>::new();
    for t in there["tasks"].as_array().expect("tasks") {
        assert_eq!(t["attempts"], 1, "{t}");
        let history = t["history"].as_array().expect("history");
        assert_eq!(history.len(), 1);
        let worker = history[0]["worker"]
            .as_str()
            .unwrap_or_else(|| panic!("task {} ran on no worker", t["node"]));
        *by.entry(worker.to_owned()).or_default() += 1;
    }
    assert_eq!(by.values().sum::<u64>(), 13, "{by:?}");
    assert_eq!(by.len(), 2, "both workers took attempts: {by:?}");
    // A local run says nothing of workers.
    assert!(here["tasks"][0]["history"][0].get("worker").is_none());

    // Each attempt was executed exactly once: the workers' own counts add up to 13.
    let (a, b) = (finished(&w1.stop()), finished(&w2.stop()));
    assert_eq!(a + b, 13, "w1 {a}, w2 {b}");
    assert_eq!((a, b), (by["w1"], by["w2"]));
}

const BURN: &str = r#"
[workflow]
name = "burn"
tenant = "acme"

[agents.burn]
component = "{guests}/burn.wasm"
fuel = 400_000_000_000
timeout = "60s"

[[tasks]]
id = "long"
agent = "burn"
with = { iterations = ITERATIONS }
"#;

/// A run in the background, its results written to `output`.
fn start_run(
    scratch: &Scratch,
    flow: &Path,
    nats: &NatsServer,
    pool: &str,
    output: &Path,
) -> Child {
    scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(flow)
                .args(["--plain", "--nats", &nats.runtime_url(), "--pool", pool])
                .args(["--ack-wait", "2s", "--max-deliver", "3"])
                .arg("--output")
                .arg(output),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the run starts")
}

#[test]
fn a_worker_killed_in_an_attempt_has_it_delivered_to_another() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let flow = scratch.workflow("burn.toml", &BURN.replace("ITERATIONS", "5_000_000_000"));
    let mut w1 = Worker::start(
        &nats,
        &scratch,
        "w1",
        "redeliver",
        &["--slots", "1", "--ack-wait", "2s", "--max-deliver", "3"],
    );
    await_workers(&nats, "redeliver", &["w1"], |_| true);
    let output = scratch.path().join("results.json");
    let coordinator = start_run(&scratch, &flow, &nats, "redeliver", &output);
    // w1 has the attempt: it goes away with it.
    await_workers(&nats, "redeliver", &["w1"], |w| {
        w["busy"] == 1 && w["tenants"][0] == "acme"
    });
    w1.kill();
    let mut w2 = Worker::start(&nats, &scratch, "w2", "redeliver", &["--slots", "1"]);
    let out = coordinator.wait_with_output().expect("the run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = results(&output);
    let long = task(&results, "long");
    // One attempt of the task, finished by w2 on the message's second delivery.
    assert_eq!(long["status"], "succeeded");
    assert_eq!(long["attempts"], 1);
    assert_eq!(long["history"][0]["worker"], "w2");
    assert_eq!(long["output"]["iterations"], 5_000_000_000u64);
    let events = events_text(&results);
    assert!(
        events.contains("delivered again (delivery 2)"),
        "the redelivery is on the record"
    );
    assert_eq!(finished(&w2.stop()), 1);
}

#[test]
fn an_attempt_every_worker_lost_ends_worker_lost_and_its_retry_runs_here() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let text = BURN.replace("ITERATIONS", "5_000_000_000").replace(
        "with = { iterations",
        "retry = { max_attempts = 2, backoff = \"4s\", jitter = 0.0 }\nwith = { iterations",
    );
    let flow = scratch.workflow("burn.toml", &text);
    let mut w1 = Worker::start(
        &nats,
        &scratch,
        "w1",
        "lost",
        &["--slots", "1", "--ack-wait", "1s", "--max-deliver", "1"],
    );
    await_workers(&nats, "lost", &["w1"], |_| true);
    let output = scratch.path().join("results.json");
    let coordinator = start_run(&scratch, &flow, &nats, "lost", &output);
    await_workers(&nats, "lost", &["w1"], |w| w["busy"] == 1);
    w1.kill();
    let out = coordinator.wait_with_output().expect("the run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = results(&output);
    let long = task(&results, "long");
    let history = long["history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{long}");
    assert_eq!(history[0]["status"], "failed");
    assert_eq!(history[0]["error"]["kind"], "worker-lost", "{long}");
    assert_eq!(history[1]["status"], "succeeded");
    assert!(history[1].get("worker").is_none(), "the retry ran here");
    let events = events_text(&results);
    let changes: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|e| e["event"] == "agent.dispatch.changed")
        .collect();
    let to: Vec<&str> = changes.iter().filter_map(|e| e["to"].as_str()).collect();
    assert_eq!(to, ["workers", "local"], "{changes:?}");
}

#[test]
fn with_nats_down_a_run_with_a_pool_runs_here() {
    let scratch = Scratch::new();
    // The word count over a small text of its own.
    let example =
        std::fs::read_to_string(root().join("examples/word-count.toml")).expect("the example");
    let flow = scratch.workflow(
        "wc.toml",
        &example
            .replace("../target/guests", "{guests}")
            .replace("data/sherlock-holmes.txt", "text.txt"),
    );
    std::fs::write(
        scratch.path().join("text.txt"),
        "the quick brown fox jumps over the lazy dog\n".repeat(200),
    )
    .expect("text");
    let output = scratch.path().join("results.json");
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nowhere, "--pool", "any"],
        &output,
    );
    exited_0(&out);
    let results = results(&output);
    assert_eq!(results["status"], "succeeded");
    let events = events_text(&results);
    assert!(
        events.contains("\"to\":\"local\""),
        "the degraded mode is an event"
    );
}

#[test]
fn a_pool_without_nats_or_with_a_bad_name_is_refused() {
    let scratch = Scratch::new();
    let flow = root().join("examples/word-count.toml");
    let output = scratch.path().join("results.json");
    let out = run(&scratch, &flow, &["--pool", "wc"], &output);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pool `wc` needs --nats"));
    let out = run(
        &scratch,
        &flow,
        &["--nats", "nats://127.0.0.1:4222", "--pool", "a.b"],
        &output,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`a.b` is not a pool name"));
}

const CALC_UNGRANTED: &str = r#"
[workflow]
name = "calc"
tenant = "acme"

[agents.add]
component = "{guests}/add.wasm"

[[tasks]]
id = "left"
agent = "add"
with = { a = 1, b = 2, delay_ms = 10 }
"#;

#[test]
fn calc_on_two_workers_gives_21_and_its_tool_calls_are_checked_by_the_coordinator() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "calc", &["--slots", "1"]);
    let mut w2 = Worker::start(&nats, &scratch, "w2", "calc", &["--slots", "1"]);
    await_workers(&nats, "calc", &["w1", "w2"], |_| true);
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &root().join("examples/calc.toml"),
        &["--nats", &nats.runtime_url(), "--pool", "calc"],
        &output,
    );
    exited_0(&out);
    let calc = results(&output);
    assert_eq!(task(&calc, "product")["output"], 21);
    let mut workers = Vec::new();
    for node in ["left", "right", "product"] {
        let worker = task(&calc, node)["history"][0]["worker"]
            .as_str()
            .map(str::to_owned);
        workers.push(worker.unwrap_or_else(|| {
            panic!(
                "{node} ran on no worker; the coordinator said:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        }));
    }
    // left and right ran at the same time, one on each worker (one slot each).
    assert_ne!(workers[0], workers[1], "{workers:?}");
    // The guests' `sleep` calls were checked and audited by the coordinator, in the run's
    // own record.
    let events = events_text(&calc);
    let sleeps = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|e| {
            e["event"] == "agent.audit" && e["action"] == "sleep" && e["decision"] == "allowed"
        })
        .count();
    assert_eq!(sleeps, 3, "one audited sleep per task");

    // A tool the agent is not granted is refused by the coordinator, and audited there.
    let flow = scratch.workflow("ungranted.toml", CALC_UNGRANTED);
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nats.runtime_url(), "--pool", "calc"],
        &output,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = results(&output);
    let left = task(&results, "left");
    assert!(left["history"][0]["worker"].is_string(), "{left}");
    assert!(
        left["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not granted tool `sleep`"),
        "{left}"
    );
    let events = events_text(&results);
    assert!(events.lines().any(|l| {
        let e: Value = serde_json::from_str(l).expect("JSON");
        e["event"] == "agent.audit" && e["decision"] == "denied" && e["action"] == "sleep"
    }));
    w1.stop();
    w2.stop();
}

/// A coordinator's first connection to NATS comes up in the background. While it is still
/// coming up (for as long as the coordinator would wait for a worker's heartbeat), the run's
/// first attempts wait for it: they do not run here as if NATS were down.
#[test]
fn a_coordinator_still_connecting_to_nats_waits_for_it_instead_of_running_here() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "calc", &[]);
    await_workers(&nats, "calc", &["w1"], |_| true);
    let door = SlowDoor::open(nats.port(), Duration::from_millis(1500));
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &root().join("examples/calc.toml"),
        &[
            "--nats",
            &door.url("wasm-orch", "runtime-secret"),
            "--pool",
            "calc",
        ],
        &output,
    );
    exited_0(&out);
    let calc = results(&output);
    assert_eq!(task(&calc, "product")["output"], 21);
    for node in ["left", "right", "product"] {
        let ran = task(&calc, node);
        assert_eq!(ran["history"][0]["worker"], "w1", "{node}: {ran}");
    }
    assert_eq!(finished(&w1.stop()), 3, "w1 ran the three attempts");
}

/// Sixteen attempts that start together on a new pool all need its component in the object
/// store at once: every one of them runs on a worker (none runs here because another was
/// putting the component there).
#[test]
fn attempts_that_start_together_on_a_new_pool_all_run_on_workers() {
    use std::fmt::Write as _;
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "calc", &["--slots", "8"]);
    let mut w2 = Worker::start(&nats, &scratch, "w2", "calc", &["--slots", "8"]);
    await_workers(&nats, "calc", &["w1", "w2"], |_| true);
    let mut toml = String::from(
        "[workflow]\nname = \"many\"\ntenant = \"acme\"\nmax_concurrency = 16\n\n\
         [agents.add]\ncomponent = \"{guests}/add.wasm\"\n",
    );
    for i in 0..16 {
        let _ = write!(
            toml,
            "\n[[tasks]]\nid = \"t{i}\"\nagent = \"add\"\nwith = {{ a = {i}, b = 1 }}\n"
        );
    }
    let flow = scratch.workflow("many.toml", &toml);
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nats.runtime_url(), "--pool", "calc"],
        &output,
    );
    exited_0(&out);
    let results = results(&output);
    for i in 0..16 {
        let ran = task(&results, &format!("t{i}"));
        assert_eq!(ran["output"], i + 1, "{ran}");
        assert!(
            ran["history"][0]["worker"].is_string(),
            "t{i} ran here: {ran}"
        );
    }
    let finished = finished(&w1.stop()) + finished(&w2.stop());
    assert_eq!(finished, 16, "the workers ran the sixteen attempts");
}

/// A worker answers a coordinator's ping with a heartbeat at once, not at its next second:
/// ten pings, each waiting for its answer, take far less than the nine seconds or more that
/// ten heartbeats alone would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_a_ping_with_a_heartbeat_at_once() {
    use futures_util::StreamExt;
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "calc", &[]);
    let client = nats.runtime_client().await;
    let mut beats = client
        .subscribe("wasm-orch.workers.calc.w1")
        .await
        .expect("subscribes");
    client.flush().await.expect("flush");
    // Its first heartbeat: it is up, and reads pings (it subscribed before it beat).
    tokio::time::timeout(Duration::from_secs(60), beats.next())
        .await
        .expect("w1 beats")
        .expect("subscription open");
    let started = Instant::now();
    for _ in 0..10 {
        client
            .publish("wasm-orch.ping.calc", bytes::Bytes::new())
            .await
            .expect("ping");
        tokio::time::timeout(Duration::from_secs(10), beats.next())
            .await
            .expect("w1 answers")
            .expect("subscription open");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "ten pings took {took:?}");
    tokio::task::block_in_place(|| w1.stop());
}

/// Four counters on one shared key (25 increments each, read and compare-and-swap), and one
/// that tries a key of the host's namespace.
const COUNTERS: &str = r#"
[workflow]
name = "counters"
max_concurrency = 8

[agents.counter]
component = "{guests}/counter.wasm"
workdir = false

[[tasks]]
id = "c"
agent = "counter"
with = { key = "shared/total", times = 25 }
split = { file = "parts.txt", parts = 4, into = "part" }

[[tasks]]
id = "mine"
agent = "counter"
with = { key = "mine", times = 3 }

[[tasks]]
id = "escape"
agent = "counter"
with = { key = "runs/other/total", times = 1 }
"#;

#[test]
fn guests_on_workers_share_the_runs_blackboard_through_the_coordinator() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "board", &["--slots", "2"]);
    let mut w2 = Worker::start(&nats, &scratch, "w2", "board", &["--slots", "2"]);
    await_workers(&nats, "board", &["w1", "w2"], |_| true);
    std::fs::write(scratch.path().join("parts.txt"), "a\nb\nc\nd\n").expect("parts");
    let flow = scratch.workflow("counters.toml", COUNTERS);
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nats.runtime_url(), "--pool", "board"],
        &output,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "escape fails the run: {stderr}");
    let results = results(&output);
    // Every attempt ran on a worker; the counters used both.
    let mut workers = std::collections::BTreeSet::new();
    for t in results["tasks"].as_array().expect("tasks") {
        let worker = t["history"][0]["worker"].as_str();
        workers.insert(worker.unwrap_or_else(|| panic!("{} ran on no worker: {t}", t["node"])));
    }
    assert_eq!(workers.len(), 2, "{workers:?}");
    // No increment was lost between two processes' guests: each compare-and-swap was made on
    // the coordinator's board.
    let board = &results["blackboard"];
    assert_eq!(board["shared/total"]["value"], 100, "{board}");
    assert_eq!(board["branches/counters.mine/mine"]["value"], 3, "{board}");
    // A key out of the task's scope is refused there, and audited in the run's record.
    let escape = task(&results, "escape");
    assert_eq!(escape["status"], "failed", "{escape}");
    assert!(
        escape["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("runs"),
        "{escape}"
    );
    let denied = events_text(&results)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|e| {
            e["event"] == "agent.audit"
                && e["resource"] == "blackboard"
                && e["decision"] == "denied"
                && e["node"] == "escape"
        })
        .count();
    assert!(denied >= 1, "the refusal is audited");
    assert!(
        !board
            .as_object()
            .expect("board")
            .keys()
            .any(|k| k.contains("other")),
        "{board}"
    );
    w1.stop();
    w2.stop();
}

#[test]
fn agents_on_workers_negotiate_through_the_coordinators_mailboxes() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let mut w1 = Worker::start(&nats, &scratch, "w1", "talk", &["--slots", "2"]);
    let mut w2 = Worker::start(&nats, &scratch, "w2", "talk", &["--slots", "2"]);
    await_workers(&nats, "talk", &["w1", "w2"], |_| true);
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &root().join("examples/negotiation.toml"),
        &["--nats", &nats.runtime_url(), "--pool", "talk"],
        &output,
    );
    exited_0(&out);
    let results = results(&output);
    for node in ["alpha", "beta", "gamma"] {
        let t = task(&results, node);
        assert!(
            t["history"][0]["worker"].is_string(),
            "{node} ran on no worker: {t}"
        );
    }
    // ALPHA and BETA waited for each other's messages at the same time, so on two processes.
    let alpha = task(&results, "alpha");
    let beta = task(&results, "beta");
    assert_eq!(alpha["output"]["agreed"], 25.0, "{alpha}");
    assert_eq!(
        alpha["output"], beta["output"],
        "both took the same decision"
    );
    assert_eq!(alpha["output"]["by"], "gamma");
    // The same conversation as on one machine: each message sent, received and counted.
    let counts = |t: &Value| {
        (
            t["messages"]["sent"].clone(),
            t["messages"]["received"].clone(),
        )
    };
    assert_eq!(counts(alpha), (5.into(), 5.into()), "{alpha}");
    assert_eq!(counts(beta), (4.into(), 5.into()), "{beta}");
    assert_eq!(counts(task(&results, "gamma")), (2.into(), 1.into()));
    assert_eq!(results["metrics"]["total_messages"], 11);
    w1.stop();
    w2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_reported_twice_counts_once_and_a_repeated_order_is_stored_once() {
    use futures_util::StreamExt;
    use wasm_orch::workers::{PoolOptions, WorkerPool};

    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let _w1 = Worker::start(&nats, &scratch, "w1", "dup", &["--slots", "2"]);
    let pool = WorkerPool::connect(&nats.runtime_url(), PoolOptions::new("dup"))
        .await
        .expect("connects");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.workers().is_empty() {
        assert!(Instant::now() < deadline, "the worker did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runtime = wasm_orch::Runtime::builder()
        .state_dir(scratch.state_dir())
        .cache_dir(wasm_orch_tests::shared_cache())
        .workers(pool.clone())
        .build()
        .expect("a runtime");

    // Every end a worker reports is sent to the coordinator a second time.
    let spy = nats.runtime_client().await;
    let mut reports = spy
        .subscribe("wasm-orch.reports.>")
        .await
        .expect("subscribes");
    spy.flush().await.expect("flush");
    let repeater = spy.clone();
    let repeated = tokio::spawn(async move {
        let mut n = 0;
        while let Some(m) = reports.next().await {
            let report: Value = serde_json::from_slice(&m.payload).expect("JSON");
            if report["report"].get("finished").is_some() {
                repeater
                    .publish(m.subject.clone(), m.payload.clone())
                    .await
                    .expect("publish");
                n += 1;
                if n == 3 {
                    return n;
                }
            }
        }
        n
    });

    let workflow = wasm_orch::Workflow::from_file(root().join("examples/calc.toml")).expect("calc");
    let run = runtime
        .start(&workflow, wasm_orch::RunOptions::new())
        .await
        .expect("starts");
    let report = run.wait().await.expect("ends");
    let product = report
        .tasks
        .iter()
        .find(|t| t.node == "product")
        .expect("product");
    assert_eq!(product.output.as_ref().map(|o| o.get()), Some("21"));
    for t in &report.tasks {
        assert_eq!(t.attempts, 1, "{}", t.node);
        assert!(t.history[0].worker.is_some(), "{} ran on a worker", t.node);
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), repeated)
            .await
            .expect("three ends seen")
            .expect("the repeater"),
        3
    );
    // The repeats reach the coordinator after the originals: each is counted, and dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.counts().duplicates < 3 {
        assert!(Instant::now() < deadline, "{:?}", pool.counts());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pool.counts().duplicates, 3);
    assert_eq!(pool.counts().remote, 3);

    // An attempt's order published again (its key as the message id) is not stored again.
    let js = async_nats::jetstream::new(spy);
    let mut headers = async_nats::HeaderMap::new();
    let key = format!("{}/left/1", report.run_id);
    headers.insert("Nats-Msg-Id", key.as_str());
    let ack = js
        .publish_with_headers("wasm-orch.work.dup", headers, "{}".into())
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    assert!(ack.duplicate, "JetStream dropped the repeated order");
}

#[test]
fn with_nats_stopped_mid_run_the_run_goes_on_here_and_back_to_the_workers() {
    let scratch = Scratch::new();
    let mut nats = NatsServer::start(&scratch);
    let mut toml = String::from(
        "[workflow]\nname = \"waits\"\ntenant = \"acme\"\nmax_concurrency = 2\n\
         [agents.wait]\ncomponent = \"{guests}/wait.wasm\"\ntools = [\"sleep\"]\ntimeout = \"1500ms\"\n",
    );
    for i in 0..60 {
        toml.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nagent = \"wait\"\nwith = {{ ms = 400 }}\n\
             retry = {{ max_attempts = 3, backoff = \"100ms\" }}\n"
        ));
    }
    // An attempt whose tool call was in flight when NATS went away waits for its answer
    // until its time limit: it is retried (here, or on the worker once NATS is back).
    let flow = scratch.workflow("waits.toml", &toml);
    let _w1 = Worker::start(
        &nats,
        &scratch,
        "w1",
        "outage",
        &["--slots", "2", "--ack-wait", "2s"],
    );
    await_workers(&nats, "outage", &["w1"], |_| true);
    let output = scratch.path().join("results.json");
    let coordinator = start_run(&scratch, &flow, &nats, "outage", &output);
    std::thread::sleep(Duration::from_millis(2500));
    nats.kill();
    std::thread::sleep(Duration::from_secs(4));
    nats.restart();
    let out = coordinator.wait_with_output().expect("the run ends");
    exited_0(&out);
    let results = results(&output);
    let tasks = results["tasks"].as_array().expect("tasks");
    assert!(tasks.iter().all(|t| t["status"] == "succeeded"));
    // In task order (they start in order, two at a time): workers, then here, then workers.
    let placed: Vec<bool> = tasks
        .iter()
        .map(|t| {
            t["history"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|a| a["worker"].is_string())
        })
        .collect();
    // After the outage, distribution resumed: the last tasks ran on the worker. (Whether any
    // ran here depends on whether the outage found the slots held by attempts waiting on a
    // tool call; degraded mode itself is shown by the tests above.)
    assert!(placed.last().copied().unwrap_or(false), "{placed:?}");
    let events = events_text(&results);
    let to: Vec<String> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|e| e["event"] == "agent.dispatch.changed")
        .map(|e| e["to"].as_str().unwrap_or("").to_owned())
        .collect();
    // To the workers, here while NATS was gone, and back (a loaded machine may flap between).
    assert_eq!(to.first().map(String::as_str), Some("workers"), "{to:?}");
    assert_eq!(to.last().map(String::as_str), Some("workers"), "{to:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_pool_runs_calc_on_its_workers_and_shows_them_in_its_metrics() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let _w1 = Worker::start(&nats, &scratch, "w1", "svc", &["--slots", "3"]);
    await_workers(&nats, "svc", &["w1"], |_| true);
    let server = wasm_orch_tests::server::Server::start(
        env!("CARGO_BIN_EXE_wasm-orch-cli"),
        &scratch,
        &["--nats", &nats.runtime_url(), "--pool", "svc"],
    );
    let dag = std::fs::read_to_string(root().join("examples/calc.toml"))
        .expect("calc")
        .replace(
            "../target/guests",
            &wasm_orch_tests::guests().display().to_string(),
        );
    let (status, _) = server.put_dag("acme", "calc", &dag).await;
    assert!(status == 200 || status == 201, "{status}");
    let run = server.execute("acme", "calc").await;
    let body = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(body["report"]["outputs"]["product"], 21, "{body}");
    for t in body["report"]["tasks"].as_array().expect("tasks") {
        assert_eq!(t["history"][0]["worker"], "w1", "{t}");
    }
    // The run's own metrics say where its attempts ran.
    let run_metrics = &body["report"]["metrics"];
    assert_eq!(run_metrics["workers"]["w1"]["attempts"], 3, "{run_metrics}");
    assert_eq!(
        run_metrics["workers"]["w1"]["succeeded"], 3,
        "{run_metrics}"
    );
    assert_eq!(run_metrics["local_attempts"], 0, "{run_metrics}");
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "agent_workers_live{pool=\"svc\"} 1",
        "agent_workers_slots{pool=\"svc\"} 3",
        "agent_pool_attempts_total{pool=\"svc\",kind=\"remote\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    // The API (and the dashboard, which reads it) lists the pool's workers and their load, as
    // of each one's last heartbeat (every second): it comes to count calc's 3 attempts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (status, listed) = server.get("acme", "/v1/workers").await;
        assert_eq!(status, 200, "{listed}");
        if listed["workers"][0]["finished"]
            .as_u64()
            .is_some_and(|n| n >= 3)
            || std::time::Instant::now() > deadline
        {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed["pool"], "svc");
    let workers = listed["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 1, "{listed}");
    assert_eq!(workers[0]["id"], "w1");
    assert_eq!(workers[0]["slots"], 3);
    assert_eq!(workers[0]["finished"], 3, "{listed}");
    assert_eq!(workers[0]["busy"], 0, "{listed}");
    assert!(
        workers[0].get("tenants").is_none(),
        "workers are shared: no tenants shown"
    );
}

/// With NATS down, a service's workers lease its attempts over HTTP: `wasm-orch worker
/// --coordinator` polls `/v1/work/lease` once it cannot reach NATS, and the run's attempts go
/// to whoever takes them first, the worker or the coordinator (one at a time). The worker's
/// tool calls are made, and audited, by the coordinator; a tenant's token cannot lease, and a
/// worker's token reaches nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_the_services_workers_lease_its_attempts_over_http() {
    let scratch = Scratch::new();
    let mut nats = NatsServer::start(&scratch);
    let server = wasm_orch_tests::server::Server::start(
        env!("CARGO_BIN_EXE_wasm-orch-cli"),
        &scratch,
        &[
            "--nats",
            &nats.runtime_url(),
            "--pool",
            "lease",
            "--degraded-concurrency",
            "1",
        ],
    );
    server.ready().await;
    let token_file = scratch.path().join("worker.token");
    std::fs::write(&token_file, &server.worker_token).expect("the worker's token");
    let token_arg = token_file.display().to_string();
    let _w1 = Worker::start(
        &nats,
        &scratch,
        "w1",
        "lease",
        &[
            "--slots",
            "4",
            "--coordinator",
            &server.url,
            "--token-file",
            &token_arg,
        ],
    );
    await_workers(&nats, "lease", &["w1"], |_| true);
    nats.kill();

    // The doors of /v1/work: a worker's token, for this service's pool.
    let lease = |token: &str, pool: &str| {
        server
            .http
            .post(format!("{}/v1/work/lease", server.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "worker": "probe", "pool": pool, "wait_ms": 1 }).to_string())
    };
    let (status, body) =
        wasm_orch_tests::server::Server::send(lease(server.token("acme"), "lease")).await;
    assert_eq!(status, 401, "a tenant's token leases nothing: {body}");
    let (status, body) =
        wasm_orch_tests::server::Server::send(lease(&server.worker_token, "other")).await;
    assert_eq!(status, 404, "not this service's pool: {body}");
    let (status, body) = wasm_orch_tests::server::Server::send(
        server
            .http
            .get(format!("{}/v1/runs", server.url))
            .bearer_auth(&server.worker_token),
    )
    .await;
    assert_eq!(
        status, 401,
        "a worker's token reaches no tenant's runs: {body}"
    );

    let mut dag = format!(
        "[workflow]\nname = \"waits\"\nmax_concurrency = 8\n\
         [agents.wait]\ncomponent = \"{}/wait.wasm\"\ntools = [\"sleep\"]\n",
        wasm_orch_tests::guests().display()
    );
    for i in 0..6 {
        dag.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\nagent = \"wait\"\nwith = {{ ms = 600 }}\n"
        ));
    }
    let (status, body) = server.put_dag("acme", "waits", &dag).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let run = server.execute("acme", "waits").await;
    let body = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(120))
        .await;
    let tasks = body["report"]["tasks"].as_array().expect("tasks");
    assert!(tasks.iter().all(|t| t["status"] == "succeeded"), "{body}");
    let on_worker: Vec<&str> = tasks
        .iter()
        .filter(|t| t["history"][0]["worker"] == "w1")
        .filter_map(|t| t["node"].as_str())
        .collect();
    // The coordinator runs one at a time; the worker, four: most ran there.
    assert!(
        on_worker.len() >= 2,
        "leased to w1: {on_worker:?} of {body}"
    );
    // Each leased attempt's `sleep` was made and audited by the coordinator, as the task.
    let events = server.events("acme", &run, None).await.collect().await;
    for node in &on_worker {
        assert!(
            events.iter().any(|e| {
                e.event == "agent.audit"
                    && e.data["node"] == *node
                    && e.data["action"] == "sleep"
                    && e.data["decision"] == "allowed"
            }),
            "{node}'s sleep is on the coordinator's record"
        );
    }
}

/// A tenant's fuel rate holds on workers too: a worker's attempt sends the fuel its guest
/// burns to its coordinator, which draws it from the tenant's bucket and answers with the
/// debt the guest must sleep off. A loop that never calls the host, capped at 100M fuel a
/// second for two seconds, burns a fraction of what it burns unthrottled.
#[test]
fn a_tenants_fuel_rate_holds_for_its_attempts_on_workers() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let _w1 = Worker::start(&nats, &scratch, "w1", "rated", &["--slots", "2"]);
    await_workers(&nats, "rated", &["w1"], |_| true);
    let policy = scratch.workflow(
        "policy.toml",
        "[tenants.capped]\nfuel_rate = 100_000_000\nfuel_burst = 10_000_000\n",
    );
    let flow = scratch.workflow(
        "spin.toml",
        "[workflow]\nname = \"spin\"\ntenant = \"capped\"\n\
         [agents.spin]\ncomponent = \"{guests}/spin.wasm\"\nfuel = 1_000_000_000_000_000\n\
         timeout = \"2s\"\nworkdir = false\n[[tasks]]\nid = \"spin\"\nagent = \"spin\"\n",
    );
    let output = scratch.path().join("results.json");
    let out = scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(&flow)
                .args(["--plain", "--nats", &nats.runtime_url(), "--pool", "rated"])
                .arg("--policy")
                .arg(&policy)
                .arg("--output")
                .arg(&output),
        )
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "the spin times out");
    let results = results(&output);
    let spin = task(&results, "spin");
    assert_eq!(spin["status"], "timed-out", "{spin}");
    assert_eq!(
        spin["history"][0]["worker"], "w1",
        "it ran on the worker: {spin}"
    );
    let fuel = spin["fuel_used"].as_u64().expect("fuel used");
    // Two seconds at 100M/s and the burst are 210M; the same attempt run here burns 250M to
    // 280M (a draw sees the fuel of the slice before it), on a worker 300M to 410M (the
    // coordinator's answers come late); unthrottled, it burns well over a billion.
    assert!(
        fuel <= 600_000_000,
        "{fuel} fuel in two seconds: the rate did not hold on the worker"
    );
    assert!(fuel >= 20_000_000, "{fuel}: it hardly ran");
}

/// A task's input files go to the worker that runs it: listed by digest in its work order,
/// put in the object store by the coordinator, fetched, checked and placed read-only under
/// `inputs/` by the worker (a file, and a directory with a file two levels down).
#[test]
fn a_tasks_input_files_reach_the_worker_that_runs_it() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let _w1 = Worker::start(&nats, &scratch, "w1", "files", &["--slots", "2"]);
    await_workers(&nats, "files", &["w1"], |_| true);
    std::fs::write(scratch.path().join("nums.txt"), "1 2 3 4\n").expect("nums.txt");
    std::fs::create_dir_all(scratch.path().join("data/more")).expect("data");
    std::fs::write(scratch.path().join("data/more/n.txt"), "100\n").expect("n.txt");
    let flow = scratch.workflow(
        "files.toml",
        "[workflow]\nname = \"files\"\n\
         [agents.step]\ncomponent = \"{guests}/step.wasm\"\ntools = [\"kv\"]\n\
         [[tasks]]\nid = \"file\"\nagent = \"step\"\ninputs = [\"nums.txt\"]\n\
         with = { value = 1, read = \"inputs/nums.txt\" }\n\
         [[tasks]]\nid = \"dir\"\nagent = \"step\"\ninputs = [\"data\"]\n\
         with = { value = 2, read = \"inputs/data/more/n.txt\" }\n",
    );
    let output = scratch.path().join("results.json");
    let out = run(
        &scratch,
        &flow,
        &["--nats", &nats.runtime_url(), "--pool", "files"],
        &output,
    );
    exited_0(&out);
    let results = results(&output);
    for (node, expected) in [("file", 11), ("dir", 102)] {
        let t = task(&results, node);
        assert_eq!(t["output"], expected, "{t}");
        assert_eq!(t["history"][0]["worker"], "w1", "it ran on the worker: {t}");
    }
}
