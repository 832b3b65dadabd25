//! `wasm-orch worker` (take attempts from a pool's queue and run them), `wasm-orch workers`
//! (list a pool's live workers), and the `--pool` of `run` and `serve`.

use std::time::Duration;

use super::{INVALID, PoolArgs, SUCCESS, WorkerArgs, WorkersArgs, format};
use crate::workers::{PoolOptions, WorkerOptions, WorkerPool, WorkerStatus, run_worker};

fn duration(flag: &str, text: &str) -> Result<Duration, u8> {
    humantime::parse_duration(text).map_err(|e| {
        eprintln!("error: {flag} `{text}` is not a duration ({e}); e.g. 30s");
        INVALID
    })
}

/// The runtime of `run` or `serve`: `runtime`'s settings, and the pool `--pool` names.
pub(super) async fn runtime(
    runtime: &super::RuntimeArgs,
    nats: Option<&str>,
    args: &PoolArgs,
) -> Result<crate::Runtime, u8> {
    let mut builder = runtime.builder().map_err(|e| super::report_error(&e))?;
    if let Some(pool) = pool(nats, args).await? {
        builder = builder.workers(pool);
    }
    builder.build().map_err(|e| super::report_error(&e))
}

/// The pool `run` or `serve` hands attempts to, if `--pool` names one.
async fn pool(nats: Option<&str>, args: &PoolArgs) -> Result<Option<WorkerPool>, u8> {
    let Some(name) = &args.pool else {
        return Ok(None);
    };
    let Some(url) = nats else {
        eprintln!(
            "error: --pool `{name}` needs --nats: the pool's workers are reached through NATS"
        );
        return Err(INVALID);
    };
    let options = PoolOptions::new(name)
        .ack_wait(duration("--ack-wait", &args.ack_wait)?)
        .max_deliver(args.max_deliver)
        .degraded_concurrency(args.degraded_concurrency);
    WorkerPool::connect(url, options)
        .await
        .map(Some)
        .map_err(|e| {
            eprintln!("error: --pool: {e}");
            INVALID
        })
}

pub(super) async fn worker(args: WorkerArgs) -> u8 {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(".wasm-orch").join("worker"));
    let (ack_wait, grace) = match (
        duration("--ack-wait", &args.ack_wait),
        duration("--grace", &args.grace),
    ) {
        (Ok(a), Ok(g)) => (a, g),
        _ => return INVALID,
    };
    let mut options = WorkerOptions::new(state_dir)
        .pool(&args.pool)
        .slots(args.slots as usize)
        .ack_wait(ack_wait)
        .max_deliver(args.max_deliver)
        .grace(grace);
    if let Some(id) = &args.id {
        options = options.id(id);
    }
    if let (Some(url), Some(file)) = (&args.coordinator, &args.token_file) {
        let token = match crate::config::read_text(file, 4096) {
            Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
            Ok(_) => {
                eprintln!(
                    "error: --token-file `{}` is empty: put a worker's token in it (`wasm-orch token new --worker`)",
                    file.display()
                );
                return INVALID;
            }
            Err(e) => {
                eprintln!("error: --token-file `{}`: {e}", file.display());
                return INVALID;
            }
        };
        options = options.coordinator(url, token);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM: {e}");
            return INVALID;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("worker: stopping (running attempts may finish within --grace)");
        on_signal.cancel();
    });
    eprintln!(
        "worker: pool `{}`, {} slots, taking attempts from {}",
        args.pool,
        args.slots,
        redacted(&args.nats)
    );
    match run_worker(&args.nats, options, stop).await {
        Ok(summary) => {
            eprintln!(
                "worker: stopped after {} attempts ({} handed back)",
                summary.finished, summary.handed_back
            );
            SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            INVALID
        }
    }
}

pub(super) async fn workers(args: WorkersArgs) -> u8 {
    let listen = match duration("--listen", &args.listen) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let pool = match WorkerPool::connect(&args.nats, PoolOptions::new(&args.pool)).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: {e}");
            return INVALID;
        }
    };
    // The pool asks its workers for a heartbeat as it connects; listen for their answers
    // (and, from workers that cannot read pings, a periodic one).
    tokio::time::sleep(listen).await;
    let mut live = pool.workers();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    if args.json {
        match serde_json::to_string_pretty(&live) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return INVALID;
            }
        }
        return SUCCESS;
    }
    print_workers(&args.pool, &live);
    SUCCESS
}

fn print_workers(pool: &str, live: &[WorkerStatus]) {
    if live.is_empty() {
        println!("no live worker in pool `{pool}`");
        return;
    }
    println!(
        "{:<28} {:>5} {:>5} {:>9} {:<20} LAST HEARTBEAT",
        "WORKER", "SLOTS", "BUSY", "FINISHED", "TENANTS"
    );
    let now = std::time::SystemTime::now();
    for w in live {
        let ago = now.duration_since(w.at.0).unwrap_or_default();
        println!(
            "{:<28} {:>5} {:>5} {:>9} {:<20} {} ago",
            format::fit(&crate::events::inert(&w.id), 28),
            w.slots,
            w.busy,
            w.finished,
            format::fit(&crate::events::inert(&w.tenants.join(",")), 20),
            format::duration_ms(ago.as_secs_f64() * 1000.0)
        );
    }
}

/// A NATS address with its password hidden.
fn redacted(url: &str) -> String {
    match url.split_once('@') {
        Some((creds, host)) => match creds.rsplit_once(':') {
            Some((user, _)) if !user.ends_with('/') => format!("{user}:***@{host}"),
            _ => format!("{creds}@{host}"),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            super::redacted("nats://wasm-orch:runtime-secret@127.0.0.1:4222"),
            "nats://wasm-orch:***@127.0.0.1:4222"
        );
        assert_eq!(
            super::redacted("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
