//! The state bus under load, on a real nats-server (`examples/nats/server.conf`, loopback):
//!
//! 1. a burst: a fan-out of 10,000 `noop` tasks (about 40,000 events in well under a second)
//!    with every event published, against the same run without the bus;
//! 2. a steady stream: 500 `wait` tasks of 20 ms, 8 at a time (some 2,000 events a second, a
//!    busy real run's rate);
//!
//! and for each, the bus's latency per event: from the moment an in-process subscriber of the
//! run's feed sees it to the moment a NATS subscriber (another connection) receives it.
//!
//!   cargo bench -p wasm-orch-tests --bench statebus

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wasm_orch::statebus::StateBus;
use wasm_orch::{RunOptions, Runtime, TaskStatus, Workflow};
use wasm_orch_tests::nats::NatsServer;
use wasm_orch_tests::{Scratch, bench_workflow, shared_cache};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 10_000;
const RUNS: usize = 3;

fn main() {
    let scratch = Scratch::new();
    let nats = NatsServer::start(&scratch);
    let runtime = Runtime::builder()
        .state_dir(scratch.path().join("state"))
        .cache_dir(shared_cache())
        .build()
        .expect("a runtime");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let burst = &bench_workflow(scratch.path(), "noop", TASKS, false, "{}", false, 16);
    let steady = &bench_workflow(scratch.path(), "wait", 500, false, "{ ms = 20 }", false, 8);
    tokio.block_on(async {
        let bus = StateBus::connect(&nats.runtime_url()).await.expect("connects");
        let reader = nats.runtime_client().await;
        let mut plain = Vec::new();
        let mut bused = Vec::new();
        let mut latencies = Vec::new();
        let mut events = 0;
        // A warm-up run of each, then alternating.
        for round in 0..=RUNS {
            let started = Instant::now();
            let run = runtime.start(burst, RunOptions::new()).await.expect("starts");
            let report = run.wait().await.expect("ends");
            assert!(report.tasks.iter().all(|t| t.status == TaskStatus::Succeeded));
            if round > 0 {
                plain.push(started.elapsed().as_secs_f64());
            }
            let (elapsed, lat, n) = published(&runtime, &bus, &reader, burst).await;
            if round > 0 {
                bused.push(elapsed);
                events = n;
                latencies.extend(lat);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (p, b) = (median(&mut plain), median(&mut bused));
        println!("state bus, a burst: fan-out of {TASKS} noop tasks, median of {RUNS} runs");
        println!("  without the bus  {:>8.0} tasks/s", TASKS as f64 / p);
        println!(
            "  with the bus     {:>8.0} tasks/s  ({:.2} of without; {events} events per run on NATS)",
            TASKS as f64 / b,
            p / b
        );
        print_latency(latencies);

        let (elapsed, lat, n) = published(&runtime, &bus, &reader, steady).await;
        println!(
            "\nstate bus, a steady stream: 500 `wait` tasks of 20 ms, 8 at a time ({n} events in {elapsed:.2} s: {:.0} events/s)",
            n as f64 / elapsed
        );
        print_latency(lat);
    });
}

/// Runs `wf` with its events on the bus: its duration, each event's latency from the feed to a
/// NATS subscriber (ms), and how many events arrived.
async fn published(
    runtime: &Runtime,
    bus: &StateBus,
    reader: &async_nats::Client,
    wf: &Workflow,
) -> (f64, Vec<f64>, usize) {
    let run_id = Runtime::new_run_id();
    let mut sub = reader
        .subscribe(wasm_orch::statebus::events_subject(wf.tenant(), &run_id))
        .await
        .expect("subscribes");
    reader.flush().await.expect("flush");
    let started = Instant::now();
    let run = runtime
        .start(wf, RunOptions::new().run_id(&run_id))
        .await
        .expect("starts");
    let mut local = run.feed().stream();
    let seen = tokio::spawn(async move {
        let mut at = HashMap::new();
        while let Some(e) = local.next().await {
            at.insert(e.seq, Instant::now());
        }
        at
    });
    let publisher = bus.publish_run(wf.tenant(), &run.feed());
    let total = tokio::spawn(async move {
        let mut at = HashMap::new();
        while let Some(m) = sub.next().await {
            let Ok(e) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
                continue;
            };
            let last = e["event"] == "agent.run.completed";
            if let Some(seq) = e["seq"].as_u64() {
                at.insert(seq, Instant::now());
            }
            if last {
                break;
            }
        }
        at
    });
    let report = run.wait().await.expect("ends");
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
    let elapsed = started.elapsed().as_secs_f64();
    let _ = publisher.await;
    let remote = tokio::time::timeout(Duration::from_secs(60), total)
        .await
        .expect("every event arrives")
        .expect("subscriber");
    let local = seen.await.expect("feed reader");
    let latencies = remote
        .iter()
        .filter_map(|(seq, got)| {
            local
                .get(seq)
                .map(|saw| got.saturating_duration_since(*saw).as_secs_f64() * 1e3)
        })
        .collect();
    (elapsed, latencies, remote.len())
}

fn print_latency(mut latencies: Vec<f64>) {
    latencies.sort_by(f64::total_cmp);
    let q = |f: f64| latencies[((latencies.len() - 1) as f64 * f) as usize];
    println!(
        "  latency feed -> NATS subscriber, {} events: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}
