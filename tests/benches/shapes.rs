//! The four shapes of the comparison with Dask (`bench/vs_dask.py`): a chain and a fan-out of
//! 1,000 and 10,000 `noop` tasks (no filesystem, `max_concurrency` 16), each run embedded
//! (`Runtime::start` to the report) several times; prints the median of each, as a table or,
//! with `--json`, one JSON object per line.

use std::time::Instant;

use wasm_orch::{RunOptions, Runtime, TaskStatus};
use wasm_orch_tests::{bench_workflow, shared_cache};

// As the `wasm-orch` binary does (see host/src/bin/wasm-orch.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    // `--only chain-10000`: one shape (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
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
    for (shape, n) in [
        ("chain", 1_000),
        ("fan-out", 1_000),
        ("chain", 10_000),
        ("fan-out", 10_000),
    ] {
        if only.as_ref().is_some_and(|o| *o != format!("{shape}-{n}")) {
            continue;
        }
        let wf = bench_workflow(scratch.path(), "noop", n, shape == "chain", "{}", false, 16);
        let runs = if n <= 1_000 { 7 } else { 5 };
        let mut times = Vec::new();
        tokio.block_on(async {
            for _ in 0..=runs {
                let started = Instant::now();
                let run = runtime
                    .start(&wf, RunOptions::new())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let report = run.wait().await.expect("the run ends");
                times.push(started.elapsed().as_secs_f64());
                assert!(
                    report
                        .tasks
                        .iter()
                        .all(|t| t.status == TaskStatus::Succeeded),
                    "benchmark tasks failed"
                );
            }
        });
        times.remove(0); // the first run warms up (compiles, fills the instance pool)
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if json {
            println!("{{\"shape\":\"{shape}\",\"tasks\":{n},\"seconds\":{median}}}");
        } else {
            println!(
                "{shape:<8} {n:>6} tasks  {:>8.1} ms  {:>8.0} tasks/s",
                median * 1e3,
                n as f64 / median
            );
        }
    }
}
