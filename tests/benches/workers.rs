//! Attempts on workers against attempts here: the same fan-outs run by this process alone,
//! then handed to two `wasm-orch worker` processes through a real nats-server (loopback,
//! `examples/nats/server.conf`):
//! - 10,000 `noop` tasks: what distribution costs per attempt (the work is nothing);
//! - 1,000 `wait` tasks of 100 ms each (a host tool call, which a worker makes through its
//!   coordinator): what an I/O-bound fan-out gets;
//! - a one-task `wasm-orch run` process, here and on the pool: what a small run waits before
//!   its attempt goes out.
//!
//! On one machine the workers share its cores with the coordinator, so this measures the
//! overhead of the queue, not the gain of more machines.
//!
//!   cargo bench -p wasm-orch-tests --bench workers

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasm_orch::workers::{PoolOptions, WorkerPool};
use wasm_orch::{RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::nats::NatsServer;
use wasm_orch_tests::{Scratch, bench_workflow, shared_cache};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let _workers = Workers(
        ["w1", "w2"]
            .iter()
            .map(|id| {
                Command::new(env!("CARGO_BIN_EXE_wasm-orch-cli"))
                    .args(["worker", "--nats", &nats.url("worker", "worker-secret")])
                    .args(["--pool", "bench", "--slots", "32", "--id", id])
                    .arg("--state-dir")
                    .arg(scratch.path().join(id))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("a worker starts")
            })
            .collect(),
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let local = Runtime::builder()
            .state_dir(scratch.path().join("local"))
            .cache_dir(shared_cache())
            .build()
            .expect("a runtime");
        let pool = WorkerPool::connect(&nats.runtime_url(), PoolOptions::new("bench"))
            .await
            .expect("connects");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pool.workers().len() < 2 {
            assert!(Instant::now() < deadline, "the workers did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let remote = Runtime::builder()
            .state_dir(scratch.path().join("remote"))
            .cache_dir(shared_cache())
            .workers(pool.clone())
            .build()
            .expect("a runtime");

        let noop = bench_workflow(scratch.path(), "noop", 10_000, false, "{}", false, 64);
        let wait = bench_workflow(scratch.path(), "wait", 1_000, false, "{ ms = 100 }", false, 64);
        // `--only noop` (or `wait`): one of them (for profiling).
        let args: Vec<String> = std::env::args().collect();
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1).cloned());
        for (name, wf, n) in [("noop", &noop, 10_000.0), ("wait 100 ms", &wait, 1_000.0)] {
            if only.as_ref().is_some_and(|o| !name.starts_with(o.as_str())) {
                continue;
            }
            let here = median(&local, wf, None).await;
            let there = median(&remote, wf, Some(&pool)).await;
            println!("{n:.0} {name} tasks (max_concurrency 64), median of {RUNS} runs");
            println!("  here                  {:>8.0} tasks/s  ({here:.2} s)", n / here);
            println!(
                "  on 2 workers (32 slots each) {:>8.0} tasks/s  ({there:.2} s, {:.2} of here)",
                n / there,
                here / there
            );
        }
        if only.as_ref().is_none_or(|o| o == "small") {
            small_runs(&scratch, &nats);
        }
        let counts = pool.counts();
        println!(
            "  pool: {} attempts to workers, {} here (degraded), {} redelivered, {} duplicates, {} lost",
            counts.remote, counts.degraded, counts.redelivered, counts.duplicates, counts.lost
        );
    });
}

/// How long a one-task `wasm-orch run` process takes, here and on the pool: what a small run
/// waits before its first attempt goes out (its coordinator learns of the pool's workers).
fn small_runs(scratch: &Scratch, nats: &NatsServer) {
    const SMALL: usize = 7;
    bench_workflow(scratch.path(), "noop", 1, false, "{}", false, 64);
    let flow = scratch.path().join("noop-1-false-false.toml");
    let url = nats.runtime_url();
    let time = |pool: bool| {
        let mut walls: Vec<f64> = (0..SMALL)
            .map(|_| {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasm-orch-cli"));
                cmd.args(["run", "--plain"])
                    .arg(&flow)
                    .arg("--state-dir")
                    .arg(scratch.path().join("cli"))
                    .arg("--cache-dir")
                    .arg(shared_cache())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if pool {
                    cmd.args(["--nats", &url, "--pool", "bench"]);
                }
                let started = Instant::now();
                let status = cmd.status().expect("wasm-orch run starts");
                assert!(status.success(), "the one-task run failed");
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        walls.sort_by(f64::total_cmp);
        walls
    };
    // Both workers have the component compiled before anything is timed (as after the
    // fan-outs above): 200 tasks through the pool reach both.
    bench_workflow(scratch.path(), "noop", 200, false, "{}", false, 64);
    let warm = Command::new(env!("CARGO_BIN_EXE_wasm-orch-cli"))
        .args(["run", "--plain"])
        .arg(scratch.path().join("noop-200-false-false.toml"))
        .arg("--state-dir")
        .arg(scratch.path().join("cli"))
        .arg("--cache-dir")
        .arg(shared_cache())
        .args(["--nats", &url, "--pool", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("wasm-orch run starts");
    assert!(warm.success(), "the warm-up run failed");
    let here = time(false);
    let there = time(true);
    println!(
        "a one-task `wasm-orch run` process, wall time, {SMALL} runs (median, fastest-slowest)"
    );
    for (name, walls) in [("here", here), ("on the pool", there)] {
        println!(
            "  {name:<12} {:>7.1} ms  ({:.1}-{:.1} ms)",
            walls[SMALL / 2],
            walls[0],
            walls[SMALL - 1]
        );
    }
}

/// The median wall time of `RUNS` runs of `wf`, after one to warm up; checks every task ran
/// where it should.
async fn median(runtime: &Runtime, wf: &Workflow, pool: Option<&WorkerPool>) -> f64 {
    let mut times = Vec::new();
    for round in 0..=RUNS {
        let before = pool.map(|p| p.counts().degraded);
        let started = Instant::now();
        let run = runtime.start(wf, RunOptions::new()).await.expect("starts");
        let report = run.wait().await.expect("ends");
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(t) = report
            .tasks
            .iter()
            .find(|t| t.status != TaskStatus::Succeeded)
        {
            panic!(
                "task {} {:?} (on a pool: {}): {:?}",
                t.node,
                t.status,
                pool.is_some(),
                t.error
            );
        }
        if let (Some(pool), Some(before)) = (pool, before) {
            assert_eq!(
                pool.counts().degraded,
                before,
                "every attempt went to a worker"
            );
            assert!(
                report
                    .tasks
                    .iter()
                    .all(|t| t.history.iter().all(|a| a.worker.is_some())),
                "every attempt ran on a worker"
            );
        }
        if round > 0 {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
