//! What a guest's language costs, printed as a table (`cargo xtask bench`): the same no-op
//! agent written in Rust (`noop`, with the SDK), Python (`noop-py`, componentize-py) and
//! JavaScript (`noop-js`, componentize-js), each measured for
//!
//! 1. its component's size on disk;
//! 2. its first-run compile (a runtime with an empty compile cache validating a workflow that
//!    uses it: read, compile with Cranelift, write the cache) and its load from the disk cache
//!    (a fresh runtime over the same cache, as every later `wasm-orch run` does);
//! 3. its per-task overhead: `N` tasks one at a time, from one task's start to the next one's
//!    (dispatch, sandbox, instantiate, run, drop, events), and inside the executor alone.
//!
//! Everything goes through the public API with the real components; nothing is asserted.

use std::path::Path;
use std::time::Instant;

use wasm_orch::Runtime;
use wasm_orch_tests::{bench_workflow, guest, percentile, timed_run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tasks per per-task measurement.
const N: usize = 300;
/// Cold compiles per agent (each into an empty cache).
const COMPILES: usize = 3;

fn main() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("wasm-orch guest languages: a no-op agent in each ({cpus} CPUs, release build)");
    println!(
        "  {:<9} {:>9} {:>12} {:>12} {:>14} {:>14} {:>14}",
        "agent", "size", "compile", "cache load", "cycle median", "cycle p90", "executor med."
    );
    tokio.block_on(async {
        for agent in ["noop", "noop-py", "noop-js"] {
            measure(scratch.path(), agent).await;
        }
    });
    println!(
        "\ncompile: median of {COMPILES} into an empty cache; cache load: a new runtime over the \
         warm cache;\ncycle: {N} tasks one at a time, start to next start; executor: sandbox, \
         instantiate, run (workdir = false)"
    );
}

fn runtime(dir: &Path, cache: &Path) -> Runtime {
    Runtime::builder()
        .state_dir(dir.join("state"))
        .cache_dir(cache)
        .without_journal()
        .build()
        .expect("a runtime")
}

async fn measure(dir: &Path, agent: &str) {
    let size = std::fs::metadata(guest(agent))
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask guests`)", guest(agent).display()))
        .len();
    let wf = bench_workflow(dir, agent, N, false, "{}", false, 1);
    let one = bench_workflow(dir, agent, 1, false, "{}", false, 1);

    let mut compiles = Vec::new();
    let cache = dir.join(format!("cache-{agent}"));
    for _ in 0..COMPILES {
        let _ = std::fs::remove_dir_all(&cache);
        let rt = runtime(dir, &cache);
        let t = Instant::now();
        rt.check(&one)
            .await
            .unwrap_or_else(|e| panic!("{agent}: {e}"));
        compiles.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    compiles.sort_by(f64::total_cmp);
    let rt = runtime(dir, &cache);
    let t = Instant::now();
    rt.check(&one)
        .await
        .unwrap_or_else(|e| panic!("{agent}: {e}"));
    let load = t.elapsed().as_secs_f64() * 1000.0;

    timed_run(&rt, &one, 1).await; // warm: the component in memory, the pool filled
    let (report, starts, _) = timed_run(&rt, &wf, 1).await;
    let mut inside: Vec<f64> = report.tasks.iter().filter_map(|t| t.latency_ms).collect();
    let mut cycle: Vec<f64> = starts
        .windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    cycle.sort_by(f64::total_cmp);
    inside.sort_by(f64::total_cmp);
    println!(
        "  {:<9} {:>6.1} MB {:>9.0} ms {:>9.1} ms {:>11.2} ms {:>11.2} ms {:>11.2} ms",
        agent,
        size as f64 / 1e6,
        percentile(&compiles, 0.5),
        load,
        percentile(&cycle, 0.5),
        percentile(&cycle, 0.9),
        percentile(&inside, 0.5),
    );
}
