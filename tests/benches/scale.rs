//! Scale without surprises: workflows of 100,000 `noop` tasks (a chain and a fan-out) and a
//! task that depends on 50,000 others, each validated and run embedded, journal on (`async`);
//! prints the time to validate, the time to run and the process's peak resident memory for
//! each (the peak is reset before each case).

use std::fmt::Write as _;
use std::time::Instant;

use wasm_orch::{RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::{guest, peak_rss_mib, reset_peak, shared_cache};

// As the `wasm-orch` binary does (see host/src/bin/wasm-orch.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The workflow's text: `n` tasks; `chain`: each after the one before; `join`: one more task
/// after all of them.
fn text(n: usize, chain: bool, join: bool) -> String {
    let mut toml = format!(
        "[workflow]\nname = \"scale\"\nmax_concurrency = 16\n\
         [agents.noop]\ncomponent = \"{}\"\nworkdir = false\n",
        guest("noop").display()
    );
    for i in 0..n {
        let _ = write!(toml, "[[tasks]]\nid = \"t{i}\"\nagent = \"noop\"\n");
        if chain && i > 0 {
            let _ = writeln!(toml, "depends_on = [\"t{}\"]", i - 1);
        }
    }
    if join {
        toml.push_str("[[tasks]]\nid = \"join\"\nagent = \"noop\"\ndepends_on = [");
        for i in 0..n {
            let _ = write!(toml, "\"t{i}\",");
        }
        toml.push_str("]\n");
    }
    toml
}

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
    println!("scale: `noop` tasks, max_concurrency 16, no filesystem, journal async");
    println!(
        "  {:<34} {:>10} {:>10} {:>10} {:>10}",
        "case", "file", "validate", "run", "peak RSS"
    );
    for (name, n, chain, join) in [
        ("chain of 100,000", 100_000, true, false),
        ("fan-out of 100,000", 100_000, false, false),
        ("one task after 50,000 others", 50_000, false, true),
    ] {
        let path = scratch
            .path()
            .join(format!("scale-{n}-{chain}-{join}.toml"));
        let toml = text(n, chain, join);
        std::fs::write(&path, &toml).expect("write");
        reset_peak();
        let started = Instant::now();
        let wf = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let validated = started.elapsed();
        let started = Instant::now();
        let report = tokio.block_on(async {
            let run = runtime
                .start(&wf, RunOptions::new())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            run.wait().await.expect("the run ends")
        });
        let ran = started.elapsed();
        let peak = peak_rss_mib().unwrap_or(f64::NAN);
        let failed: Vec<String> = report
            .tasks
            .iter()
            .filter(|t| t.status != TaskStatus::Succeeded)
            .take(3)
            .map(|t| format!("{} {:?}: {:?}", t.node, t.status, t.error))
            .collect();
        assert!(failed.is_empty(), "{name}: {failed:?}");
        println!(
            "  {name:<34} {:>7.1} MiB {:>8.0} ms {:>8.0} ms {:>6.0} MiB",
            toml.len() as f64 / (1 << 20) as f64,
            validated.as_secs_f64() * 1e3,
            ran.as_secs_f64() * 1e3,
            peak
        );
        drop(wf);
    }
}
