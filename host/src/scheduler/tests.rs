//! The scheduler with a fake executor: concurrency, mutexes, priorities, all-settled failure
//! handling, retries and reassignment, capability assignment, budgets, error budgets, blocked
//! tasks and cancellation, without any Wasm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;

use super::*;
use crate::model::policy::{OnBlocked, OnErrorBudget};
use crate::model::time::Timestamp;
use crate::policy::RetryOverride;
use crate::policy::TenantLimits;

/// What the fake does with a task: sleep, then end with a status.
#[derive(Clone, Copy)]
struct Behaviour {
    sleep_ms: u64,
    status: TaskStatus,
    kind: ErrorKind,
    /// Fail this many first attempts with `kind`, then succeed.
    fail_first: u32,
    /// Report progress every 20 ms while sleeping.
    progress: bool,
    /// Fail this attempt (by number) with `kind`.
    fail_on: Option<u32>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            sleep_ms: 1,
            status: TaskStatus::Succeeded,
            kind: ErrorKind::Failed,
            fail_first: 0,
            progress: false,
            fail_on: None,
        }
    }
}

/// Runs no Wasm: sleeps, records what ran when and where, and ends as told (per task, or
/// per agent for agents listed in `broken_agents`). Outputs `[node, [upstream...]]`.
#[derive(Default)]
struct Fake {
    tasks: HashMap<String, Behaviour>,
    default: Behaviour,
    broken_agents: Vec<String>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Per mutex name: how many of its tasks run now, and the most ever at once.
    mutexes: Mutex<HashMap<String, (usize, usize)>>,
    mutex_of: HashMap<String, String>,
    /// (node, agent, attempt), in start order.
    starts: Mutex<Vec<(String, String, u32)>>,
    /// Fuel each attempt reports it used.
    fuel: u64,
    /// Idempotency keys of the jobs received.
    keys: Mutex<std::collections::HashSet<String>>,
    /// What a planner task returns (by node): its plan.
    plans: HashMap<String, serde_json::Value>,
}

impl Fake {
    fn new(sleep_ms: u64) -> Self {
        Self {
            default: Behaviour {
                sleep_ms,
                ..Behaviour::default()
            },
            ..Self::default()
        }
    }

    fn task(mut self, node: &str, behaviour: Behaviour) -> Self {
        self.tasks.insert(node.to_owned(), behaviour);
        self
    }

    fn starts(&self) -> Vec<String> {
        self.starts
            .lock()
            .expect("lock")
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect()
    }

    fn agents_used(&self) -> Vec<String> {
        self.starts
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, a, _)| a.clone())
            .collect()
    }
}

