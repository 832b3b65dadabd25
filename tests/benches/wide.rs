//! 1,000 `wait` agents of 1 s started at once (`max_concurrency` 1,000), in a fresh process:
//! how long until the last one has started (its grants are published as its executor begins),
//! how long the run takes (ideally just over 1 s), and the process's peak resident memory.

use std::time::{Duration, Instant, SystemTime};

use wasm_orch::events::EventKind;
use wasm_orch::{RunOptions, Runtime, TaskStatus};
use wasm_orch_tests::{bench_workflow, peak_rss_mib, reset_peak, shared_cache};

const N: usize = 1_000;

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
    let wf = bench_workflow(scratch.path(), "wait", N, false, "{ ms = 1000 }", false, N);
    let warm = bench_workflow(scratch.path(), "wait", 1, false, "{ ms = 1 }", false, 1);
    tokio.block_on(async {
        // Load (compile or fetch from the disk cache) before measuring.
        let run = runtime
            .start(&warm, RunOptions::new())
            .await
            .expect("starts");
        run.wait().await.expect("the warm-up ends");
        let before = peak_rss_mib().unwrap_or(f64::NAN);
        reset_peak();
        let started = Instant::now();
        let started_at = SystemTime::now();
        let run = runtime
            .start(&wf, RunOptions::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut events = run.events();
        let report = run.wait().await.expect("the run ends");
        let wall = started.elapsed();
        let peak = peak_rss_mib().unwrap_or(f64::NAN);
        let mut last_start = Duration::ZERO;
        let mut last_running = Duration::ZERO;
        while let Some(event) = events.next().await {
            let at = event.at.0.duration_since(started_at).unwrap_or_default();
            match &event.kind {
                EventKind::TaskGrants(_) => last_start = last_start.max(at),
                EventKind::TaskStatus(u) if u.status == TaskStatus::Running => {
                    last_running = last_running.max(at)
                }
                _ => {}
            }
        }
        let ok = report
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Succeeded)
            .count();
        assert_eq!(ok, N, "every wait succeeds");
        println!("{N} `wait` agents of 1 s at once (max_concurrency {N}, no filesystem)");
        println!(
            "  all marked running after       {:>8.1} ms",
            last_running.as_secs_f64() * 1e3
        );
        println!(
            "  the last one started after     {:>8.1} ms",
            last_start.as_secs_f64() * 1e3
        );
        println!(
            "  the run took                   {:>8.3} s",
            wall.as_secs_f64()
        );
        println!(
            "  peak RSS                       {peak:>8.1} MiB (before the run: {before:.1} MiB)"
        );
    });
}
