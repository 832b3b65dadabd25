//! Runtime benchmarks, printed as a table (`cargo xtask bench`):
//!
//! 1. per-task overhead: `noop` tasks run one at a time; the time from one task's start to the
//!    next one's is the whole cycle (dispatch, sandbox, instantiate, run, drop, events);
//! 2. scheduling rate: DAGs of 1k and 10k `noop` tasks, as a chain and as a wide fan-out;
//! 3. parallel speedup: 50 `wait` agents of 200 ms, all at once against one at a time.
//!
//! Everything is measured through the public API with real components, on the machine's
//! cores; nothing here is an assertion.

use std::time::Instant;

use wasm_orch::{Runtime, Workflow};
use wasm_orch_tests::{bench_workflow, percentile, shared_cache, timed_run as run};

// As the `wasm-orch` binary does (see host/src/bin/wasm-orch.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let runtime = Runtime::builder()
        .state_dir(scratch.path().join("state"))
        .cache_dir(shared_cache())
        .build()
        .expect("a runtime");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("wasm-orch runtime benchmarks");
    println!(
        "({cpus} CPUs, pooling allocator: {}, release build)\n",
        if runtime.uses_pooling() { "yes" } else { "no" }
    );
    tokio.block_on(async {
        per_task_overhead(&runtime, scratch.path()).await;
        scheduling_rate(&runtime, scratch.path()).await;
        speedup(&runtime, scratch.path()).await;
    });
}

/// `n` tasks of `agent` (see [`bench_workflow`]), `max_concurrency` 16.
fn workflow(
    dir: &std::path::Path,
    agent: &str,
    n: usize,
    chain: bool,
    with: &str,
    workdir: bool,
) -> Workflow {
    bench_workflow(dir, agent, n, chain, with, workdir, 16)
}

fn micros(ms: f64) -> String {
    format!("{:>7.1} µs", ms * 1000.0)
}

async fn per_task_overhead(runtime: &Runtime, dir: &std::path::Path) {
    for workdir in [false, true] {
        overhead(runtime, dir, workdir).await;
    }
}

async fn overhead(runtime: &Runtime, dir: &std::path::Path, workdir: bool) {
    const N: usize = 2_000;
    let wf = workflow(dir, "noop", N, false, "{}", workdir);
    run(runtime, &wf, 1).await; // warm up: compile, fill the pool
    let (report, starts, wall) = run(runtime, &wf, 1).await;
    let mut cycle: Vec<f64> = starts
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    cycle.sort_by(f64::total_cmp);
    let mut inside: Vec<f64> = report.tasks.iter().filter_map(|t| t.latency_ms).collect();
    inside.sort_by(f64::total_cmp);
    let files = if workdir {
        "each with its own working directory (workdir = true, the default)"
    } else {
        "without a filesystem (workdir = false)"
    };
    println!("per-task overhead: {N} `noop` tasks, one at a time, {files}");
    println!("  {:<58} {:>10} {:>10} {:>10}", "", "median", "p90", "p99");
    println!(
        "  {:<58} {} {} {}",
        "whole cycle: dispatch, sandbox, instantiate, run, drop",
        micros(percentile(&cycle, 0.5)),
        micros(percentile(&cycle, 0.9)),
        micros(percentile(&cycle, 0.99))
    );
    println!(
        "  {:<58} {} {} {}",
        "in the executor: sandbox, instantiate, run",
        micros(percentile(&inside, 0.5)),
        micros(percentile(&inside, 0.9)),
        micros(percentile(&inside, 0.99))
    );
    println!(
        "  throughput: {:.0} tasks/s\n",
        N as f64 / wall.as_secs_f64()
    );
}

async fn scheduling_rate(runtime: &Runtime, dir: &std::path::Path) {
    println!("scheduling rate: DAGs of `noop` tasks (max_concurrency 16, workdir = false)");
    println!(
        "  {:<9} {:>7} {:>12} {:>12} {:>12}",
        "shape", "tasks", "validate", "run", "tasks/s"
    );
    for n in [1_000, 10_000] {
        for (shape, chain) in [("chain", true), ("fan-out", false)] {
            let validating = Instant::now();
            let wf = workflow(dir, "noop", n, chain, "{}", false);
            let validate = validating.elapsed();
            let (_, _, wall) = run(runtime, &wf, 16).await;
            println!(
                "  {:<9} {:>7} {:>9.1} ms {:>9.1} ms {:>12.0}",
                shape,
                n,
                validate.as_secs_f64() * 1000.0,
                wall.as_secs_f64() * 1000.0,
                n as f64 / wall.as_secs_f64()
            );
        }
    }
    println!();
}

async fn speedup(runtime: &Runtime, dir: &std::path::Path) {
    println!("parallel speedup: 50 `wait` agents of 200 ms (parallel runs: median of 3)");
    println!(
        "  {:<22} {:>16} {:>16}",
        "", "workdir = false", "workdir = true"
    );
    let mut rows: Vec<[f64; 3]> = Vec::new();
    for workdir in [false, true] {
        let wf = workflow(dir, "wait", 50, false, "{ ms = 200 }", workdir);
        let mut parallel = Vec::new();
        for _ in 0..3 {
            parallel.push(run(runtime, &wf, 50).await.2.as_secs_f64());
        }
        parallel.sort_by(f64::total_cmp);
        let serial = run(runtime, &wf, 1).await.2.as_secs_f64();
        rows.push([serial, parallel[1], serial / parallel[1]]);
    }
    println!(
        "  {:<22} {:>14.2} s {:>14.2} s",
        "max_concurrency 1:", rows[0][0], rows[1][0]
    );
    println!(
        "  {:<22} {:>14.3} s {:>14.3} s",
        "max_concurrency 50:", rows[0][1], rows[1][1]
    );
    println!(
        "  {:<22} {:>15.1}× {:>15.1}×",
        "speedup:", rows[0][2], rows[1][2]
    );
}
