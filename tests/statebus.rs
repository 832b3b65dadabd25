//! The state bus: a run's events on a real `nats-server` (`examples/nats/server.conf`), on
//! `wasm-orch.events.<tenant>.<run>`, in order, readable by its tenant alone; a run whose NATS
//! server is down goes on.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use wasm_orch_tests::nats::{NatsServer, SlowDoor, free_port};
use wasm_orch_tests::server::Server;
use wasm_orch_tests::{Scratch, cli, exited_0};

const CALC: &str = r#"
[workflow]
name = "calc"
tenant = "acme"

[agents.add]
component = "{guests}/add.wasm"
[agents.mul]
component = "{guests}/mul.wasm"

[[tasks]]
id = "left"
agent = "add"
with = { a = 1, b = 2 }
[[tasks]]
id = "right"
agent = "add"
with = { a = 3, b = 4 }
[[tasks]]
id = "product"
agent = "mul"
depends_on = ["left", "right"]
"#;

/// A client that reports the server's errors (permission violations) on a channel.
async fn client(
    nats: &NatsServer,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.address())
        .await
        .expect("connects to nats-server");
    (client, rx)
}

/// Tenant acme's client, subscribed to every event of its runs.
async fn acme_events(nats: &NatsServer) -> (async_nats::Client, async_nats::Subscriber) {
    let (acme, _) = client(nats, "acme", "acme-secret").await;
    let events = acme
        .subscribe("wasm-orch.events.acme.>")
        .await
        .expect("acme subscribes to its own subjects");
    (acme, events)
}

/// `wasm-orch run --plain FILE ARGS`, which must succeed: the events it wrote.
fn run_with_events(scratch: &Scratch, flow: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let events_file = scratch.path().join("events.jsonl");
    let out = scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(flow)
                .arg("--plain")
                .args(args)
                .arg("--events")
                .arg(&events_file),
        )
        .output()
        .expect("runs");
    exited_0(&out);
    std::fs::read_to_string(&events_file)
        .expect("events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_events_reach_its_tenant_in_order_and_no_other_tenant() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    eprintln!("{}", nats.url("acme", "acme-secret"));
    let flow = scratch.workflow("calc.toml", CALC);

    let (acme, mut mine) = acme_events(&nats).await;
    let (globex, mut refused) = client(&nats, "globex", "globex-secret").await;
    let mut own = globex
        .subscribe("wasm-orch.events.globex.>")
        .await
        .expect("subscribes");
    // The server refuses this subscription (asynchronously, as a -ERR): nothing arrives on it.
    let mut theirs = globex
        .subscribe("wasm-orch.events.acme.>")
        .await
        .expect("sent");
    acme.flush().await.expect("flush");
    globex.flush().await.expect("flush");
    let why = tokio::time::timeout(Duration::from_secs(10), refused.recv())
        .await
        .expect("the server answers globex's subscription")
        .expect("an error");
    assert!(
        why.to_lowercase().contains("permissions violation")
            && why.contains("wasm-orch.events.acme.>"),
        "{why}"
    );

    let written = run_with_events(
        &scratch,
        &flow,
        &["--run-id", "r.1", "--nats", &nats.runtime_url()],
    );

    // Every event, in order, on the run's subject (the run id's `.` escaped), carrying its
    // dedup id and name.
    let mut received = Vec::new();
    while received.len() < written.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), mine.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {} events arrived",
                    received.len(),
                    written.len()
                )
            })
            .expect("subscription open");
        assert_eq!(message.subject.as_str(), "wasm-orch.events.acme.r%2E1");
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON event");
        let headers = message.headers.expect("headers");
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
            Some(format!("r.1:{}", event["seq"]))
        );
        assert_eq!(
            headers
                .get("Wasm-Orch-Event")
                .map(|v| v.as_str().to_owned()),
            event["event"].as_str().map(str::to_owned)
        );
        received.push(event);
    }
    assert_eq!(
        received, written,
        "the bus carries exactly the run's event stream"
    );
    let seqs: Vec<u64> = received.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=written.len() as u64).collect::<Vec<_>>());
    let names: HashSet<&str> = received
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    for name in [
        "agent.plan.created",
        "agent.task.status.updated",
        "agent.run.completed",
    ] {
        assert!(names.contains(name), "{name} missing: {names:?}");
    }
    let last = received.last().expect("events");
    assert_eq!(last["event"], "agent.run.completed");
    assert_eq!(last["status"], "succeeded");

    // Nothing reached globex, on its own subjects or on acme's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leaked = tokio::time::timeout(Duration::from_millis(10), theirs.next()).await;
    assert!(!matches!(leaked, Ok(Some(_))), "globex read acme's events");
    let stray = tokio::time::timeout(Duration::from_millis(10), own.next()).await;
    assert!(
        !matches!(stray, Ok(Some(_))),
        "acme's events went to globex"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_what_its_event_stream_serves() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let (acme, _) = client(&nats, "acme", "acme-secret").await;
    let mut mine = acme
        .subscribe("wasm-orch.events.acme.>")
        .await
        .expect("subscribes");
    acme.flush().await.expect("flush");
    let server = Server::start(
        env!("CARGO_BIN_EXE_wasm-orch-cli"),
        &scratch,
        &["--nats", &nats.runtime_url()],
    );
    // The DAG names no tenant: the token's (acme) is the run's, on the bus too.
    let dag = CALC
        .replace("tenant = \"acme\"\n", "")
        .replace("{guests}", &wasm_orch_tests::guests().display().to_string());
    let (status, _) = server.put_dag("acme", "calc", &dag).await;
    assert!(status == 200 || status == 201, "{status}");
    let run = server.execute("acme", "calc").await;
    let served = server.events("acme", &run, None).await.collect().await;
    assert_eq!(
        served.last().map(|e| e.event.as_str()),
        Some("agent.run.completed")
    );

    let subject = format!("wasm-orch.events.acme.{run}");
    let mut published = Vec::new();
    while published.len() < served.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), mine.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {} events on NATS", published.len(), served.len()))
            .expect("subscription open");
        assert_eq!(message.subject.as_str(), subject);
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        published.push((
            event["seq"].as_u64(),
            event["event"].as_str().map(str::to_owned),
        ));
    }
    let streamed: Vec<_> = served
        .iter()
        .map(|e| (Some(e.id), Some(e.event.clone())))
        .collect();
    assert_eq!(published, streamed, "NATS and SSE carry the same sequence");
}