impl Executor for Fake {
    async fn execute(&self, job: Job) -> Attempt {
        let node = job.task_ref.node.to_string();
        let b = self.tasks.get(&node).copied().unwrap_or(self.default);
        assert!(
            self.keys.lock().expect("lock").insert(job.key.to_string()),
            "the scheduler dispatched idempotency key {} twice",
            job.key
        );
        self.starts.lock().expect("lock").push((
            node.clone(),
            job.task_ref.agent.to_string(),
            job.task_ref.attempt,
        ));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if let Some(m) = self.mutex_of.get(&node) {
            let mut ms = self.mutexes.lock().expect("lock");
            let entry = ms.entry(m.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
        let work = async {
            let end = Instant::now() + Duration::from_millis(b.sleep_ms);
            while Instant::now() < end {
                if b.progress {
                    job.heartbeat.beat(0.5, "working");
                }
                tokio::time::sleep(Duration::from_millis(20).min(end - Instant::now())).await;
            }
        };
        let cancelled = tokio::select! {
            () = work => false,
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
            .map(|(_, o)| match o {
                UpstreamResult::Output(o) => o.get().to_owned(),
                UpstreamResult::Failed { status, .. } => format!("failed:{status}"),
            })
            .collect();
        let broken = self.broken_agents.iter().any(|a| *a == job.task_ref.agent);
        let status = if cancelled {
            TaskStatus::Cancelled
        } else if broken
            || job.task_ref.attempt <= b.fail_first
            || b.fail_on == Some(job.task_ref.attempt)
        {
            TaskStatus::Failed
        } else {
            b.status
        };
        let output = match self.plans.get(&node) {
            Some(plan) => plan.to_string(),
            None => serde_json::json!([node, upstream]).to_string(),
        };
        Attempt {
            status,
            output: (status == TaskStatus::Succeeded)
                .then(|| Arc::from(RawValue::from_string(output).expect("json"))),
            output_digest: None,
            cached_from: None,
            worker: None,
            error: (status != TaskStatus::Succeeded).then(|| TaskError::new(b.kind, "as planned")),
            started_at: Timestamp::now(),
            finished_at: Timestamp::now(),
            latency: Duration::from_millis(b.sleep_ms),
            fuel_used: self.fuel.min(job.limits.fuel),
            memory_peak: 0,
            artifacts: Vec::new(),
        }
    }
}

fn workflow(body: &str) -> Workflow {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.wasm"), b"").expect("write");
    let has_agents = body.contains("[agents.");
    let agents = if has_agents {
        ""
    } else {
        "[agents.a]\ncomponent = \"a.wasm\"\n"
    };
    let text = format!("[workflow]\nname = \"w\"\n{agents}{body}");
    Workflow::parse(&text, dir.path().join("w.toml"), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn tasks(n: usize, extra: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| format!("[[tasks]]\nid = \"t{i}\"\nagent = \"a\"\n{}\n", extra(i)))
        .collect()
}

/// Everything a test run needs besides the workflow and the fake.
struct Harness {
    governor: Governor,
    tenant_limits: TenantLimits,
    max: usize,
    budget: Budget,
    error_budget: Option<ErrorBudget>,
    stall: Option<StallPolicy>,
    retry: Option<RetryOverride>,
    cancel_after: Option<Duration>,
    drain_after: Option<Duration>,
}

impl Harness {
    fn new(max: usize) -> Self {
        Self {
            governor: Governor::new(HashMap::new(), None),
            tenant_limits: TenantLimits::default(),
            max,
            budget: Budget::default(),
            error_budget: None,
            stall: None,
            retry: None,
            cancel_after: None,
            drain_after: None,
        }
    }

    async fn run(self, wf: &Workflow, fake: Arc<Fake>) -> (Finished, Arc<Bus>) {
        let governor = Governor::new(
            HashMap::from([(wf.tenant.clone(), self.tenant_limits.clone())]),
            None,
        );
        let governor = if self.tenant_limits == TenantLimits::default() {
            self.governor
        } else {
            governor
        };
        let agents = wf
            .agents
            .iter()
            .map(|a| AgentPlan {
                name: a.name.clone(),
                key: format!("{}@test", a.name),
                limits: a.limits,
                max_concurrency: a.max_concurrency,
            })
            .collect();
        let retry = self.retry.clone();
        let stall = self.stall.clone();
        let task_plans = move |wf: &Workflow| -> Vec<TaskPlan> {
            wf.tasks
                .iter()
                .map(|t| TaskPlan {
                    retry: t
                        .target
                        .agents()
                        .iter()
                        .map(|&a| {
                            let base = retry.clone().unwrap_or_default().over(RetryPolicy {
                                backoff: Duration::from_millis(10),
                                ..RetryPolicy::default()
                            });
                            (a, t.retry.over(wf.agents[a].retry.over(base)))
                        })
                        .collect(),
                    stall: stall.clone(),
                    diagnostic_agent: None,
                })
                .collect()
        };
        let tasks = task_plans(wf);
        let plan = Plan {
            workflow: Arc::new(wf.clone()),
            run_id: "run".into(),
            max_concurrency: self.max,
            agents,
            tasks,
            error_budget: self.error_budget,
            budget: self.budget,
            started: Instant::now(),
            resumed: HashMap::new(),
            fuel_spent: 0,
        };
        let bus = Bus::new("run");
        let cancel = CancellationToken::new();
        if let Some(after) = self.cancel_after {
            let trigger = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                trigger.cancel();
            });
        }
        let drain = CancellationToken::new();
        if let Some(after) = self.drain_after {
            let trigger = drain.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                trigger.cancel();
            });
        }
        let blackboard = || serde_json::json!({});
        let grow = |_: &Workflow, grown: Workflow| {
            let tasks = task_plans(&grown);
            Ok(Growth {
                workflow: grown,
                tasks,
            })
        };
        let shared = Shared {
            grow: &grow,
            governor: &governor,
            tenant: governor.tenant(&wf.tenant),
            bus: &bus,
            blackboard: &blackboard,
            cancel: &cancel,
            drain: &drain,
            on_error_budget: &|_| {},
            ended: &|_| {},
            woken: None,
        };
        let finished = run(plan, fake, shared).await;
        bus.close();
        (finished, bus)
    }
}

fn statuses(finished: &Finished) -> Vec<TaskStatus> {
    finished.tasks.iter().map(|o| o.status).collect()
}

