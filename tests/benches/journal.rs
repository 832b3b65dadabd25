//! What the journal costs: a chain and a fan-out of 10,000 `noop` tasks (no filesystem,
//! `max_concurrency` 16), embedded, on three runtimes of the same process: without a
//! journal, with an `async` one (the default) and with a `sync` one (every outcome on disk
//! before the run acts on it). Runs alternate between the three so that drift in the
//! machine's speed falls on all alike; prints the median of each and the throughput it
//! loses against none: until the run returns, and until it is committed (its results
//! document included, which an `async` run does not wait for). Each round waits for the
//! journal to commit before the next starts, so no run pays for the one before.

use std::time::Instant;

use wasm_orch::runs::Durability;
use wasm_orch::{RunOptions, Runtime, TaskStatus};
use wasm_orch_tests::{bench_workflow, shared_cache};

// As the `wasm-orch` binary does (see host/src/bin/wasm-orch.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rounds of each mode: the VM's speed drifts by tens of per cent within a minute, and the
/// median of many alternating rounds is what stays put.
const ROUNDS: usize = 15;
/// The pause between two runs.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // `--only chain` and `--modes async`: a part of it (for profiling).
    let only = arg("--only");
    let wanted = arg("--modes");
    // `--keep DIR`: the state directories are kept there (to look into the journals).
    let kept = arg("--keep").map(std::path::PathBuf::from);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let root = kept.unwrap_or_else(|| scratch.path().to_path_buf());
    let runtime = |name: &str, how: Option<Durability>| {
        let builder = Runtime::builder()
            .state_dir(root.join(name))
            .cache_dir(shared_cache());
        match how {
            None => builder.without_journal(),
            Some(d) => builder.durability(d),
        }
        .build()
        .expect("a runtime")
    };
    let modes: Vec<(&str, Runtime)> = [
        ("none", None),
        // A second runtime without a journal: how far two identical modes drift apart here
        // (the noise floor of the costs below).
        ("none-b", None),
        ("async", Some(Durability::Async)),
        ("sync", Some(Durability::Sync)),
    ]
    .into_iter()
    .filter(|(name, _)| {
        wanted
            .as_ref()
            .is_none_or(|w| w.split(',').any(|m| m == *name))
    })
    .map(|(name, how)| (name, runtime(name, how)))
    .collect();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    println!("journal cost, {ROUNDS} rounds each, medians:");
    for (shape, chain) in [("chain", true), ("fan-out", false)] {
        if only.as_ref().is_some_and(|o| o != shape) {
            continue;
        }
        let n = 10_000;
        let wf = bench_workflow(scratch.path(), "noop", n, chain, "{}", false, 16);
        let mut times = vec![Vec::new(); modes.len()];
        let mut committed = vec![Vec::new(); modes.len()];
        tokio.block_on(async {
            // Round 0 warms each runtime up (compiles, fills the instance pool).
            for round in 0..=ROUNDS {
                for (i, (name, rt)) in modes.iter().enumerate() {
                    let started = Instant::now();
                    let run = rt
                        .start(&wf, RunOptions::new())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let report = run.wait().await.expect("the run ends");
                    assert!(
                        report
                            .tasks
                            .iter()
                            .all(|t| t.status == TaskStatus::Succeeded),
                        "benchmark tasks failed"
                    );
                    let returned = started.elapsed().as_secs_f64();
                    // A read waits for what the runtime sent the journal before it.
                    if !name.starts_with("none") {
                        rt.run_summary(&report.run_id)
                            .await
                            .expect("the journal reads back")
                            .expect("the run is journaled");
                    }
                    if round > 0 {
                        times[i].push(returned);
                        committed[i].push(started.elapsed().as_secs_f64());
                    }
                    // What a run leaves to background threads (the recycler retiring its
                    // stores, the writer's last batch) ends before the next run starts, so
                    // that no mode pays for the one before it.
                    tokio::time::sleep(SETTLE).await;
                }
            }
        });
        let median = |t: &mut Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let medians: Vec<f64> = times.iter_mut().map(median).collect();
        let commits: Vec<f64> = committed.iter_mut().map(median).collect();
        for (((name, _), returned), committed) in modes.iter().zip(&medians).zip(&commits) {
            // Against the first mode run: the throughput it loses.
            println!(
                "{shape:<8} {n:>6} tasks  {name:<5}  {:>8.1} ms  {:>8.0} tasks/s  {:>5.1}% of the throughput;  committed {:>8.1} ms  {:>5.1}%",
                returned * 1e3,
                n as f64 / returned,
                (1.0 - medians[0] / returned) * 100.0,
                committed * 1e3,
                (1.0 - commits[0] / committed) * 100.0
            );
        }
    }
    // The database and its write-ahead log.
    let size = |name: &str| {
        ["journal.db", "journal.db-wal"]
            .iter()
            .map(|f| std::fs::metadata(root.join(name).join(f)).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    println!(
        "journal (database and log) after {} runs of 10,000 tasks each: async {:.1} MiB, sync {:.1} MiB",
        2 * (ROUNDS + 1),
        size("async") as f64 / (1 << 20) as f64,
        size("sync") as f64 / (1 << 20) as f64
    );
}
