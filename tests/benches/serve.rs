//! `wasm-orch serve` under load: `--clients` SSE clients (default 200) follow runs while
//! `--rate` runs a second (default 20) are submitted for `--seconds` (default 30). Each client
//! follows the newest run from its first event to its last, then the next newest, checking
//! that every event arrives once, in order, with no gap. Prints submissions, events
//! delivered, misses (must be 0), the delay from an event's emission to a client (for clients
//! connected when it was emitted: p50, p99, max) and the server's resident memory.
//!
//! The clients run in this process on the same two cores as the server: the figures include
//! their cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use wasm_orch_tests::Scratch;
use wasm_orch_tests::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-orch-cli");

const DAG: &str = r#"
[workflow]
name = "load"
max_concurrency = 8
[agents.add]
component = "{guests}/add.wasm"
timeout = "60s"
tools = ["sleep"]
[agents.mul]
component = "{guests}/mul.wasm"
timeout = "60s"
tools = ["sleep"]
[[tasks]]
id = "left"
agent = "add"
with = { a = 1, b = 2, delay_ms = 100 }
[[tasks]]
id = "right"
agent = "add"
with = { a = 3, b = 4, delay_ms = 100 }
[[tasks]]
id = "product"
agent = "mul"
depends_on = ["left", "right"]
with = { delay_ms = 50 }
"#;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    events: AtomicU64,
    runs_followed: AtomicU64,
    misses: AtomicU64,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    let clients = arg("--clients", 200);
    let rate = arg("--rate", 20).max(1);
    let seconds = arg("--seconds", 30);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let scratch = Scratch::new();
    let server = Arc::new(Server::start(BIN, &scratch, &[]));
    tokio.block_on(async {
        let (status, body) = server.put_dag("acme", "load", DAG).await;
        assert_eq!(status, 201, "{body}");
        // Warm: the components compiled and the first run through.
        let run = server.execute("acme", "load").await;
        server.events("acme", &run, None).await.collect().await;

        let (newest_tx, newest) = watch::channel(run);
        let tally = Arc::new(Tally::default());
        let delays = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut followers = Vec::new();
        for _ in 0..clients {
            let (server, mut newest, tally, delays, stop) = (
                Arc::clone(&server),
                newest.clone(),
                Arc::clone(&tally),
                Arc::clone(&delays),
                Arc::clone(&stop),
            );
            followers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let run = newest.borrow_and_update().clone();
                    let connected = SystemTime::now();
                    let mut sse = server.events("acme", &run, None).await;
                    let mut expect = 1;
                    let mut ended = false;
                    while let Some(e) = sse.next().await {
                        if e.id != expect {
                            tally.misses.fetch_add(1, Ordering::Relaxed);
                        }
                        expect = e.id + 1;
                        let now = SystemTime::now();
                        if let Some(at) = e.data["at"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok())
                            && at >= connected
                            && let Ok(d) = now.duration_since(at)
                        {
                            mine.push(d.as_secs_f64() * 1000.0);
                        }
                        ended = e.event == "agent.run.completed";
                    }
                    tally.events.fetch_add(expect - 1, Ordering::Relaxed);
                    tally.runs_followed.fetch_add(1, Ordering::Relaxed);
                    if !ended {
                        tally.misses.fetch_add(1, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // The next newest run (or this one again if none is newer yet).
                    let _ = tokio::time::timeout(Duration::from_millis(200), newest.changed()).await;
                }
                delays.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            }));
        }
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut submitted = 0u64;
        let mut runs = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let run = server.execute("acme", "load").await;
            runs.push(run.clone());
            let _ = newest_tx.send(run);
            submitted += 1;
        }
        let submitting = started.elapsed();
        // Every run ends.
        for run in &runs {
            server.wait_state("acme", run, "succeeded", Duration::from_secs(300)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = newest_tx.send(String::new());
        for f in followers {
            let _ = f.await;
        }
        let mut delays = std::mem::take(&mut *delays.lock().unwrap_or_else(|p| p.into_inner()));
        delays.sort_by(f64::total_cmp);
        let q = |p: f64| delays.get(((delays.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0);
        let pid = server.pid();
        println!(
            "serve: {clients} SSE clients, {rate} runs/s submitted for {seconds} s (calc-shaped DAG, 3 tasks)"
        );
        println!(
            "  submitted {submitted} runs in {:.1} s ({:.1}/s), all succeeded",
            submitting.as_secs_f64(),
            submitted as f64 / submitting.as_secs_f64()
        );
        println!(
            "  clients followed {} runs, {} events delivered, {} missed or out of order",
            tally.runs_followed.load(Ordering::Relaxed),
            tally.events.load(Ordering::Relaxed),
            tally.misses.load(Ordering::Relaxed)
        );
        println!(
            "  event -> client (live): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} deliveries",
            q(0.5),
            q(0.99),
            delays.last().copied().unwrap_or(0.0),
            delays.len()
        );
        println!(
            "  server memory: peak RSS {:.0} MiB, now {:.0} MiB",
            status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0,
            status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
        );
        assert_eq!(tally.misses.load(Ordering::Relaxed), 0, "a client missed events");
    });
}