async fn events(bus: &Arc<Bus>) -> Vec<Arc<crate::model::events::Event>> {
    let mut stream = bus.subscribe();
    let mut all = Vec::new();
    while let Some(e) = stream.next().await {
        all.push(e);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ready_task_runs_at_once_up_to_max_concurrency() {
    let wf = workflow(&tasks(12, |_| String::new()));
    let fake = Arc::new(Fake::new(50));
    let (done, _) = Harness::new(12).run(&wf, fake.clone()).await;
    assert!(done.tasks.iter().all(|o| o.status == TaskStatus::Succeeded));
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 12);
    assert_eq!(done.meter.attempts, 12);

    let fake = Arc::new(Fake::new(20));
    Harness::new(3).run(&wf, fake.clone()).await;
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
    let (done, _) = Harness::new(8).run(&wf, fake.clone()).await;
    assert!(done.tasks.iter().all(|o| o.status == TaskStatus::Succeeded));
    let most = fake.mutexes.lock().expect("lock")["db"].1;
    assert_eq!(most, 1, "two `db` tasks overlapped");
    assert!(
        fake.max_running.load(Ordering::SeqCst) >= 2,
        "the others did not run alongside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutex_group_may_have_a_larger_capacity() {
    let wf = workflow(&format!(
        "[mutexes]\ndb = 2\n{}",
        tasks(6, |_| "mutex = \"db\"".into())
    ));
    let mut fake = Fake::new(30);
    fake.mutex_of = (0..6).map(|i| (format!("t{i}"), "db".to_owned())).collect();
    let fake = Arc::new(fake);
    Harness::new(6).run(&wf, fake.clone()).await;
    assert_eq!(fake.mutexes.lock().expect("lock")["db"].1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_then_the_longer_critical_path() {
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
    Harness::new(1).run(&wf, fake.clone()).await;
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
    let trapped = Behaviour {
        status: TaskStatus::Trapped,
        kind: ErrorKind::Trap,
        ..Behaviour::default()
    };
    let fake = Arc::new(Fake::new(5).task("bad", trapped));
    let (done, bus) = Harness::new(4).run(&wf, fake.clone()).await;
    use TaskStatus::*;
    assert_eq!(
        statuses(&done),
        [Trapped, Skipped, Skipped, Succeeded, Succeeded]
    );
    let error = done.tasks[2].error.as_ref().expect("a reason");
    assert_eq!(error.kind, ErrorKind::Dependency);
    assert!(
        error.message.contains("`bad`") && error.message.contains("trapped"),
        "{}",
        error.message
    );
    assert!(!fake.starts().contains(&"child".to_owned()));
    // Every task's last status event is its outcome.
    let mut last: HashMap<String, TaskStatus> = HashMap::new();
    for e in events(&bus).await {
        if let EventKind::TaskStatus(u) = &e.kind {
            last.insert(u.task.node.to_string(), u.status);
        }
    }
    for (task, outcome) in wf.tasks.iter().zip(&done.tasks) {
        assert_eq!(last[&task.id], outcome.status, "{}", task.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_may_run_on_a_failure_and_get_it_as_input() {
    let wf = workflow(
        r#"
[[tasks]]
id = "optional"
agent = "a"
critical = false
[[tasks]]
id = "fine"
agent = "a"
[[tasks]]
id = "report"
agent = "a"
depends_on = ["optional", "fine"]
on_upstream_failure = "run"
"#,
    );
    let failing = Behaviour {
        status: TaskStatus::Failed,
        ..Behaviour::default()
    };
    let (done, _) = Harness::new(4)
        .run(&wf, Arc::new(Fake::new(1).task("optional", failing)))
        .await;
    use TaskStatus::*;
    assert_eq!(statuses(&done), [Failed, Succeeded, Succeeded]);
    let output = done.tasks[2].attempts[0].1.output.clone().expect("output");
    let value: serde_json::Value = serde_json::from_str(output.get()).expect("json");
    assert_eq!(
        value,
        serde_json::json!(["report", ["failed:failed", "[\"fine\",[]]"]])
    );
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
    let (done, _) = Harness::new(4).run(&wf, Arc::new(Fake::new(1))).await;
    let output = done.tasks[2].attempts[0].1.output.clone().expect("output");
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
    let (done, _) = Harness::new(8).run(&wf, fake.clone()).await;
    assert!(done.tasks.iter().all(|o| o.status == TaskStatus::Succeeded));
    let expected: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    assert_eq!(fake.starts(), expected);
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_exponentially_and_stop_at_max_attempts() {
    let wf = workflow(
        r#"
[[tasks]]
id = "flaky"
agent = "a"
retry = { max_attempts = 4, backoff = "40ms", jitter = 0.0 }
[[tasks]]
id = "hopeless"
agent = "a"
retry = { max_attempts = 2, backoff = "10ms", on = ["unavailable"] }
[[tasks]]
id = "wrong"
agent = "a"
retry = { max_attempts = 5, backoff = "10ms" }
"#,
    );
    let fake = Fake::new(1)
        .task(
            "flaky",
            Behaviour {
                fail_first: 2,
                kind: ErrorKind::Unavailable,
                ..Behaviour::default()
            },
        )
        .task(
            "hopeless",
            Behaviour {
                status: TaskStatus::Failed,
                kind: ErrorKind::Unavailable,
                ..Behaviour::default()
            },
        )
        .task(
            "wrong",
            Behaviour {
                status: TaskStatus::Failed,
                kind: ErrorKind::InvalidInput,
                ..Behaviour::default()
            },
        );
    let (done, bus) = Harness::new(4).run(&wf, Arc::new(fake)).await;
    use TaskStatus::*;
    assert_eq!(statuses(&done), [Succeeded, Failed, Failed]);
    let attempts: Vec<usize> = done.tasks.iter().map(|t| t.attempts.len()).collect();
    assert_eq!(attempts, [3, 2, 1], "invalid-input is never retried");
    assert_eq!(done.meter.retries, 3);

    // Attempts are events: `retrying` with the delay, then `ready` and `running` again.
    let flaky: Vec<(TaskStatus, u32, Option<f64>, std::time::SystemTime)> = events(&bus)
        .await
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStatus(u) if u.task.node == "flaky" => {
                Some((u.status, u.task.attempt, u.retry_in_ms, e.at.0))
            }
            _ => None,
        })
        .collect();
    let retries: Vec<(u32, f64)> = flaky
        .iter()
        .filter(|(s, ..)| *s == Retrying)
        .map(|(_, a, d, _)| (*a, d.unwrap_or(0.0)))
        .collect();
    assert_eq!(
        retries,
        [(1, 40.0), (2, 80.0)],
        "exponential backoff without jitter"
    );
    let running: Vec<u32> = flaky
        .iter()
        .filter(|(s, ..)| *s == Running)
        .map(|(_, a, ..)| *a)
        .collect();
    assert_eq!(running, [1, 2, 3]);
    // The delay really passed between an attempt's end and the next start.
    let at = |status, attempt| {
        flaky
            .iter()
            .find(|(s, a, ..)| *s == status && *a == attempt)
            .map(|(.., t)| *t)
    };
    let waited = at(Running, 3)
        .zip(at(Retrying, 2))
        .and_then(|(r, f)| r.duration_since(f).ok());
    assert!(
        waited.is_some_and(|w| w >= Duration::from_millis(75)),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_task_is_retried_on_another_agent() {
    let wf = workflow(
        r#"
[agents.broken]
component = "a.wasm"
capabilities = ["math.add"]
[agents.good]
component = "a.wasm"
capabilities = ["math.add"]

[[tasks]]
id = "sum"
capability = "math.add"
retry = { max_attempts = 3, backoff = "5ms" }
"#,
    );
    let mut fake = Fake::new(1);
    fake.broken_agents = vec!["broken".into()];
    let fake = Arc::new(fake);
    let (done, _) = Harness::new(2).run(&wf, fake.clone()).await;
    assert_eq!(statuses(&done), [TaskStatus::Succeeded]);
    assert_eq!(
        fake.agents_used(),
        ["broken", "good"],
        "the retry went elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_equal_tasks_on_three_agents_of_concurrency_one_go_four_three_three() {
    let agents: String = ["x", "y", "z"]
        .iter()
        .map(|n| format!("[agents.{n}]\ncomponent = \"a.wasm\"\ncapabilities = [\"work\"]\nmax_concurrency = 1\n"))
        .collect();
    let body: String = (0..10)
        .map(|i| format!("[[tasks]]\nid = \"t{i}\"\ncapability = \"work\"\n"))
        .collect();
    let wf = workflow(&format!("{agents}{body}"));
    let fake = Arc::new(Fake::new(30));
    let (done, _) = Harness::new(10).run(&wf, fake.clone()).await;
    assert!(done.tasks.iter().all(|o| o.status == TaskStatus::Succeeded));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for agent in fake.agents_used() {
        *counts.entry(agent).or_default() += 1;
    }
    let mut spread: Vec<usize> = counts.values().copied().collect();
    spread.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(spread, [4, 3, 3], "{counts:?}");
    assert_eq!(
        fake.max_running.load(Ordering::SeqCst),
        3,
        "one at a time per agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_fuel_budget_ends_the_remaining_tasks_as_exhausted() {
    let wf = workflow(&tasks(5, |i| {
        if i > 0 {
            format!("depends_on = [\"t{}\"]", i - 1)
        } else {
            String::new()
        }
    }));
    let mut fake = Fake::new(1);
    fake.fuel = 400;
    let mut h = Harness::new(1);
    h.budget = Budget {
        fuel: Some(1_000),
        ..Budget::default()
    };
    let (done, _) = h.run(&wf, Arc::new(fake)).await;
    use TaskStatus::*;
    // 400 + 400 used, then 200 left: the third task gets only 200, uses it all, and is out of
    // budget; the rest are skipped as its dependents.
    assert_eq!(
        statuses(&done),
        [Succeeded, Succeeded, Succeeded, BudgetExhausted, Skipped]
    );
    let error = done.tasks[3].error.as_ref().expect("reason");
    assert_eq!(error.kind, ErrorKind::Budget);
    assert!(
        error.message.contains("fuel budget of 1000 is exhausted"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_concurrency_limit_holds_across_tasks() {
    let wf = workflow(&tasks(8, |_| String::new()));
    let fake = Arc::new(Fake::new(20));
    let mut h = Harness::new(8);
    h.tenant_limits = TenantLimits {
        max_concurrency: Some(2),
        ..TenantLimits::default()
    };
    let (done, _) = h.run(&wf, fake.clone()).await;
    assert!(done.tasks.iter().all(|o| o.status == TaskStatus::Succeeded));
    assert_eq!(fake.max_running.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_error_budget_stops_new_dispatches() {
    let wf = workflow(&tasks(10, |_| String::new()));
    let fake = Fake::new(5)
        .task(
            "t0",
            Behaviour {
                status: TaskStatus::Failed,
                ..Behaviour::default()
            },
        )
        .task(
            "t1",
            Behaviour {
                status: TaskStatus::Failed,
                ..Behaviour::default()
            },
        );
    let fake = Arc::new(fake);
    let mut h = Harness::new(1);
    h.error_budget = Some(ErrorBudget {
        max_failures: Some(2),
        max_failure_rate: None,
        min_attempts: 1,
        action: OnErrorBudget::Stop,
    });
    let (done, bus) = h.run(&wf, fake.clone()).await;
    assert_eq!(
        fake.starts(),
        ["t0", "t1"],
        "nothing started after the second failure"
    );
    assert!(done.tasks[2..].iter().all(|t| {
        t.status == TaskStatus::Cancelled
            && t.error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::ErrorBudget)
    }));
    let paused = events(&bus).await.iter().find_map(|e| match &e.kind {
        EventKind::RunPaused(p) => Some(p.clone()),
        _ => None,
    });
    let paused = paused.expect("an agent.run.paused event");
    assert_eq!(paused.failures, 2);
    assert_eq!(paused.handoff["summary"]["total_errors"], 2);
    assert_eq!(
        paused.handoff["summary"]["affected_tasks"],
        serde_json::json!(["t0", "t1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_resumes_after_the_pause() {
    let wf = workflow(&tasks(4, |_| String::new()));
    let fake = Arc::new(Fake::new(1).task(
        "t0",
        Behaviour {
            status: TaskStatus::Failed,
            ..Behaviour::default()
        },
    ));
    let mut h = Harness::new(1);
    h.error_budget = Some(ErrorBudget {
        max_failures: Some(1),
        max_failure_rate: None,
        min_attempts: 1,
        action: OnErrorBudget::Pause {
            resume_after: Duration::from_millis(150),
        },
    });
    let (done, bus) = h.run(&wf, fake.clone()).await;
    use TaskStatus::*;
    assert_eq!(statuses(&done), [Failed, Succeeded, Succeeded, Succeeded]);
    let all = events(&bus).await;
    let paused_at = all
        .iter()
        .find(|e| matches!(e.kind, EventKind::RunPaused(_)))
        .map(|e| e.at.0);
    let resumed = all
        .iter()
        .find(|e| matches!(e.kind, EventKind::RunResumed(_)))
        .map(|e| e.at.0);
    let gap = paused_at
        .zip(resumed)
        .and_then(|(p, r)| r.duration_since(p).ok());
    assert!(
        gap.is_some_and(|g| g >= Duration::from_millis(140)),
        "{gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_task_is_reported_blocked_and_retried_while_a_busy_one_is_not() {
    let wf = workflow(
        r#"
[[tasks]]
id = "stuck"
agent = "a"
retry = { max_attempts = 2, backoff = "1ms" }
[[tasks]]
id = "busy"
agent = "a"
"#,
    );
    let fake = Fake::new(1)
        .task(
            "stuck",
            Behaviour {
                sleep_ms: 60_000,
                ..Behaviour::default()
            },
        )
        .task(
            "busy",
            Behaviour {
                sleep_ms: 900,
                progress: true,
                ..Behaviour::default()
            },
        );
    let mut h = Harness::new(4);
    h.stall = Some(StallPolicy {
        timeout: Duration::from_millis(300),
        action: OnBlocked::Retry,
    });
    let started = Instant::now();
    let (done, bus) = h.run(&wf, Arc::new(fake)).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the stuck task was not stopped"
    );
    assert_eq!(
        statuses(&done),
        [TaskStatus::Blocked, TaskStatus::Succeeded]
    );
    assert_eq!(
        done.tasks[0].attempts.len(),
        2,
        "blocked, retried, blocked again"
    );
    assert_eq!(done.meter.blocked, 2);
    let blocked: Vec<(String, f64)> = events(&bus)
        .await
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskBlocked(b) => Some((b.task.node.to_string(), b.stalled_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(blocked.len(), 2);
    assert!(
        blocked
            .iter()
            .all(|(node, ms)| node == "stuck" && (300.0..1_300.0).contains(ms)),
        "{blocked:?}"
    );
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
    let mut h = Harness::new(8);
    h.cancel_after = Some(Duration::from_millis(100));
    let started = Instant::now();
    let (done, _) = h.run(&wf, fake.clone()).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancellation did not stop the tasks"
    );
    assert!(
        done.tasks.iter().all(|o| o.status == TaskStatus::Cancelled),
        "{:?}",
        statuses(&done)
    );
    let attempts: Vec<usize> = done.tasks.iter().map(|t| t.attempts.len()).collect();
    assert_eq!(attempts, [1, 1, 1, 0, 0, 0]);
    assert_eq!(fake.starts().len(), 3, "nothing new starts after a cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_run_lets_running_attempts_finish_and_starts_nothing_more() {
    // t0..t2 run 300 ms each; t3..t5 wait for them. Drained at 100 ms: the first three finish
    // and succeed, the rest never start and stay unsettled (no event says they ended).
    let wf = workflow(&tasks(6, |i| {
        if i >= 3 {
            format!("depends_on = [\"t{}\"]", i - 3)
        } else {
            String::new()
        }
    }));
    let fake = Arc::new(Fake::new(300));
    let mut h = Harness::new(8);
    h.drain_after = Some(Duration::from_millis(100));
    let (done, bus) = h.run(&wf, fake.clone()).await;
    assert!(done.drained);
    let ended: Vec<TaskStatus> = done.tasks[..3].iter().map(|t| t.status).collect();
    assert_eq!(ended, [TaskStatus::Succeeded; 3]);
    assert_eq!(fake.starts().len(), 3, "nothing new starts once drained");
    let settled_later = events(&bus).await.iter().any(|e| {
        matches!(&e.kind, EventKind::TaskStatus(s)
            if s.task.node.starts_with("t") && ["t3", "t4", "t5"].contains(&&*s.task.node)
                && s.status.is_final())
    });
    assert!(
        !settled_later,
        "the tasks that did not run are left for a resume"
    );
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
    let (_, bus) = Harness::new(2).run(&wf, Arc::new(Fake::new(1))).await;
    let mut seen: HashMap<String, Vec<TaskStatus>> = HashMap::new();
    for e in events(&bus).await {
        if let EventKind::TaskStatus(u) = &e.kind {
            seen.entry(u.task.node.to_string())
                .or_default()
                .push(u.status);
        }
    }
    use TaskStatus::*;
    for node in ["t0", "t1", "t2"] {
        assert_eq!(seen[node], [Pending, Ready, Running, Succeeded], "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_the_head_of_a_20_000_task_chain_settles_without_recursion() {
    const N: usize = 20_000;
    let body: String = (0..N)
        .map(|i| {
            let dep = if i > 0 {
                format!("depends_on = [\"t{}\"]\n", i - 1)
            } else {
                String::new()
            };
            format!("[[tasks]]\nid = \"t{i}\"\nagent = \"a\"\n{dep}")
        })
        .collect();
    let wf = workflow(&body);
    let failed = Behaviour {
        status: TaskStatus::Failed,
        ..Behaviour::default()
    };
    let fake = Arc::new(Fake::new(1).task("t0", failed));
    // A thread with a small stack: a recursion per task would overflow it.
    let (done, _) = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio");
            rt.block_on(Harness::new(4).run(&wf, fake))
        })
        .expect("a thread")
        .join()
        .expect("the run settles");
    assert_eq!(done.tasks[0].status, TaskStatus::Failed);
    assert!(
        done.tasks[1..]
            .iter()
            .all(|o| o.status == TaskStatus::Skipped),
        "every dependent is skipped"
    );
    let last = done.tasks[N - 1].error.as_ref().expect("a reason");
    assert!(
        last.message.contains("`t0`"),
        "the skip names the failure: {}",
        last.message
    );
}

/// A workflow with a planner agent `planner` beside `a`; its directory lives as long as it
/// does (a plan is checked again with the file's components).
fn planned(body: &str) -> (tempfile::TempDir, Workflow) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.wasm"), b"").expect("write");
    let text = format!(
        "[workflow]\nname = \"w\"\n[agents.a]\ncomponent = \"a.wasm\"\n\
         [agents.planner]\ncomponent = \"a.wasm\"\nplanner = true\n{body}"
    );
    let wf =
        Workflow::parse(&text, dir.path().join("w.toml"), &[]).unwrap_or_else(|e| panic!("{e}"));
    (dir, wf)
}

fn calc_plan() -> serde_json::Value {
    serde_json::json!({"tasks": [
        {"id": "left", "agent": "a", "with": {"a": 1, "b": 2}},
        {"id": "right", "agent": "a", "with": {"a": 3, "b": 4}},
        {"id": "product", "agent": "a", "depends_on": ["left", "right"]},
    ]})
}

fn outcome<'f>(finished: &'f Finished, node: &str) -> &'f TaskOutcome {
    let i = finished
        .workflow
        .tasks
        .iter()
        .position(|t| t.id == node)
        .unwrap_or_else(|| panic!("no task `{node}`"));
    &finished.tasks[i]
}

fn output_of(finished: &Finished, node: &str) -> serde_json::Value {
    let o = outcome(finished, node);
    let raw = o.attempts.last().and_then(|(_, a)| a.output.clone());
    raw.map_or(serde_json::Value::Null, |r| {
        serde_json::from_str(r.get()).expect("json")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planners_plan_joins_the_run_below_it_and_its_dependents_wait_for_the_plan() {
    let (_dir, wf) = planned(
        "[[tasks]]\nid = \"plan\"\nagent = \"planner\"\n\
         [[tasks]]\nid = \"after\"\nagent = \"a\"\ndepends_on = [\"plan\"]\n",
    );
    let mut fake = Fake::new(60);
    fake.plans.insert("plan".into(), calc_plan());
    let fake = Arc::new(fake);
    let (finished, bus) = Harness::new(8).run(&wf, Arc::clone(&fake)).await;
    let ids: Vec<&str> = finished
        .workflow
        .tasks
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["plan", "after", "plan.left", "plan.right", "plan.product"]
    );
    assert!(
        statuses(&finished)
            .iter()
            .all(|s| *s == TaskStatus::Succeeded),
        "{:?}",
        statuses(&finished)
    );
    // The additions ran at once, the product after both, `after` after the product.
    let starts = fake.starts();
    assert_eq!(starts[0], "plan");
    let mut middle = starts[1..3].to_vec();
    middle.sort();
    assert_eq!(middle, ["plan.left", "plan.right"]);
    assert_eq!(&starts[3..], ["plan.product", "after"]);
    assert!(
        fake.max_running.load(Ordering::SeqCst) >= 2,
        "the additions ran together"
    );
    // The plan is passed to no task: the product sees the additions, `after` the product.
    assert_eq!(
        output_of(&finished, "plan.product"),
        serde_json::json!([
            "plan.product",
            ["[\"plan.left\",[]]", "[\"plan.right\",[]]"]
        ])
    );
    let after = output_of(&finished, "after");
    assert_eq!(after[1].as_array().map(Vec::len), Some(1), "{after}");
    assert!(
        after[1][0]
            .as_str()
            .is_some_and(|s| s.contains("plan.product")),
        "{after}"
    );
    // One `agent.plan.created` for the plan, naming its planner and the tasks it added.
    let grown: Vec<_> = events(&bus)
        .await
        .into_iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanCreated(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(grown.len(), 1);
    assert_eq!(grown[0].planner.as_deref(), Some("plan"));
    let nodes: Vec<&str> = grown[0].tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(nodes, ["plan.left", "plan.right", "plan.product"]);
    assert_eq!(grown[0].tasks[0].depends_on, ["plan"]);
    // The planner's dependent is listed with the plan's last task among what it waits for.
    let waiting: Vec<(&str, &[String])> = grown[0]
        .waiting
        .iter()
        .map(|t| (t.node.as_str(), t.depends_on.as_slice()))
        .collect();
    assert_eq!(
        waiting,
        [("after", &["plan".to_owned(), "plan.product".to_owned()][..])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plan_fails_its_planner_with_why_and_the_rest_of_the_run_goes_on() {
    let cases = [
        (
            serde_json::json!({"tasks": [{"id": "x", "agent": "ghost"}]}),
            "ghost",
        ),
        (
            serde_json::json!({"tasks": [
                {"id": "x", "agent": "a", "depends_on": ["y"]},
                {"id": "y", "agent": "a", "depends_on": ["x"]},
            ]}),
            "cycle",
        ),
        (
            serde_json::json!({"tasks": [{"id": "x", "agent": "a"}, {"id": "x", "agent": "a"}]}),
            "plan.x",
        ),
        (
            serde_json::json!({"tasks": (0..5).map(|i| serde_json::json!({"id": format!("t{i}"), "agent": "a"})).collect::<Vec<_>>()}),
            "max_tasks",
        ),
        (
            serde_json::json!({"tasks": [{"id": "x", "agent": "a", "inputs": ["/etc"]}]}),
            "may not read files",
        ),
        (serde_json::json!(["not", "a", "plan"]), "not an object"),
    ];
    for (plan, why) in cases {
        let (_dir, wf) = planned(
            "[[tasks]]\nid = \"plan\"\nagent = \"planner\"\n\
             [[tasks]]\nid = \"after\"\nagent = \"a\"\ndepends_on = [\"plan\"]\n\
             [[tasks]]\nid = \"other\"\nagent = \"a\"\n",
        );
        let wf = Workflow { max_tasks: 6, ..wf };
        let mut fake = Fake::new(5);
        fake.plans.insert("plan".into(), plan.clone());
        let (finished, _) = Harness::new(4).run(&wf, Arc::new(fake)).await;
        assert_eq!(
            finished.workflow.tasks.len(),
            3,
            "{plan}: nothing was added"
        );
        let planner = outcome(&finished, "plan");
        assert_eq!(planner.status, TaskStatus::Failed, "{plan}");
        let error = planner.error.as_ref().expect("why");
        assert_eq!(error.kind, ErrorKind::InvalidPlan, "{plan}");
        assert!(error.message.contains(why), "{plan}: {}", error.message);
        assert_eq!(outcome(&finished, "after").status, TaskStatus::Skipped);
        assert_eq!(outcome(&finished, "other").status, TaskStatus::Succeeded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loops_failed_iteration_is_retried_with_the_whole_policy_and_sees_the_same_input() {
    let wf = workflow("[[tasks]]\nid = \"loop\"\nagent = \"a\"\nloop = { max_iterations = 4 }\n");
    // Attempt 3 (the third iteration) fails once: with two attempts per iteration it is
    // tried again, and the loop goes on to its fourth iteration.
    let fake = Arc::new(Fake::new(1).task(
        "loop",
        Behaviour {
            fail_on: Some(3),
            ..Behaviour::default()
        },
    ));
    let mut harness = Harness::new(2);
    harness.retry = Some(RetryOverride {
        max_attempts: Some(2),
        ..RetryOverride::default()
    });
    let (finished, _) = harness.run(&wf, Arc::clone(&fake)).await;
    let outcome = &finished.tasks[0];
    assert_eq!(outcome.status, TaskStatus::Succeeded, "{:?}", outcome.error);
    let statuses: Vec<TaskStatus> = outcome.attempts.iter().map(|(_, a)| a.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Iterated,
            TaskStatus::Iterated,
            TaskStatus::Failed,
            TaskStatus::Iterated,
            TaskStatus::Succeeded
        ]
    );
    // The retry saw the second iteration's output, as the failed attempt did.
    let seen = |n: usize| -> serde_json::Value {
        let raw = outcome.attempts[n].1.output.clone().expect("an output");
        serde_json::from_str(raw.get()).expect("json")
    };
    assert_eq!(seen(3)[1], serde_json::json!([seen(1).to_string()]));
    assert_eq!(finished.meter.retries, 1, "iterations are not retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_nest_to_their_depth_limit_and_no_deeper() {
    let (_dir, wf) = planned("[[tasks]]\nid = \"top\"\nagent = \"planner\"\n");
    // `top` plans a planner (`part`, which plans calc) and a task after it.
    let nested = || {
        let mut fake = Fake::new(5);
        fake.plans = HashMap::from([
            (
                "top".into(),
                serde_json::json!({"tasks": [
                    {"id": "part", "agent": "planner"},
                    {"id": "sum", "agent": "a", "depends_on": ["part"]},
                ]}),
            ),
            ("top.part".into(), calc_plan()),
        ]);
        fake
    };
    let fake = Arc::new(nested());
    let (finished, _) = Harness::new(8).run(&wf, Arc::clone(&fake)).await;
    assert!(
        statuses(&finished)
            .iter()
            .all(|s| *s == TaskStatus::Succeeded),
        "{:?}",
        statuses(&finished)
    );
    let ids: Vec<&str> = finished
        .workflow
        .tasks
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "top",
            "top.part",
            "top.sum",
            "top.part.left",
            "top.part.right",
            "top.part.product"
        ]
    );
    // `sum` waited for the inner plan: it ran last, and sees its product.
    assert_eq!(fake.starts().last().map(String::as_str), Some("top.sum"));
    let sum = output_of(&finished, "top.sum");
    assert!(
        sum[1][0]
            .as_str()
            .is_some_and(|s| s.contains("top.part.product")),
        "{sum}"
    );

    // One level allowed: the inner plan is refused, and what needs it is skipped.
    let wf = Workflow {
        max_plan_depth: 1,
        ..wf
    };
    let (finished, _) = Harness::new(8).run(&wf, Arc::new(nested())).await;
    let part = outcome(&finished, "top.part");
    assert_eq!(part.status, TaskStatus::Failed);
    assert!(
        part.error
            .as_ref()
            .is_some_and(|e| e.message.contains("max_plan_depth")),
        "{:?}",
        part.error
    );
    assert_eq!(outcome(&finished, "top.sum").status, TaskStatus::Skipped);
}
