//! `wasm-orch serve`, tested as a client sees it: a real server process on loopback, reached
//! over HTTP, its runs followed over server-sent events and WebSocket, killed and restarted.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use wasm_orch_tests::Scratch;
use wasm_orch_tests::server::{Server, SseEvent};

const BIN: &str = env!("CARGO_BIN_EXE_wasm-orch-cli");

/// `(1 + 2) * (3 + 4)`, with `delay_ms` of latency in each task.
fn calc(delay_ms: u64) -> String {
    format!(
        r#"
[workflow]
name = "calc"
[agents.add]
component = "{{guests}}/add.wasm"
timeout = "60s"
tools = ["sleep"]
[agents.mul]
component = "{{guests}}/mul.wasm"
timeout = "60s"
tools = ["sleep"]
[[tasks]]
id = "left"
agent = "add"
with = {{ a = 1, b = 2, delay_ms = {delay_ms} }}
[[tasks]]
id = "right"
agent = "add"
with = {{ a = 3, b = 4, delay_ms = {delay_ms} }}
[[tasks]]
id = "product"
agent = "mul"
depends_on = ["left", "right"]
with = {{ delay_ms = {delay_ms} }}
"#
    )
}

/// A fast first task, then a slow one, then a last one.
const CHAIN: &str = r#"
[workflow]
name = "chain"
[agents.add]
component = "{guests}/add.wasm"
timeout = "60s"
tools = ["sleep"]
[[tasks]]
id = "first"
agent = "add"
with = { a = 1 }
[[tasks]]
id = "slow"
agent = "add"
depends_on = ["first"]
with = { a = 10, delay_ms = 3000 }
[[tasks]]
id = "last"
agent = "add"
depends_on = ["slow"]
with = { a = 100 }
"#;

fn assert_contiguous(events: &[SseEvent], from: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, from + i as u64, "events are numbered without gaps");
        assert_eq!(
            e.data["seq"].as_u64(),
            Some(e.id),
            "the SSE id is the event's seq"
        );
        assert_eq!(
            e.data["event"].as_str(),
            Some(e.event.as_str()),
            "SSE event name"
        );
    }
}

