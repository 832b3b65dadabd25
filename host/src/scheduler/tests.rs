//! The scheduler with a fake executor: concurrency, mutexes, priorities, all-settled failure
//! handling, cancellation and upstream outputs, without any Wasm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::bus::Timestamp;

/// What the fake does with a task: sleep this long, then end with this status.
#[derive(Clone, Copy)]
struct Plan {
    sleep: Duration,
    status: TaskStatus,
}

/// Runs no Wasm: sleeps, records what ran when, and ends each task as planned. Outputs the
/// task's node id followed by its upstream outputs, so data flow can be checked.
#[derive(Default)]
struct Fake {
    plans: HashMap<String, Plan>,
    default_sleep: Duration,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Per mutex name: how many of its tasks run now, and the most ever at once.
    mutexes: Mutex<HashMap<String, (usize, usize)>>,
    mutex_of: HashMap<String, String>,
    starts: Mutex<Vec<String>>,
}

impl Fake {
    fn new(sleep_ms: u64) -> Self {
        Self {
            default_sleep: Duration::from_millis(sleep_ms),
            ..Self::default()
        }
    }

    fn plan(mut self, node: &str, sleep_ms: u64, status: TaskStatus) -> Self {
        self.plans.insert(
            node.to_owned(),
            Plan {
                sleep: Duration::from_millis(sleep_ms),
                status,
            },
        );
        self
    }

    fn starts(&self) -> Vec<String> {
        self.starts.lock().expect("lock").clone()
    }
}

