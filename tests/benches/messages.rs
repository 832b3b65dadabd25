//! What a message costs (`cargo xtask bench`): two tasks of one run bounce N messages (ping
//! sends one, pong echoes it back, ping waits for the echo before the next), so each round
//! trip is two sends, two receives (one of them a wake-up from a wait), four events and the
//! JSON both guests parse. The ping task's latency over N is printed per round trip, beside
//! the same run's tasks with N = 0 (the cost of the tasks alone). Median of 5 runs, release
//! build; nothing is asserted.

use wasm_orch::{RunOptions, Workflow};
use wasm_orch_tests::{Scratch, guest, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 5;

fn flow(count: u32) -> String {
    format!(
        "[workflow]\nname = \"messages\"\n\
         messages = {{ max_per_task = 100000, per_second = 1000000 }}\n\
         [agents.n]\ncomponent = \"{}\"\nworkdir = false\ntimeout = \"120s\"\nfuel = 100_000_000_000\n\
         [[tasks]]\nid = \"ping\"\nagent = \"n\"\nwith = {{ role = \"ping\", peer = \"pong\", count = {count} }}\n\
         [[tasks]]\nid = \"pong\"\nagent = \"n\"\nwith = {{ role = \"pong\" }}\n",
        guest("negotiator").display(),
    )
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "wasm-orch messages: round trips between two running tasks ({cpus} CPUs, release build)"
    );
    println!(
        "  {:>12} {:>14} {:>16} {:>14}",
        "round trips", "ping median", "per round trip", "messages/s"
    );
    tokio.block_on(async {
        let scratch = Scratch::new();
        let runtime = scratch.runtime();
        let mut alone = 0.0;
        for count in [0u32, 1_000, 10_000] {
            let path = scratch.workflow(&format!("messages-{count}.toml"), &flow(count));
            let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            let mut spans = Vec::new();
            for _ in 0..RUNS {
                let done = scratch
                    .run_workflow(&runtime, &workflow, RunOptions::new())
                    .await;
                let ping = done.report.task("ping").expect("ping");
                assert!(ping.status.is_success(), "{:?}", ping.error);
                assert_eq!(done.report.metrics.total_messages, 2 * u64::from(count) + 1);
                spans.push(ping.latency_ms.unwrap_or_default());
            }
            spans.sort_by(f64::total_cmp);
            let median = percentile(&spans, 0.5);
            if count == 0 {
                alone = median;
                println!("  {count:>12} {median:>11.2} ms {:>16} {:>14}", "-", "-");
            } else {
                let per = (median - alone).max(0.0) * 1000.0 / f64::from(count);
                let rate = 2.0 * f64::from(count) / ((median - alone).max(1e-9) / 1000.0);
                println!("  {count:>12} {median:>11.2} ms {per:>13.1} µs {rate:>14.0}");
            }
        }
    });
}