fn statuses<'a>(events: &'a [SseEvent], node: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    events
        .iter()
        .filter(move |e| e.event == "agent.task.status.updated" && e.data["node"] == node)
        .filter_map(|e| e.data["status"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calc_over_http_gives_21_and_its_events_end_to_end() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    let (status, dag) = server.put_dag("acme", "calc", &calc(50)).await;
    assert_eq!(status, 201, "{dag}");
    assert_eq!(dag["tasks"], 3);
    // Registering again replaces it: a new version.
    let (status, dag) = server.put_dag("acme", "calc", &calc(50)).await;
    assert_eq!((status, dag["version"].as_u64()), (200, Some(2)));
    let (_, dags) = server.get("acme", "/v1/dags").await;
    assert_eq!(dags["dags"][0]["dag_id"], "calc");
    let (status, gone) =
        Server::send(server.request("acme", reqwest::Method::DELETE, "/v1/dags/calc")).await;
    assert_eq!(status, 204, "{gone}");
    let (status, _) =
        Server::send(server.request("acme", reqwest::Method::DELETE, "/v1/dags/calc")).await;
    assert_eq!(status, 404);
    let (status, _) = server.put_dag("acme", "calc", &calc(50)).await;
    assert_eq!(status, 201, "registered anew");

    let run = server.execute("acme", "calc").await;
    let events = server.events("acme", &run, None).await.collect().await;
    assert_contiguous(&events, 1);
    assert_eq!(events[0].event, "agent.plan.created");
    let last = events.last().expect("events");
    assert_eq!(last.event, "agent.run.completed");
    assert_eq!(last.data["status"], "succeeded");
    // The token's tenant is the run's, though the file names none.
    assert_eq!(events[0].data["tenant"], "acme");

    let (status, view) = server.get("acme", &format!("/v1/runs/{run}")).await;
    assert_eq!(status, 200);
    assert_eq!(view["report"]["outputs"]["product"], 21);
    assert_eq!(view["run"]["state"], "succeeded");
    assert_eq!(view["dag_id"], "calc");

    let (status, task) = server
        .get("acme", &format!("/v1/runs/{run}/tasks/product"))
        .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["attempts"][0]["status"], "succeeded");
    assert_eq!(task["attempts"][0]["output"], 21);
    assert_eq!(
        task["planned"]["depends_on"],
        serde_json::json!(["left", "right"])
    );
    assert!(task["progress"]["message"].is_string(), "{task}");
    assert_eq!(task["report"]["status"], "succeeded");
    let (status, _) = server
        .get("acme", &format!("/v1/runs/{run}/tasks/nope"))
        .await;
    assert_eq!(status, 404);

    // The seeds' name for execute does the same.
    let (status, body) = server
        .post("acme", "/internal/agent/dag/calc/execute")
        .await;
    assert_eq!(status, 202, "{body}");

    let (status, list) = server.get("acme", "/v1/runs?dag=calc&limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1));
    let cursor = list["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page2) = server
        .get(
            "acme",
            &format!("/v1/runs?dag=calc&limit=5&cursor={cursor}"),
        )
        .await;
    assert_eq!(page2["runs"][0]["run_id"], run.as_str(), "{page2}");
    assert!(page2["next_cursor"].is_null());
    let (_, succeeded) = server.get("acme", "/v1/runs?status=succeeded").await;
    assert!(
        succeeded["runs"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["run_id"] == run.as_str()))
    );

    let metrics = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "agent_runs_completed_total{tenant=\"acme\",outcome=\"succeeded\"} 1",
        "agent_tasks_total{tenant=\"acme\",outcome=\"succeeded\"} 3",
        "agent_statebus_lag_ms_count{tenant=\"acme\"}",
        "agent_result_generation_latency_count{tenant=\"acme\"}",
        "agent_fuel_consumed_total{tenant=\"acme\"}",
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
    let (status, health) = Server::send(server.http.get(format!("{}/readyz", server.url))).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ready")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    server.put_dag("acme", "calc", &calc(400)).await;
    let run = server.execute("acme", "calc").await;
    // Read a few events live, then drop the connection mid-run.
    let mut first = Vec::new();
    let mut sse = server.events("acme", &run, None).await;
    while first.len() < 6 {
        first.push(sse.next().await.expect("an event"));
    }
    drop(sse);
    let last_seen = first.last().map(|e| e.id).expect("seen");
    let state = server.get("acme", &format!("/v1/runs/{run}")).await.1;
    assert_eq!(state["run"]["state"], "running", "reconnecting mid-run");
    let rest = server
        .events("acme", &run, Some(last_seen))
        .await
        .collect()
        .await;
    assert_eq!(rest.first().map(|e| e.id), Some(last_seen + 1));
    assert_contiguous(&rest, last_seen + 1);
    assert_eq!(
        rest.last().map(|e| e.event.as_str()),
        Some("agent.run.completed")
    );
    // Together they are the run's whole stream, as a fresh reader sees it from the journal.
    let all = server.events("acme", &run, None).await.collect().await;
    let joined: Vec<Value> = first.iter().chain(&rest).map(|e| e.data.clone()).collect();
    let fresh: Vec<Value> = all.iter().map(|e| e.data.clone()).collect();
    assert_eq!(joined, fresh);
    // Past the end: nothing, and the stream ends.
    let after = server
        .events("acme", &run, Some(all.len() as u64))
        .await
        .collect()
        .await;
    assert!(after.is_empty());

    // The same stream over WebSocket, from `?after=`.
    let url = format!(
        "{}/v1/runs/{run}/ws?after=3",
        server.url.replace("http://", "ws://")
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("a request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.token("acme"))
            .parse()
            .expect("a header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a WebSocket");
    let mut seqs = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).expect("JSON");
            seqs.push(event["seq"].as_u64().unwrap_or(0));
        }
    }
    let expected: Vec<u64> = (4..=all.len() as u64).collect();
    assert_eq!(seqs, expected);

    // As a browser does it: the token as a subprotocol, beside the one the server speaks.
    let url = format!(
        "{}/v1/runs/{run}/ws?after={}",
        server.url.replace("http://", "ws://"),
        all.len() - 1
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("a request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("wasm-orch.v1, wasm-orch.token.{}", server.token("acme"))
            .parse()
            .expect("a header"),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a WebSocket with the token as a subprotocol");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("wasm-orch.v1")
    );
    let mut last = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).expect("JSON");
            last.push(event["event"].as_str().unwrap_or("").to_owned());
        }
    }
    assert_eq!(last, ["agent.run.completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_returns_the_same_run() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    server.put_dag("acme", "calc", &calc(0)).await;
    let execute = |key: &'static str| {
        Server::send(
            server
                .request("acme", reqwest::Method::POST, "/v1/dags/calc/execute")
                .header("Idempotency-Key", key)
                .header("content-type", "application/json")
                .body("{}"),
        )
    };
    // Sent together: one run.
    let ((s1, a), (s2, b)) = tokio::join!(execute("order-17"), execute("order-17"));
    let mut codes = [s1, s2];
    codes.sort();
    assert_eq!(codes, [200, 202], "{a} {b}");
    assert_eq!(a["run_id"], b["run_id"]);
    let (s3, c) = execute("order-17").await;
    assert_eq!(
        (s3, &c["run_id"], &c["created"]),
        (200, &a["run_id"], &Value::Bool(false))
    );
    let (s4, d) = execute("order-18").await;
    assert_eq!(s4, 202);
    assert_ne!(d["run_id"], a["run_id"]);
    let (_, list) = server.get("acme", "/v1/runs?dag=calc").await;
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(2), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_over_the_api() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    server.put_dag("acme", "chain", CHAIN).await;
    let run = server.execute("acme", "chain").await;
    let mut sse = server.events("acme", &run, None).await;
    let mut seen = Vec::new();
    // Until the slow task runs.
    while let Some(e) = sse.next().await {
        let running = e.event == "agent.task.status.updated"
            && e.data["node"] == "slow"
            && e.data["status"] == "running";
        seen.push(e);
        if running {
            break;
        }
    }
    let (status, body) = server.post("acme", &format!("/v1/runs/{run}/cancel")).await;
    assert_eq!(status, 202, "{body}");
    seen.extend(sse.collect().await);
    assert_contiguous(&seen, 1);
    let last = seen.last().expect("events");
    assert_eq!(last.data["status"], "cancelled", "{:?}", last.data);
    assert!(statuses(&seen, "slow").any(|s| s == "cancelled"));
    assert!(
        !statuses(&seen, "last").any(|s| s == "running"),
        "nothing more started"
    );
    server
        .wait_state("acme", &run, "cancelled", Duration::from_secs(30))
        .await;
    let (status, body) = server.post("acme", &format!("/v1/runs/{run}/cancel")).await;
    assert_eq!(status, 409, "{body}");
    // A cancelled run resumes: what succeeded stays, the rest runs.
    let (status, body) = server.post("acme", &format!("/v1/runs/{run}/resume")).await;
    assert_eq!(status, 202, "{body}");
    let view = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(view["report"]["outputs"]["last"], 111);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_and_touches_only_its_own() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    server.put_dag("acme", "chain", CHAIN).await;
    let run = server.execute("acme", "chain").await;
    let paths = [
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/tasks/first"),
        format!("/v1/runs/{run}/events"),
        format!("/v1/runs/{run}/ws"),
        "/v1/dags/chain".to_owned(),
    ];
    for path in &paths {
        let (status, body) = server.get("trial", path).await;
        assert_eq!(status, 404, "trial GET {path}: {body}");
    }
    for path in [
        format!("/v1/runs/{run}/cancel"),
        format!("/v1/runs/{run}/resume"),
        "/v1/dags/chain/execute".to_owned(),
    ] {
        let (status, body) = server.post("trial", &path).await;
        assert_eq!(status, 404, "trial POST {path}: {body}");
    }
    let (_, list) = server.get("trial", "/v1/runs").await;
    assert_eq!(
        list["runs"],
        serde_json::json!([]),
        "trial lists nothing of acme's"
    );
    let (_, dags) = server.get("trial", "/v1/dags").await;
    assert_eq!(dags["dags"], serde_json::json!([]));
    let (_, me) = server.get("trial", "/v1/me").await;
    assert_eq!(me["tenant"], "trial");
    // Trial's own DAG of the same id is its own.
    let (status, _) = server.put_dag("trial", "chain", CHAIN).await;
    assert_eq!(status, 201);
    // Without a token, or with a wrong one: 401 everywhere.
    for path in ["/v1/runs", "/v1/dags", &paths[0]] {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .bearer_auth("wo_0000")
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 401);
    }
    // Acme's run went on untouched.
    let view = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(view["report"]["outputs"]["last"], 111);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_with_a_reason_never_a_500() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &["--max-body", "65536"]);
    // A workflow with a mistake: the diagnostics as data, with line and column.
    let (status, body) = server
        .put_dag(
            "acme",
            "broken",
            "[workflow]\nname = \"broken\"\n\n[[tasks]]\nid = \"a\"\nagent = \"nope\"\n",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid-workflow");
    let d = &body["error"]["diagnostics"][0];
    assert_eq!(d["line"], 6, "{body}");
    assert!(
        d["column"].as_u64().is_some() && d["help"].is_string(),
        "{body}"
    );
    // TOML that does not parse.
    let (status, body) = server.put_dag("acme", "x", "[workflow\nname=").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["diagnostics"][0]["line"].is_number(),
        "{body}"
    );
    // Not UTF-8.
    let (status, body) = Server::send(
        server
            .request("acme", reqwest::Method::PUT, "/v1/dags/x")
            .body(vec![0xff, 0xfe, 0x00]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Too large: 413.
    let (status, _) = Server::send(
        server
            .request("acme", reqwest::Method::PUT, "/v1/dags/x")
            .body("#".repeat(70_000)),
    )
    .await;
    assert_eq!(status, 413);
    // A component outside the components directory (any host file).
    let (status, body) = server
        .put_dag(
            "acme",
            "escape",
            "[workflow]\nname = \"e\"\n[agents.a]\ncomponent = \"/etc/passwd\"\n[[tasks]]\nid = \"t\"\nagent = \"a\"\n",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        !body.to_string().contains("root:"),
        "nothing of the file is shown"
    );
    server.put_dag("acme", "calc", &calc(0)).await;
    for (body, what) in [
        ("{bad json", "bad JSON"),
        (r#"{"params": {"a": null}}"#, "a null parameter"),
        (r#"{"unknown": 1}"#, "an unknown field"),
        (r#"{"params": {"nope": 1}}"#, "an undeclared parameter"),
    ] {
        let (status, reply) = Server::send(
            server
                .request("acme", reqwest::Method::POST, "/v1/dags/calc/execute")
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(status, 400, "{what}: {reply}");
        assert!(reply["error"]["message"].is_string(), "{what}: {reply}");
    }
    let (status, _) = server.get("acme", "/v1/dags/bad%20id").await;
    assert_eq!(status, 400);
    let (status, _) = server.get("acme", "/v1/runs?status=sleeping").await;
    assert_eq!(status, 400);
    let (status, _) = server.get("acme", "/v1/runs?limit=abc").await;
    assert_eq!(status, 400);
    let (status, body) = server.get("acme", "/v1/nothing/here").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no-route"))
    );
    let (status, _) = server.get("acme", "/v1/runs/no-such-run").await;
    assert_eq!(status, 404);
    let run = server.execute("acme", "calc").await;
    let (status, _) = Server::send(
        server
            .request(
                "acme",
                reqwest::Method::GET,
                &format!("/v1/runs/{run}/events"),
            )
            .header("Last-Event-ID", "yesterday"),
    )
    .await;
    assert_eq!(status, 400);
    let key = "k".repeat(300);
    let (status, _) = Server::send(
        server
            .request("acme", reqwest::Method::POST, "/v1/dags/calc/execute")
            .header("Idempotency-Key", key),
    )
    .await;
    assert_eq!(status, 400);
    // Still serving.
    let (status, _) = server.get("acme", "/v1/dags").await;
    assert_eq!(status, 200);
    assert!(!server.log(1).contains("panicked"), "{}", server.log(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_its_run_without_redoing_finished_tasks() {
    let scratch = Scratch::new();
    let mut server = Server::start(BIN, &scratch, &[]);
    server.put_dag("acme", "chain", CHAIN).await;
    let run = server.execute("acme", "chain").await;
    let mut sse = server.events("acme", &run, None).await;
    while let Some(e) = sse.next().await {
        if e.event == "agent.task.status.updated"
            && e.data["node"] == "slow"
            && e.data["status"] == "running"
        {
            break;
        }
    }
    drop(sse);
    server.kill9();
    server.restart();
    let view = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(view["report"]["outputs"]["last"], 111);
    let all = server.events("acme", &run, None).await.collect().await;
    assert_contiguous(&all, 1);
    let running = |node: &str| statuses(&all, node).filter(|s| *s == "running").count();
    assert_eq!(running("first"), 1, "the finished task did not run again");
    assert_eq!(running("slow"), 2, "the interrupted attempt ran again");
    let attempts: BTreeSet<u64> = all
        .iter()
        .filter(|e| e.data["node"] == "slow")
        .filter_map(|e| e.data["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, BTreeSet::from([1, 2]), "attempt numbers go on");
    assert!(server.log(2).contains("resumed"), "{}", server.log(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_attempts_finish_starts_nothing_more_and_the_restart_goes_on() {
    let scratch = Scratch::new();
    let mut server = Server::start(BIN, &scratch, &["--grace", "60s"]);
    server.put_dag("acme", "calc", &calc(500)).await;
    let run = server.execute("acme", "calc").await;
    let mut sse = server.events("acme", &run, None).await;
    let mut seen = Vec::new();
    let mut running = 0;
    while running < 2 {
        let e = sse.next().await.expect("events until both additions run");
        if e.event == "agent.task.status.updated" && e.data["status"] == "running" {
            running += 1;
        }
        seen.push(e);
    }
    server.terminate();
    // Stopping: no new runs.
    let mut refused = false;
    for _ in 0..100 {
        let (status, _) = server.post("acme", "/v1/dags/calc/execute").await;
        if status == 503 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "execute is refused while stopping");
    seen.extend(sse.collect().await);
    assert_contiguous(&seen, 1);
    // The running additions finished; the product, which had not started, did not start.
    for node in ["left", "right"] {
        assert!(statuses(&seen, node).any(|s| s == "succeeded"), "{node}");
    }
    assert!(
        !statuses(&seen, "product").any(|s| s == "running"),
        "nothing new started"
    );
    assert!(
        seen.iter().all(|e| e.event != "agent.run.completed"),
        "the run has not ended"
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        server.log(1)
    );

    // Started again, the server resumes the run from there.
    server.restart();
    let view = server
        .wait_state("acme", &run, "succeeded", Duration::from_secs(60))
        .await;
    assert_eq!(view["report"]["outputs"]["product"], 21);
    let all = server.events("acme", &run, None).await.collect().await;
    assert_contiguous(&all, 1);
    for node in ["left", "right", "product"] {
        let runs = statuses(&all, node).filter(|s| *s == "running").count();
        assert_eq!(runs, 1, "{node} ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let scratch = Scratch::new();
    let server = Server::start(BIN, &scratch, &[]);
    let (status, doc) =
        Server::send(server.http.get(format!("{}/v1/openapi.json", server.url))).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for path in [
        "/v1/dags",
        "/v1/dags/{dag_id}",
        "/v1/dags/{dag_id}/execute",
        "/internal/agent/dag/{dag_id}/execute",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/tasks/{node}",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/resume",
        "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/ws",
        "/v1/me",
        "/v1/workers",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains(path), "{path} is not described: {paths:?}");
    }
    // Without a pool there are no workers to list; attempts run here.
    let (status, workers) = server.get("acme", "/v1/workers").await;
    assert_eq!(status, 200, "{workers}");
    assert!(workers["pool"].is_null(), "{workers}");
    assert_eq!(workers["workers"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"], "bearer",
        "{}",
        doc["components"]
    );
    // The dashboard is served, self-contained.
    let page = server
        .http
        .get(&server.url)
        .send()
        .await
        .expect("the dashboard");
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("wasm-orch") && !html.contains("https://"),
        "no CDN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_prunes_runs_past_the_policys_retention() {
    let scratch = Scratch::new();
    let mut server =
        Server::start_with_policy(BIN, &scratch, "[defaults]\nretention = \"1s\"\n", &[]);
    server.put_dag("acme", "calc", &calc(0)).await;
    let run = server.execute("acme", "calc").await;
    server.events("acme", &run, None).await.collect().await;
    let (status, _) = server.get("acme", &format!("/v1/runs/{run}")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Pruned when the server starts (and every hour after).
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.get("acme", &format!("/v1/runs/{run}")).await;
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run} was not pruned; the server's logs:\n{}\n---\n{}",
            server.log(1),
            server.log(2)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The DAG is the server's, not the journal's: still there.
    let (status, _) = server.get("acme", "/v1/dags/calc").await;
    assert_eq!(status, 200);
}