impl Executor for Fake {
    async fn execute(&self, job: Job) -> Attempt {
        let node = job.task_ref.node.clone();
        let plan = self.plans.get(&node).copied().unwrap_or(Plan {
            sleep: self.default_sleep,
            status: TaskStatus::Succeeded,
        });
        self.starts.lock().expect("lock").push(node.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if let Some(m) = self.mutex_of.get(&node) {
            let mut ms = self.mutexes.lock().expect("lock");
            let entry = ms.entry(m.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
        let cancelled = tokio::select! {
            () = tokio::time::sleep(plan.sleep) => false,
            () = job.cancel.cancelled() => true,
        };
        if let Some(m) = self.mutex_of.get(&node) {
            self.mutexes
                .lock()
                .expect("lock")
                .entry(m.clone())
                .or_default()
                .0 -= 1;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        let upstream: Vec<String> = job
            .upstream
            .iter()
            .map(|(_, o)| o.get().to_owned())
            .collect();
        let output = serde_json::json!([node, upstream]).to_string();
        let status = if cancelled {
            TaskStatus::Cancelled
        } else {
            plan.status
        };
        Attempt {
            status,
            output: (status == TaskStatus::Succeeded)
                .then(|| Arc::from(RawValue::from_string(output).expect("json"))),
            error: (status != TaskStatus::Succeeded)
                .then(|| TaskError::new(ErrorKind::Failed, "planned")),
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
            latency: plan.sleep,
            fuel_used: 0,
            memory_peak: 0,
        }
    }
}

fn workflow(body: &str) -> Workflow {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.wasm"), b"").expect("write");
    let text = format!("[workflow]\nname = \"w\"\n[agents.a]\ncomponent = \"a.wasm\"\n{body}");
    Workflow::parse(&text, dir.path().join("w.toml"), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn tasks(n: usize, extra: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| format!("[[tasks]]\nid = \"t{i}\"\nagent = \"a\"\n{}\n", extra(i)))
        .collect()
}

async fn run_with(wf: &Workflow, max: usize, fake: Arc<Fake>) -> (Vec<TaskOutcome>, Arc<Bus>) {
    let bus = Bus::new("test");
    let outcomes = run(wf, max, fake, &bus, &CancellationToken::new()).await;
    bus.close();
    (outcomes, bus)
}

fn statuses(outcomes: &[TaskOutcome]) -> Vec<TaskStatus> {
    outcomes.iter().map(|o| o.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ready_task_runs_at_once_up_to_max_concurrency() {
    let wf = workflow(&tasks(12, |_| String::new()));
    let fake = Arc::new(Fake::new(50));
    let (outcomes, _) = run_with(&wf, 12, fake.clone()).await;
    assert!(outcomes.iter().all(|o| o.status == TaskStatus::Succeeded));
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 12);

    let fake = Arc::new(Fake::new(20));
    run_with(&wf, 3, fake.clone()).await;
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_one_mutex_never_overlap_while_others_run() {
    let wf = workflow(&tasks(8, |i| {
        if i < 4 {
            "mutex = \"db\"".into()
        } else {
            String::new()
        }
    }));
    let mut fake = Fake::new(30);
    fake.mutex_of = (0..4).map(|i| (format!("t{i}"), "db".to_owned())).collect();
    let fake = Arc::new(fake);
    let (outcomes, _) = run_with(&wf, 8, fake.clone()).await;
    assert!(outcomes.iter().all(|o| o.status == TaskStatus::Succeeded));
    let most = fake.mutexes.lock().expect("lock")["db"].1;
    assert_eq!(most, 1, "two `db` tasks overlapped");
    assert!(
        fake.max_running.load(Ordering::SeqCst) >= 2,
        "the others did not run alongside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_then_the_longer_critical_path() {
    // t0 is a short branch; t1 heads a chain of three; t2 has the highest priority.
    let wf = workflow(
        r#"
[[tasks]]
id = "t0"
agent = "a"
[[tasks]]
id = "t1"
agent = "a"
[[tasks]]
id = "t1b"
agent = "a"
depends_on = ["t1"]
[[tasks]]
id = "t1c"
agent = "a"
depends_on = ["t1b"]
[[tasks]]
id = "t2"
agent = "a"
priority = 10
"#,
    );
    let fake = Arc::new(Fake::new(1));
    run_with(&wf, 1, fake.clone()).await;
    // After t1, its successor t1b has the longest chain left, so it goes before t0; then t0
    // and t1c tie (priority 0, one task left each) and file order decides.
    assert_eq!(fake.starts(), ["t2", "t1", "t1b", "t0", "t1c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_its_dependents_and_independent_branches_run_on() {
    let wf = workflow(
        r#"
[[tasks]]
id = "bad"
agent = "a"
[[tasks]]
id = "child"
agent = "a"
depends_on = ["bad"]
[[tasks]]
id = "grandchild"
agent = "a"
depends_on = ["child", "other"]
[[tasks]]
id = "other"
agent = "a"
[[tasks]]
id = "after_other"
agent = "a"
depends_on = ["other"]
"#,
    );
    let fake = Arc::new(Fake::new(5).plan("bad", 1, TaskStatus::Trapped));
    let (outcomes, bus) = run_with(&wf, 4, fake.clone()).await;
    use TaskStatus::*;
    assert_eq!(
        statuses(&outcomes),
        [Trapped, Skipped, Skipped, Succeeded, Succeeded]
    );
    let error = outcomes[2].error.as_ref().expect("a reason");
    assert_eq!(error.kind, ErrorKind::Dependency);
    assert!(
        error.message.contains("`bad`") && error.message.contains("trapped"),
        "{}",
        error.message
    );
    assert!(!fake.starts().contains(&"child".to_owned()));
    // Every task's last status event is its outcome.
    let mut stream = bus.subscribe();
    let mut last: HashMap<String, TaskStatus> = HashMap::new();
    while let Some(e) = stream.next().await {
        if let EventKind::TaskStatus(u) = &e.kind {
            last.insert(u.task.node.clone(), u.status);
        }
    }
    for (task, outcome) in wf.tasks.iter().zip(&outcomes) {
        assert_eq!(last[&task.id], outcome.status, "{}", task.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outputs_arrive_in_depends_on_order() {
    let wf = workflow(
        r#"
[[tasks]]
id = "x"
agent = "a"
[[tasks]]
id = "y"
agent = "a"
[[tasks]]
id = "z"
agent = "a"
depends_on = ["y", "x"]
"#,
    );
    let (outcomes, _) = run_with(&wf, 4, Arc::new(Fake::new(1))).await;
    let output = outcomes[2]
        .attempt
        .as_ref()
        .and_then(|a| a.output.clone())
        .expect("output");
    let value: serde_json::Value = serde_json::from_str(output.get()).expect("json");
    assert_eq!(
        value,
        serde_json::json!(["z", ["[\"y\",[]]", "[\"x\",[]]"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_strictly_in_order() {
    let wf = workflow(&tasks(20, |i| {
        if i > 0 {
            format!("depends_on = [\"t{}\"]", i - 1)
        } else {
            String::new()
        }
    }));
    let fake = Arc::new(Fake::new(0));
    let (outcomes, _) = run_with(&wf, 8, fake.clone()).await;
    assert!(outcomes.iter().all(|o| o.status == TaskStatus::Succeeded));
    let expected: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    assert_eq!(fake.starts(), expected);
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_ends_running_and_waiting_tasks_as_cancelled() {
    let wf = workflow(&tasks(6, |i| {
        if i >= 3 {
            format!("depends_on = [\"t{}\"]", i - 3)
        } else {
            String::new()
        }
    }));
    let fake = Arc::new(Fake::new(60_000));
    let bus = Bus::new("test");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let outcomes = run(&wf, 8, fake.clone(), &bus, &cancel).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancellation did not stop the tasks"
    );
    assert!(
        outcomes.iter().all(|o| o.status == TaskStatus::Cancelled),
        "{:?}",
        statuses(&outcomes)
    );
    assert_eq!(
        outcomes.iter().map(|o| o.attempts).collect::<Vec<_>>(),
        [1, 1, 1, 0, 0, 0]
    );
    assert_eq!(fake.starts().len(), 3, "nothing new starts after a cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_goes_pending_ready_running_then_final() {
    let wf = workflow(&tasks(3, |i| {
        if i > 0 {
            "depends_on = [\"t0\"]".into()
        } else {
            String::new()
        }
    }));
    let (_, bus) = run_with(&wf, 2, Arc::new(Fake::new(1))).await;
    let mut stream = bus.subscribe();
    let mut seen: HashMap<String, Vec<TaskStatus>> = HashMap::new();
    while let Some(e) = stream.next().await {
        if let EventKind::TaskStatus(u) = &e.kind {
            seen.entry(u.task.node.clone()).or_default().push(u.status);
        }
    }
    use TaskStatus::*;
    for node in ["t0", "t1", "t2"] {
        assert_eq!(seen[node], [Pending, Ready, Running, Succeeded], "{node}");
    }
}
