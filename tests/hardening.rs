//! Hardening: each way a hostile guest, file or tenant once got past the host, tried again and
//! held (the outcome, the message, and where it matters the host's peak memory).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasm_orch::policy::Policy;
use wasm_orch::{Error, RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, cli, guest, shared_cache};

/// Runs a command to its end; returns its exit code, stdout, stderr and peak resident memory
/// in MiB (`wait4`'s `ru_maxrss` of that one child).
fn run_measured(cmd: &mut Command) -> (Option<i32>, String, String, f64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let mut stderr = Vec::new();
    let _ = err.read_to_end(&mut stderr);
    let stdout = reader.join().unwrap_or_default();
    let pid = i32::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: `rusage` is plain data the kernel fills in; `pid` is our own child, waited for
    // once (std's `Child` is never waited on after this).
    #[allow(unsafe_code)]
    let (code, maxrss) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        (code, usage.ru_maxrss)
    };
    std::mem::forget(child);
    (
        code,
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
        maxrss as f64 / 1024.0,
    )
}

fn hostile_flow(name: &str, with: &str, tasks: usize, extra: &str) -> String {
    let mut toml = format!(
        "[workflow]\nname = \"{name}\"\nmax_concurrency = 2\n{extra}\n[agents.hostile]\n\
         component = \"{{guests}}/hostile.wasm\"\ntools = [\"sleep\"]\nmemory = \"512MiB\"\n"
    );
    for i in 0..tasks {
        toml.push_str(&format!(
            "[[tasks]]\nid = \"h{i}\"\nagent = \"hostile\"\nwith = {with}\n"
        ));
    }
    toml
}

#[test]
fn a_bare_workflow_name_confines_inputs_and_splits_and_never_reaches_the_runtimes_files() {
    let scratch = Scratch::new();
    let root = scratch.path();
    // Another tenant's secret and store, beside the workflow file, and a file outside.
    std::fs::create_dir_all(root.join("secrets/acme")).expect("mkdir");
    std::fs::write(root.join("secrets/acme/api-token"), "acme-secret").expect("write");
    std::fs::create_dir_all(root.join("state/tenants/acme")).expect("mkdir");
    std::fs::write(root.join("state/tenants/acme/kv.json"), "{}").expect("write");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("book.txt"), "far away words").expect("write");
    let attempt = |name: &str, task: &str| {
        let flow = format!(
            "[workflow]\nname = \"{name}\"\ntenant = \"trial\"\n[agents.add]\n\
             component = \"{}\"\n[[tasks]]\nid = \"t\"\nagent = \"add\"\n{task}\n",
            guest("add").display()
        );
        std::fs::write(root.join("flow.toml"), flow).expect("write");
        cli!()
            .current_dir(root)
            .args(["run", "flow.toml", "--plain", "--tenant", "trial"])
            .args(["--state-dir", "state", "--secrets-dir", "secrets"])
            .arg("--cache-dir")
            .arg(shared_cache())
            .output()
            .expect("runs")
    };
    let far = outside.path().join("book.txt");
    for (task, why) in [
        ("inputs = [\"secrets/acme/api-token\"]", "secrets directory"),
        ("inputs = [\"secrets\"]", "secrets directory"),
        (
            "inputs = [\"state/tenants/acme/kv.json\"]",
            "state directory",
        ),
        (
            &format!("inputs = [\"{}\"]", far.display()) as &str,
            "outside the workflow's directory",
        ),
        (
            &format!("split = {{ file = \"{}\", parts = 2 }}", far.display()) as &str,
            "outside the workflow's directory",
        ),
    ] {
        let out = attempt("confined", task);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{task}: {stderr}");
        assert!(stderr.contains(why), "{task}: {stderr}");
        assert!(stderr.contains("flow.toml"), "names the file: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_text_is_shown_escaped_and_kept_visible_in_json() {
    let scratch = Scratch::new();
    let path = scratch.workflow(
        "nasty.toml",
        &hostile_flow("nasty", "{ mode = \"escapes\" }", 1, ""),
    );
    let results = scratch.path().join("results.json");
    let out = scratch
        .dirs(
            cli!()
                .args(["run", "--plain", "-v"])
                .arg(&path)
                .arg("--output")
                .arg(&results),
        )
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "the task fails");
    // Nothing the guest wrote reaches the terminal as a control character...
    let stderr = String::from_utf8_lossy(&out.stderr);
    let guest_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("pwned")).collect();
    assert!(
        guest_lines.len() >= 3,
        "progress, log and error are shown: {stderr}"
    );
    for line in &guest_lines {
        assert!(
            !line
                .chars()
                .any(|c| c.is_control() && c != '\t' && c != '\x1b')
                && !line.contains("\x1b]")
                && !line.contains("\x1b[2J"),
            "a raw control sequence: {line:?}"
        );
    }
    assert!(
        guest_lines.iter().any(|l| l.contains("\\x1b]0;pwned\\x07")),
        "shown visibly: {guest_lines:?}"
    );
    // ... and the JSON files keep it, escaped.
    let text = std::fs::read_to_string(&results).expect("results");
    assert!(!text.contains('\x1b'));
    let report: Value = serde_json::from_str(&text).expect("json");
    let message = report["tasks"][0]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.contains("\x1b]52;c;"),
        "the message as it was: {message:?}"
    );

    // `inspect` shows what the component says of itself, inert too.
    let inspected = scratch
        .dirs(cli!().arg("inspect").arg(guest("hostile")))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&inspected.stdout);
    assert!(stdout.contains("Hostile on purpose \\x1b[2J"), "{stdout}");
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
}