/// A run shorter than its first connection to NATS takes to come up: its events wait for the
/// connection, and reach the bus before the process ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_runs_events_wait_for_a_first_connection_still_coming_up() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let flow = scratch.workflow("calc.toml", CALC);
    let (acme, mut mine) = acme_events(&nats).await;
    acme.flush().await.expect("flush");
    let door = SlowDoor::open(nats.port(), Duration::from_millis(1000));
    let written = run_with_events(
        &scratch,
        &flow,
        &["--nats", &door.url("wasm-orch", "runtime-secret")],
    );
    let mut received = Vec::new();
    while received.len() < written.len() {
        match tokio::time::timeout(Duration::from_secs(10), mine.next()).await {
            Ok(Some(message)) => {
                received.push(serde_json::from_slice::<Value>(&message.payload).expect("JSON"));
            }
            _ => panic!(
                "only {} of {} events reached the bus",
                received.len(),
                written.len()
            ),
        }
    }
    assert_eq!(received, written);
}

#[test]
fn a_run_goes_on_while_its_nats_server_is_down() {
    let scratch = Scratch::new();
    let flow = scratch.workflow("calc.toml", CALC);
    // A port with no server on it.
    let port = free_port();
    let results = scratch.path().join("results.json");
    let started = std::time::Instant::now();
    let out = scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(&flow)
                .args(["--plain", "--nats", &format!("nats://127.0.0.1:{port}")])
                .arg("--output")
                .arg(&results),
        )
        .output()
        .expect("runs");
    exited_0(&out);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("JSON");
    assert_eq!(report["outputs"]["product"], 21);
    // It does not wait for the server to exit (the bound is generous for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_bad_nats_address_is_a_clear_error() {
    let scratch = Scratch::new();
    let flow = scratch.workflow("calc.toml", CALC);
    let out = scratch
        .dirs(
            cli!()
                .arg("run")
                .arg(&flow)
                .args(["--nats", "nats://no port here:x"]),
        )
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--nats") && stderr.contains("nats://HOST:PORT"),
        "{stderr}"
    );
}

/// A tenant's client whose request inboxes are its own (`_INBOX.<tenant>.>`).
async fn tenant_client(nats: &NatsServer, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(format!("_INBOX.{user}"))
        .connect(nats.address())
        .await
        .expect("connects to nats-server")
}

/// A nats-server, and `wasm-orch serve --nats` on it, ready (listening for plans).
async fn serve_on_bus(scratch: &Scratch) -> (NatsServer, Server) {
    let nats = NatsServer::start(scratch);
    let server = Server::start(
        env!("CARGO_BIN_EXE_wasm-orch-cli"),
        scratch,
        &["--nats", &nats.runtime_url()],
    );
    server.ready().await;
    (nats, server)
}

