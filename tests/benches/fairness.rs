//! Fairness benchmark, printed (`cargo xtask bench`): two tenants whose fuel rates are 3:1
//! each run CPU-bound guests at the same time in one runtime; the fuel they consume should be
//! in a 3:1 ratio (within 10 %). Meanwhile a short probe task of a third, unthrottled tenant
//! should finish within twice its latency on an idle runtime.
//!
//! Nothing here is an assertion: the figures are printed, with the targets beside them.

use std::time::{Duration, Instant};

use wasm_orch::policy::Policy;
use wasm_orch::{RunOptions, Runtime, Workflow};
use wasm_orch_tests::{guest, shared_cache};

const RATE_A: u64 = 1_500_000_000;
const RATE_B: u64 = 500_000_000;
const WINDOW: &str = "4s";

fn main() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let policy = Policy::parse(
        &format!(
            "[tenants.a]\nfuel_rate = {RATE_A}\nfuel_burst = 50_000_000\n\
             [tenants.b]\nfuel_rate = {RATE_B}\nfuel_burst = 50_000_000\n"
        ),
        "fairness-policy.toml",
    )
    .expect("policy");
    let runtime = Runtime::builder()
        .state_dir(scratch.path().join("state"))
        .cache_dir(shared_cache())
        .policy(policy)
        .build()
        .expect("a runtime");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let dir = scratch.path();
    tokio.block_on(async {
        // CPU-bound guests that never end on their own: each stops at the window's end.
        let busy = |tenant: &str| {
            let tasks: String = (0..2)
                .map(|i| format!("[[tasks]]\nid = \"spin{i}\"\nagent = \"spin\"\n"))
                .collect();
            workflow(
                dir,
                tenant,
                &format!(
                    "[agents.spin]\ncomponent = \"{}\"\nfuel = 1_000_000_000_000_000\n\
                     timeout = \"{WINDOW}\"\nworkdir = false\n{tasks}",
                    guest("spin").display()
                ),
            )
        };
        let probe = workflow(
            dir,
            "c",
            &format!(
                "[agents.burn]\ncomponent = \"{}\"\nworkdir = false\n\
                 [[tasks]]\nid = \"probe\"\nagent = \"burn\"\nwith = {{ iterations = 1000000 }}\n",
                guest("burn").display()
            ),
        );

        // The probe alone, on an idle runtime (after a warm-up).
        run(&runtime, &probe).await;
        let mut idle = Vec::new();
        for _ in 0..7 {
            idle.push(run(&runtime, &probe).await);
        }
        idle.sort();
        let idle = idle[idle.len() / 2];

        // Both tenants at once; from a second in, the probe runs 7 times, 250 ms apart.
        let (a, b) = (busy("a"), busy("b"));
        let start = Instant::now();
        let runs = tokio::join!(run(&runtime, &a), run(&runtime, &b), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut loaded = Vec::new();
            for _ in 0..7 {
                loaded.push(run(&runtime, &probe).await);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            loaded
        });
        let mut loaded = runs.2;
        loaded.sort();
        let (loaded, worst) = (loaded[loaded.len() / 2], loaded[loaded.len() - 1]);
        let elapsed = start.elapsed();
        let (fuel_a, fuel_b) = (runtime.tenant_fuel_used("a"), runtime.tenant_fuel_used("b"));
        let ratio = fuel_a as f64 / fuel_b as f64;
        let target = RATE_A as f64 / RATE_B as f64;

        println!("wasm-orch fairness benchmark");
        println!(
            "({} CPUs; tenants a and b each run 2 infinite loops for {WINDOW}, at the same time)\n",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "  tenant   fuel rate      fuel consumed   fuel/s over {:.1} s",
            elapsed.as_secs_f64()
        );
        for (name, rate, fuel) in [("a", RATE_A, fuel_a), ("b", RATE_B, fuel_b)] {
            println!(
                "  {name:<8} {:>7.2} G/s   {:>13}   {:>8.2} G/s",
                rate as f64 / 1e9,
                fuel,
                fuel as f64 / elapsed.as_secs_f64() / 1e9
            );
        }
        println!(
            "  ratio a:b = {ratio:.3} (target {target:.1} ± 10 %: {})\n",
            verdict((ratio / target - 1.0).abs() <= 0.10)
        );
        println!("  probe of tenant c (1M iterations of `burn`, unthrottled), whole run:");
        println!(
            "    idle runtime:        {:>8.2} ms (median of 7)",
            ms(idle)
        );
        println!(
            "    while a and b spin:  {:>8.2} ms (median of 7; slowest {:.2} ms)",
            ms(loaded),
            ms(worst)
        );
        println!(
            "    ratio of medians: {:.2}× (target ≤ 2×: {})",
            ms(loaded) / ms(idle),
            verdict(ms(loaded) <= 2.0 * ms(idle))
        );
    });
}

fn workflow(dir: &std::path::Path, tenant: &str, body: &str) -> Workflow {
    let path = dir.join(format!("{tenant}.toml"));
    let text = format!("[workflow]\nname = \"fair-{tenant}\"\ntenant = \"{tenant}\"\n{body}");
    std::fs::write(&path, text).expect("write");
    Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a workflow to its end; returns how long that took.
async fn run(runtime: &Runtime, workflow: &Workflow) -> Duration {
    let started = Instant::now();
    let run = runtime
        .start(workflow, RunOptions::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    run.wait().await.expect("the run ends");
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