#[test]
fn huge_error_messages_are_cut_and_the_hosts_memory_stays_bounded() {
    let scratch = Scratch::new();
    // Eight tasks, two at a time, each failing with 100 MiB of error message (and, with
    // `on_upstream_failure = "run"`, a dependent given all eight failures).
    let mut flow = hostile_flow(
        "bombs",
        "{ mode = \"huge-error\", bytes = 104857600 }",
        8,
        "",
    );
    flow.push_str(
        "[[tasks]]\nid = \"after\"\nagent = \"hostile\"\nwith = { mode = \"chatty\" }\n\
         depends_on = [\"h0\", \"h1\", \"h2\", \"h3\", \"h4\", \"h5\", \"h6\", \"h7\"]\n\
         on_upstream_failure = \"run\"\n",
    );
    let path = scratch.workflow("bombs.toml", &flow);
    let results = scratch.path().join("results.json");
    let (code, _, stderr, peak) = run_measured(
        scratch.dirs(
            cli!()
                .args(["run", "--plain"])
                .arg(&path)
                .arg("--output")
                .arg(&results),
        ),
    );
    assert_eq!(code, Some(1), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&results).expect("results")).expect("json");
    for i in 0..8 {
        let task = &report["tasks"][i];
        assert_eq!(task["status"], "failed");
        let message = task["error"]["message"].as_str().unwrap_or("");
        assert!(message.len() < 8 << 10, "cut: {} bytes", message.len());
        assert!(
            message.ends_with("(104857600 bytes in all)"),
            "says how much: {}",
            &message[message.len().saturating_sub(40)..]
        );
    }
    assert_eq!(
        report["tasks"][8]["status"], "succeeded",
        "the dependent ran on the failures"
    );
    let size = std::fs::metadata(&results)
        .map(|m| m.len())
        .unwrap_or(u64::MAX);
    assert!(size < 1 << 20, "results of {size} bytes");
    // Each guest holds its 100 MiB string (and wasmtime copies it out once to lift it): two
    // at a time, that is about 400 MiB; the host keeps 4 KiB of each. Before the fix the host
    // held 3.5 GB.
    assert!(peak < 1024.0, "peak RSS {peak:.0} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tool_inputs_keys_values_and_secret_names_are_refused_before_they_are_read() {
    let scratch = Scratch::new();
    let flow = format!(
        "{}[[tasks]]\nid = \"names\"\nagent = \"hostile\"\nwith = {{ mode = \"huge-names\", bytes = 20971520 }}\n",
        hostile_flow(
            "big",
            "{ mode = \"huge-tool-input\", bytes = 104857600 }",
            1,
            ""
        )
    );
    let done = scratch.run(&flow).await;
    let tool = done.report.output("h0").expect("an answer");
    assert!(
        tool["tool"]
            .as_str()
            .is_some_and(|t| t.contains("InvalidInput") && t.contains("a tool call may pass")),
        "{tool}"
    );
    let names = done
        .report
        .output("names")
        .unwrap_or_else(|| panic!("{:?}: {}", done.status("names"), done.error("names")));
    for what in ["key", "value", "secret"] {
        let answer = names[what].as_str().unwrap_or("");
        assert!(answer.starts_with("Err"), "{what}: {answer}");
        // The host's refusal does not echo what it refused.
        let length = names[format!("{what}_len")].as_u64().unwrap_or(u64::MAX);
        assert!(length < 1000, "{what}: an answer of {length} bytes");
    }
    for e in &done.events {
        if let wasm_orch::events::EventKind::Audit(a) = &e.kind {
            assert!(
                a.action.len() <= 300,
                "audit action of {} bytes",
                a.action.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_the_policy_does_not_name_gets_nothing_but_a_little_compute() {
    let scratch = Scratch::new();
    let policy_file = scratch.path().join("policy.toml");
    let runtime = |text: &str| {
        std::fs::write(&policy_file, text).expect("write");
        Runtime::builder()
            .state_dir(scratch.state_dir())
            .cache_dir(shared_cache())
            .policy(Policy::from_file(&policy_file).expect("policy"))
            .build()
            .expect("runtime")
    };
    let flow = |name: &str| {
        format!(
            "[workflow]\nname = \"{name}\"\ntenant = \"stranger\"\nmax_concurrency = 8\n\
             [agents.wait]\ncomponent = \"{{guests}}/wait.wasm\"\ntools = [\"sleep\"]\n\
             [agents.burn]\ncomponent = \"{{guests}}/burn.wasm\"\nfuel = 100_000_000_000\n\
             [[tasks]]\nid = \"nap\"\nagent = \"wait\"\nwith = {{ ms = 10 }}\n\
             [[tasks]]\nid = \"hog\"\nagent = \"burn\"\nwith = {{ iterations = 1000000000 }}\n"
        )
    };
    let closed = runtime("[tenants.acme]\nmax_concurrency = 8\n");
    let wf = Workflow::from_file(scratch.workflow("s.toml", &flow("s"))).expect("valid");
    let done = scratch.run_workflow(&closed, &wf, RunOptions::new()).await;
    // No tools: the wait agent's sleep is denied.
    assert_eq!(
        done.status("nap"),
        TaskStatus::Failed,
        "{}",
        done.error("nap")
    );
    assert!(
        done.error("nap").contains("may not use tool `sleep`"),
        "{}",
        done.error("nap")
    );
    // Bounded compute: 10 G fuel in all, whatever the agent asks.
    assert_eq!(
        done.status("hog"),
        TaskStatus::BudgetExhausted,
        "{}",
        done.error("hog")
    );
    assert!(done.report.metrics.fuel.run <= 10_000_000_000);
    let note = done.events.iter().find_map(|e| match &e.kind {
        wasm_orch::events::EventKind::PlanCreated(p) => p.notes.first().cloned(),
        _ => None,
    });
    assert!(
        note.as_deref()
            .is_some_and(|n| n.contains("not named in the policy") && n.contains("policy.toml")),
        "{note:?}"
    );

    // An explicit default is what strangers get instead.
    let open = runtime("[tenants.acme]\n[tenants.\"*\"]\ntools = [\"sleep\"]\n");
    let wf = Workflow::from_file(
        scratch.workflow("o.toml", &flow("o").replace("1000000000 }", "1000 }")),
    )
    .expect("valid");
    let done = scratch.run_workflow(&open, &wf, RunOptions::new()).await;
    assert_eq!(
        done.status("nap"),
        TaskStatus::Succeeded,
        "{}",
        done.error("nap")
    );
    assert_eq!(
        done.status("hog"),
        TaskStatus::Succeeded,
        "{}",
        done.error("hog")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_file_named_as_a_component_is_refused_without_echoing_it() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.path().join("notes.wasm"),
        "TOP-SECRET first line\nmore\n",
    )
    .expect("write");
    let flow = "[workflow]\nname = \"t\"\n[agents.a]\ncomponent = \"notes.wasm\"\n[[tasks]]\nid = \"x\"\nagent = \"a\"\n";
    let wf = Workflow::from_file(scratch.workflow("t.toml", flow)).expect("valid file");
    let err = scratch
        .runtime()
        .check(&wf)
        .await
        .expect_err("not a component");
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidWorkflow(_)), "{text}");
    assert!(text.contains("not a WebAssembly binary"), "{text}");
    assert!(!text.contains("TOP-SECRET"), "{text}");
    // And `inspect` does not wait on a pipe nor read a device.
    let fifo = scratch.path().join("pipe.wasm");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success());
    if made.unwrap_or(false) {
        let started = Instant::now();
        let out = scratch
            .dirs(cli!().arg("inspect").arg(&fifo))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
        // A read of the pipe would block until someone wrote to it: never.
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_debt_is_waited_out_within_the_attempts_time_limit() {
    let scratch = Scratch::new();
    // 1 M fuel per second, a burst of 100 k: a guest burns some 10 M between two epoch
    // ticks, which is ten seconds of debt each time. Its time limit is 2 s.
    let policy = Policy::parse(
        "[tenants.slow]\nfuel_rate = 1_000_000\nfuel_burst = 100_000\n",
        "policy.toml",
    )
    .expect("policy");
    let runtime = Runtime::builder()
        .state_dir(scratch.state_dir())
        .cache_dir(shared_cache())
        .policy(policy)
        .build()
        .expect("runtime");
    let flow = "[workflow]\nname = \"debt\"\ntenant = \"slow\"\nmax_concurrency = 1\n\
        [agents.burn]\ncomponent = \"{guests}/burn.wasm\"\ntimeout = \"2s\"\nworkdir = false\n\
        [[tasks]]\nid = \"first\"\nagent = \"burn\"\nwith = { iterations = 20000000 }\n\
        [[tasks]]\nid = \"second\"\nagent = \"burn\"\nwith = { iterations = 20000000 }\n";
    let wf = Workflow::from_file(scratch.workflow("debt.toml", flow)).expect("valid");
    let started = Instant::now();
    let done = scratch.run_workflow(&runtime, &wf, RunOptions::new()).await;
    let took = started.elapsed();
    for task in ["first", "second"] {
        assert_eq!(
            done.status(task),
            TaskStatus::TimedOut,
            "{task}: {}",
            done.error(task)
        );
    }
    // Two attempts of at most 2 s each. Paying each debt in full after (and before) them
    // took over 30 s; 15 s leaves a loaded machine 11 s of slack.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn verbose_runs_show_guest_logs() {
    let scratch = Scratch::new();
    let path = scratch.workflow(
        "chatty.toml",
        &hostile_flow("chatty", "{ mode = \"chatty\" }", 1, ""),
    );
    let quiet = scratch
        .dirs(cli!().args(["run", "--plain"]).arg(&path))
        .output()
        .expect("runs");
    let verbose = scratch
        .dirs(cli!().args(["run", "--plain", "-v"]).arg(&path))
        .output()
        .expect("runs");
    assert_eq!(quiet.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("a chatty line"));
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert!(stderr.contains("a chatty line"), "{stderr}");
    assert!(
        stderr.contains("allowed"),
        "allowed audit records too: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_share_the_cores_evenly() {
    let scratch = Scratch::new();
    // Six guests that never stop, on two cores, for their 3 s time limit.
    let tasks: String = (0..6)
        .map(|i| format!("[[tasks]]\nid = \"s{i}\"\nagent = \"spin\"\n"))
        .collect();
    let flow = format!(
        "[workflow]\nname = \"fair\"\nmax_concurrency = 6\n[agents.spin]\n\
         component = \"{{guests}}/spin.wasm\"\nfuel = 1_000_000_000_000_000\ntimeout = \"3s\"\n\
         workdir = false\n{tasks}"
    );
    let done = scratch.run(&flow).await;
    let fuel: Vec<u64> = done
        .report
        .tasks
        .iter()
        .map(|t| t.fuel_used.unwrap_or(0))
        .collect();
    let (most, least) = (
        fuel.iter().copied().max().unwrap_or(0),
        fuel.iter().copied().min().unwrap_or(0),
    );
    // Before the fix one guest kept a core while five shared the other: 5:1. Round-robin at
    // every 10 ms tick gives each about a third of a core; 2:1 is slack for a loaded machine.
    assert!(least > 0 && most <= least * 2, "fuel per guest: {fuel:?}");
}

#[test]
fn validate_refuses_a_component_whose_run_has_the_wrong_signature() {
    let scratch = Scratch::new();
    let flow = "[workflow]\nname = \"m\"\n[agents.misfit]\ncomponent = \"{guests}/misfit.wasm\"\n\
                [[tasks]]\nid = \"x\"\nagent = \"misfit\"\n";
    let path = scratch.workflow("m.toml", flow);
    let out = scratch
        .dirs(cli!().arg("validate").arg(&path))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("do not have the types of `wasm-orch:agent/sub-agent`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("m.toml"),
        "names the file and line: {stderr}"
    );
}