/// The service's answer to `plan` on `subject`: its `Wasm-Orch-Status` and JSON body.
async fn ask(client: &async_nats::Client, subject: &str, plan: &str) -> (Option<String>, Value) {
    let answer = client
        .request(subject.to_owned(), plan.to_owned().into())
        .await
        .expect("answered");
    answered(&answer)
}

fn answered(answer: &async_nats::Message) -> (Option<String>, Value) {
    let status = answer
        .headers
        .as_ref()
        .and_then(|h| h.get("Wasm-Orch-Status"))
        .map(|v| v.as_str().to_owned());
    let body = serde_json::from_slice(&answer.payload).expect("JSON");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_published_by_a_tenant_starts_its_run_once() {
    let scratch = Scratch::new();
    let (nats, server) = serve_on_bus(&scratch).await;
    let acme = tenant_client(&nats, "acme", "acme-secret").await;
    let mut events = acme
        .subscribe("wasm-orch.events.acme.>")
        .await
        .expect("subscribes");
    acme.flush().await.expect("flush");

    // The plan carries its DAG: registered, then started, as acme's.
    let dag = CALC
        .replace("tenant = \"acme\"\n", "")
        .replace("{guests}", &wasm_orch_tests::guests().display().to_string());
    let plan = serde_json::json!({ "dag": "calc", "workflow": dag }).to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Idempotency-Key", "plan-1");
    let request = || {
        acme.request_with_headers(
            "wasm-orch.plan.created.acme",
            headers.clone(),
            plan.clone().into(),
        )
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), request())
        .await
        .expect("answered in time")
        .expect("answered");
    let (status, body) = answered(&answer);
    assert_eq!(status.as_deref(), Some("202"), "{body}");
    let run = body["run_id"].as_str().expect("a run id").to_owned();
    assert_eq!(body["links"]["events"], format!("/v1/runs/{run}/events"));

    // Its events come on acme's subject, to the end.
    let subject = format!("wasm-orch.events.acme.{}", run.replace('.', "%2E"));
    let mut last = String::new();
    while last != "agent.run.completed" {
        let message = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("events of the run")
            .expect("subscription open");
        assert_eq!(message.subject.as_str(), subject);
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
        last = event["event"].as_str().unwrap_or_default().to_owned();
    }
    // (The journal may record the results a moment after the bus carries the last event.)
    let view = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(view["report"]["outputs"]["product"], 21, "{view}");

    // The same key again: the same run, not a second one.
    let (status, body) = answered(&request().await.expect("answered"));
    assert_eq!(status.as_deref(), Some("200"), "{body}");
    assert_eq!(body["run_id"], run.as_str());
    assert_eq!(body["created"], false);
    let (_, runs) = server.get("acme", "/v1/runs").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");

    // Bad plans are answered with the API's errors.
    let plans = "wasm-orch.plan.created.acme";
    let (status, body) = ask(&acme, plans, r#"{"dag": "nope"}"#).await;
    assert_eq!(status.as_deref(), Some("404"), "{body}");
    assert_eq!(body["error"]["code"], "not-found");
    let (status, body) = ask(&acme, plans, "calc, please").await;
    assert_eq!(status.as_deref(), Some("400"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a plan")),
        "{body}"
    );
    let broken = serde_json::json!({ "dag": "bad", "workflow": "[workflow]\nname = 3\n" });
    let (status, body) = ask(&acme, plans, &broken.to_string()).await;
    assert_eq!(status.as_deref(), Some("400"), "{body}");
    assert_eq!(body["error"]["code"], "invalid-workflow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_publish_another_tenants_plans() {
    let scratch = Scratch::new();
    let (nats, _server) = serve_on_bus(&scratch).await;
    let (globex, mut refused) = client(&nats, "globex", "globex-secret").await;
    globex
        .publish("wasm-orch.plan.created.acme", r#"{"dag": "calc"}"#.into())
        .await
        .expect("sent");
    globex.flush().await.expect("flush");
    let why = tokio::time::timeout(Duration::from_secs(10), refused.recv())
        .await
        .expect("the server answers globex's publish")
        .expect("an error");
    assert!(
        why.to_lowercase().contains("permissions violation")
            && why.contains("wasm-orch.plan.created.acme"),
        "{why}"
    );
    // globex may publish on its own subject, but this service's policy has no such tenant.
    let globex = tenant_client(&nats, "globex", "globex-secret").await;
    let (status, body) = ask(
        &globex,
        "wasm-orch.plan.created.globex",
        r#"{"dag": "calc"}"#,
    )
    .await;
    assert_eq!(status.as_deref(), Some("403"), "{body}");
    assert_eq!(body["error"]["code"], "unknown-tenant");
}
