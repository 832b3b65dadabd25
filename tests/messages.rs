//! Agents that talk while they run: ALPHA and BETA negotiate by messages and either agree or
//! hand the conflict to GAMMA, a mediator that starts on its first message; a message can
//! reach only a task of its own run, and every other address is refused and audited.

use std::time::SystemTime;

use serde_json::{Value, json};
use wasm_orch::events::{AuditResource, Decision, EventKind};
use wasm_orch::{RunOptions, RunStatus, TaskStatus, Workflow};
use wasm_orch_tests::{Finished, Scratch, exited_0, root};

async fn negotiation(scratch: &Scratch, params: &[(&str, &str)]) -> Finished {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let path = root().join("examples/negotiation.toml");
    let workflow =
        Workflow::from_file_with_params(&path, &params).unwrap_or_else(|e| panic!("{e}"));
    scratch
        .run_workflow(&scratch.runtime(), &workflow, RunOptions::new())
        .await
}

/// A message sent: sender, receiver, when.
type Sent = (String, String, SystemTime);

/// The run's messages: those sent, and those received (receiver, sender).
fn messages(done: &Finished) -> (Vec<Sent>, Vec<(String, String)>) {
    let mut sent = Vec::new();
    let mut received = Vec::new();
    for e in &done.events {
        match &e.kind {
            EventKind::MessageSent(m) => {
                sent.push((m.task.node.to_string(), m.to.to_string(), e.at.0))
            }
            EventKind::MessageReceived(m) => {
                received.push((m.task.node.to_string(), m.from.to_string()))
            }
            _ => {}
        }
    }
    (sent, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_that_do_not_agree_start_the_mediator_and_accept_its_decision() {
    let scratch = Scratch::new();
    let done = negotiation(&scratch, &[]).await;
    let report = &done.report;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let alpha = report.output("alpha").expect("alpha's output");
    let beta = report.output("beta").expect("beta's output");
    assert_eq!(alpha["agreed"], json!(25.0));
    assert_eq!(alpha, beta, "both took the same decision");
    assert_eq!(alpha["by"], "gamma");
    let gamma = report.output("gamma").expect("gamma's output");
    assert_eq!(
        gamma["between"],
        json!({ "alpha": 20.0, "beta": 30.0 }),
        "the handoff carried the last proposals"
    );

    // GAMMA started only after ALPHA's handoff reached it.
    let (sent, received) = messages(&done);
    let handoff = sent
        .iter()
        .find(|(from, to, _)| from == "alpha" && to == "gamma")
        .map(|(_, _, at)| *at)
        .expect("alpha handed off to gamma");
    assert!(done.when("gamma", TaskStatus::Running) >= handoff);
    assert!(
        !done.statuses("gamma").contains(&TaskStatus::Ready) || {
            done.when("gamma", TaskStatus::Ready) >= handoff
        }
    );
    // Four proposals each way, the handoff, and the decision to both.
    let count = |from: &str, to: &str| sent.iter().filter(|(f, t, _)| f == from && t == to).count();
    assert_eq!((count("alpha", "beta"), count("beta", "alpha")), (4, 4));
    assert_eq!((count("gamma", "alpha"), count("gamma", "beta")), (1, 1));
    assert_eq!(received.len(), sent.len(), "every message was read");

    // The counts on each agent's card, and the run's total.
    let card = |node: &str| report.task(node).and_then(|t| t.messages).expect("counts");
    assert_eq!((card("alpha").sent, card("alpha").received), (5, 5));
    assert_eq!((card("beta").sent, card("beta").received), (4, 5));
    assert_eq!((card("gamma").sent, card("gamma").received), (2, 1));
    assert_eq!(report.metrics.total_messages, 11);
    assert_eq!(sent.len(), 11);

    // The journal holds the same messages as the stream.
    let journaled = scratch
        .runtime()
        .run_events(&report.run_id, 0, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("the journal reads back: {e}"));
    let names = |events: &[std::sync::Arc<wasm_orch::events::Event>]| -> Vec<&'static str> {
        events
            .iter()
            .map(|e| e.kind.name())
            .filter(|n| n.starts_with("agent.message"))
            .collect()
    };
    assert_eq!(names(&journaled), names(&done.events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_that_meet_agree_alone_and_the_mediator_is_not_needed() {
    let scratch = Scratch::new();
    let done = negotiation(&scratch, &[("alpha_limit", "30"), ("beta_limit", "20")]).await;
    let report = &done.report;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    let alpha = report.output("alpha").expect("alpha's output");
    assert_eq!(
        alpha,
        json!({ "agreed": 25.0, "by": "negotiation", "rounds": 4 })
    );
    assert_eq!(report.output("beta"), Some(alpha));
    assert_eq!(done.status("gamma"), TaskStatus::Skipped);
    let error = report
        .task("gamma")
        .and_then(|t| t.error.clone())
        .expect("why");
    assert_eq!(error.kind.as_str(), "not-needed");
    assert!(
        !done.statuses("gamma").contains(&TaskStatus::Running),
        "gamma never started"
    );
    assert_eq!(report.metrics.total_messages, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_another_run_or_tenant_is_refused_and_audited() {
    let scratch = Scratch::new();
    let runtime = scratch.runtime();
    // Alice's run: a mediator that waits for a handoff.
    let listener = scratch.workflow(
        "listener.toml",
        "[workflow]\nname = \"listener\"\ntenant = \"alice\"\n\
         [agents.negotiator]\ncomponent = \"{guests}/negotiator.wasm\"\nworkdir = false\ntimeout = \"20s\"\n\
         [[tasks]]\nid = \"target\"\nagent = \"negotiator\"\nwith = { role = \"mediator\", wait_ms = 1500 }\n",
    );
    let listener = Workflow::from_file(&listener).unwrap_or_else(|e| panic!("{e}"));
    let alice = runtime
        .start(&listener, RunOptions::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let alice_run = alice.id().to_owned();
    // Mallory's run, at the same time, aims at alice's task every way it can name it.
    let addresses = [
        "target".to_owned(),
        format!("{alice_run}/target"),
        format!("runs/{alice_run}/target"),
        "tenants/alice/target".to_owned(),
        format!("tenants/alice/runs/{alice_run}/target"),
        "../target".to_owned(),
        "x\u{1b}[2J".to_owned(),
        "a".repeat(100_000),
    ];
    let to = serde_json::to_string(&addresses).expect("json");
    let prober = scratch.workflow(
        "prober.toml",
        &format!(
            "[workflow]\nname = \"prober\"\ntenant = \"mallory\"\n\
             [agents.negotiator]\ncomponent = \"{{guests}}/negotiator.wasm\"\nworkdir = false\n\
             [[tasks]]\nid = \"probe\"\nagent = \"negotiator\"\nwith = {{ role = \"probe\", to = {to} }}\n"
        ),
    );
    let prober = Workflow::from_file(&prober).unwrap_or_else(|e| panic!("{e}"));
    let mallory = scratch
        .run_workflow(&runtime, &prober, RunOptions::new())
        .await;
    let tried: Value = mallory.report.output("probe").expect("the probe's output");
    let tried = tried.as_object().expect("an object");
    assert_eq!(tried.len(), addresses.len());
    for (address, result) in tried {
        let why = result["refused"]
            .as_str()
            .unwrap_or_else(|| panic!("a message to {:.80} was not refused: {result}", address));
        assert!(why.contains("not a task of this run"), "{why}");
        assert!(
            why.len() < 400,
            "the refusal is bounded: {} bytes",
            why.len()
        );
        assert!(
            !why.contains('\u{1b}'),
            "no escape sequence is echoed: {why:?}"
        );
    }
    let denied: Vec<_> = mallory
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Audit(a) if a.resource == AuditResource::Message => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        denied.len(),
        addresses.len(),
        "every refusal is on the record"
    );
    assert!(
        denied
            .iter()
            .all(|a| a.decision == Decision::Denied && a.tenant == "mallory")
    );
    let card = mallory
        .report
        .task("probe")
        .and_then(|t| t.messages)
        .expect("counts");
    assert_eq!((card.sent, card.refused), (0, addresses.len() as u64));

    // Nothing reached alice's task: it waited for its handoff in vain.
    let report = alice.wait().await.expect("alice's run ends");
    let target = report.task("target").expect("target");
    assert_eq!(target.status, TaskStatus::Failed);
    let message = target
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("no message came"), "{message}");
    assert_eq!(report.metrics.total_messages, 0);
}

#[test]
fn nothing_may_wait_for_a_task_that_starts_on_a_message() {
    let scratch = Scratch::new();
    for (tasks, expected) in [
        (
            "[[tasks]]\nid = \"m\"\nagent = \"n\"\nstart = \"on-message\"\n\
             [[tasks]]\nid = \"after\"\nagent = \"n\"\ndepends_on = [\"m\"]\n",
            "depends on `m`, which starts on a message",
        ),
        (
            "[[tasks]]\nid = \"first\"\nagent = \"n\"\n\
             [[tasks]]\nid = \"m\"\nagent = \"n\"\nstart = \"on-message\"\ndepends_on = [\"first\"]\n",
            "starts on a message, so it cannot also wait",
        ),
        (
            "[[tasks]]\nid = \"m\"\nagent = \"n\"\nstart = \"whenever\"\n",
            "on-message",
        ),
    ] {
        let path = scratch.workflow(
            "bad.toml",
            &format!(
                "[workflow]\nname = \"bad\"\n[agents.n]\ncomponent = \"{{guests}}/negotiator.wasm\"\n{tasks}"
            ),
        );
        let error = Workflow::from_file(&path).expect_err("refused").to_string();
        assert!(error.contains(expected), "{error}");
        assert!(
            error.contains("bad.toml"),
            "the error names the file: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_sets_the_message_limits() {
    let scratch = Scratch::new();
    let done = scratch
        .run(
            "[workflow]\nname = \"chatty\"\nmessages = { max_per_task = 3, max_bytes = \"1KiB\" }\n\
             [agents.n]\ncomponent = \"{guests}/negotiator.wasm\"\nworkdir = false\ntimeout = \"20s\"\n\
             [[tasks]]\nid = \"ping\"\nagent = \"n\"\nwith = { role = \"ping\", peer = \"pong\", count = 5 }\n\
             [[tasks]]\nid = \"pong\"\nagent = \"n\"\nwith = { role = \"pong\", wait_ms = 3000 }\n",
        )
        .await;
    assert_eq!(done.status("ping"), TaskStatus::Failed);
    let error = done.error("ping");
    assert!(
        error.contains("has sent the 3 messages a task may send"),
        "{error}"
    );
    let card = done
        .report
        .task("ping")
        .and_then(|t| t.messages)
        .expect("counts");
    assert_eq!((card.sent, card.refused), (3, 1));
    let path = scratch.workflow(
        "bad.toml",
        "[workflow]\nname = \"bad\"\nmessages = { per_second = 0, max_bytes = \"1GiB\" }\n\
         [agents.n]\ncomponent = \"{guests}/negotiator.wasm\"\n[[tasks]]\nid = \"t\"\nagent = \"n\"\n",
    );
    let error = Workflow::from_file(&path).expect_err("refused").to_string();
    assert!(error.contains("per_second must be between 1"), "{error}");
    assert!(error.contains("at most 16MiB"), "{error}");
}

/// A run killed while a task was taking its messages resumes with that task's inbox as the
/// journal left it: the messages its interrupted attempt had taken come again (the attempt's
/// work was lost with it), the rest are still there, in their order, and the senders, which
/// had succeeded, do not run again.
#[test]
fn a_resumed_run_finds_its_inboxes_as_they_were() {
    let scratch = Scratch::new();
    let flow = scratch.workflow(
        "mail.toml",
        "[workflow]\nname = \"mail\"\n\
         [agents.talk]\ncomponent = \"{guests}/negotiator.wasm\"\nworkdir = false\ntools = [\"sleep\"]\ntimeout = \"60s\"\n\
         [[tasks]]\nid = \"alpha\"\nagent = \"talk\"\nwith = { role = \"probe\", to = [\"collector\"] }\n\
         [[tasks]]\nid = \"beta\"\nagent = \"talk\"\nwith = { role = \"probe\", to = [\"collector\"] }\n\
         [[tasks]]\nid = \"gamma\"\nagent = \"talk\"\nwith = { role = \"probe\", to = [\"collector\"] }\n\
         [[tasks]]\nid = \"collector\"\nagent = \"talk\"\n\
         with = { role = \"collect\", count = 3, think_ms = 1500, wait_ms = 3000 }\n",
    );
    let journal = |scratch: &Scratch| -> Vec<Value> {
        scratch
            .journal("mail-1")
            .iter()
            .map(|e| serde_json::to_value(&**e).expect("an event is JSON"))
            .collect()
    };
    let of = |events: &[Value], event: &str, node: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["event"] == event && e["node"] == node)
            .cloned()
            .collect()
    };
    let mut child = wasm_orch_tests::cli!();
    scratch.dirs(
        child
            .args(["run", "--plain", "--run-id", "mail-1"])
            .arg(&flow),
    );
    let mut child = child
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    // Killed (SIGKILL) once the collector has taken its first message, while it thinks.
    let waited = std::time::Instant::now();
    loop {
        let events = journal(&scratch);
        if !of(&events, "agent.message.received", "collector").is_empty() {
            break;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(120)
                && matches!(child.try_wait(), Ok(None)),
            "the collector took no message before the run ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let before = journal(&scratch);
    let sent: Vec<String> = before
        .iter()
        .filter(|e| e["event"] == "agent.message.sent" && e["to"] == "collector")
        .map(|e| e["node"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sent.len(), 3, "every sender had sent before the kill");
    let taken_before = of(&before, "agent.message.received", "collector").len();
    assert!(
        of(&before, "agent.task.status.updated", "collector")
            .iter()
            .all(|e| e["status"] != "succeeded"),
        "the kill came while the collector ran"
    );

    let mut resume = wasm_orch_tests::cli!();
    scratch.dirs(resume.args(["resume", "--plain", "mail-1"]));
    let out = resume.output().expect("resumes");
    exited_0(&out);
    let after = journal(&scratch);
    // The collector's second attempt took the three messages, in the order they came.
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(
            scratch
                .state_dir()
                .join("tenants/default/runs/mail-1/results.json"),
        )
        .expect("results"),
    )
    .expect("json");
    let collector = report["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["node"] == "collector"))
        .expect("the collector's results");
    let got: Vec<&str> = collector["output"]["got"]
        .as_array()
        .expect("what it got")
        .iter()
        .map(|m| m["from"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(got, sent, "the three messages, once each, in their order");
    let attempts: Vec<u64> = of(&after, "agent.task.status.updated", "collector")
        .iter()
        .filter(|e| e["status"] == "running")
        .filter_map(|e| e["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, [1, 2], "the interrupted attempt, then one more");
    for sender in ["alpha", "beta", "gamma"] {
        let runs = of(&after, "agent.task.status.updated", sender)
            .iter()
            .filter(|e| e["status"] == "running")
            .count();
        assert_eq!(runs, 1, "`{sender}` had succeeded and did not run again");
    }
    // Its counts go on over the resume: every receipt the journal holds.
    assert_eq!(collector["messages"]["received"], json!(taken_before + 3));
    assert_eq!(collector["messages"]["unread"], json!(0));
    assert_eq!(
        of(&after, "agent.message.received", "collector").len(),
        taken_before + 3
    );
}
