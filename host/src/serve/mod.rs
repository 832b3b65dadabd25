//! `wasm-orch serve`: the runtime as an HTTP service. A JSON API (described by the OpenAPI
//! document at `/v1/openapi.json`) to register DAGs, execute them, list, read, cancel and resume
//! runs; each run's events live over server-sent events and WebSocket, resumable from any
//! sequence number; Prometheus metrics; a dashboard at `/`.
//!
//! Every API request carries a token bound to a tenant (the policy's `[[tokens]]`): a tenant
//! sees and touches only its own DAGs and runs. Runs and their events are read from the
//! journal, so a restarted server serves every run it served before, and resumes those it had
//! not finished.
//!
//! The module uses the library's public API (plus [`Workflow::parse_for_tenant`] and the
//! runtime's policy) and nothing of its insides.

mod api;
mod auth;
mod dashboard;
mod follow;
mod live;
mod metrics;
mod openapi;
#[cfg(feature = "nats")]
mod plans;
mod problem;
mod store;
mod stream;
mod work;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

use self::live::{Live, LiveRun};
use self::metrics::Metrics;
use self::store::Store;
use crate::error::Error;
use crate::{Run, Runtime};

/// How `wasm-orch serve` serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where to listen (port 0: any free port; the address is printed).
    pub listen: SocketAddr,
    /// Relative paths (components, inputs) of registered DAGs resolve against this directory,
    /// as if each DAG were a file `<dag id>.toml` in it.
    pub workflows_dir: PathBuf,
    /// Components of registered DAGs must be files inside this directory (default: the
    /// workflows directory): a tenant runs only what the operator put there.
    pub components_dir: Option<PathBuf>,
    /// After SIGTERM, how long running attempts may go on (no new one starts) before the
    /// server stops; runs are left resumable, and resumed when the server starts again.
    pub grace: Duration,
    /// The largest request body (a workflow's TOML, an execute request).
    pub max_body: usize,
    /// Where every run's events are also published (the NATS state bus).
    #[cfg(feature = "nats")]
    pub statebus: Option<crate::statebus::StateBus>,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            workflows_dir: PathBuf::from("."),
            components_dir: None,
            grace: Duration::from_secs(30),
            max_body: 1 << 20,
            #[cfg(feature = "nats")]
            statebus: None,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    runtime: Runtime,
    store: Store,
    live: Live,
    metrics: Metrics,
    /// The canonical `workflows_dir`.
    root: PathBuf,
    /// The canonical `components_dir`.
    components: PathBuf,
    /// False once the server is stopping: no new runs.
    accepting: AtomicBool,
    /// Whether the server has resumed what it had left and is ready.
    ready: AtomicBool,
    /// One is held while an execute with an `Idempotency-Key` looks its key up and starts its
    /// run, so that two requests with one key start one run (keys are spread over them).
    idempotency: Vec<tokio::sync::Mutex<()>>,
    #[cfg(feature = "nats")]
    statebus: Option<crate::statebus::StateBus>,
}

impl App {
    fn idempotency_lock(&self, tenant: &str, dag: &str, key: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant, dag, key).hash(&mut h);
        &self.idempotency[h.finish() as usize % self.idempotency.len()]
    }
}

/// Serves until SIGTERM or SIGINT. `on_listen` learns the bound address first.
pub async fn serve(
    runtime: Runtime,
    options: ServeOptions,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    let canonical = |dir: &PathBuf| {
        dir.canonicalize().map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })
    };
    let root = canonical(&options.workflows_dir)?;
    let components = match &options.components_dir {
        Some(dir) => canonical(dir)?,
        None => root.clone(),
    };
    let state_dir = runtime.state_dir().to_path_buf();
    let app = Arc::new(App {
        store: Store::open(&state_dir)?,
        runtime,
        live: Live::default(),
        metrics: Metrics::new(),
        root,
        components,
        #[cfg(feature = "nats")]
        statebus: options.statebus.clone(),
        accepting: AtomicBool::new(true),
        ready: AtomicBool::new(false),
        idempotency: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
    });
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| Error::Io {
            path: PathBuf::from(options.listen.to_string()),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        path: PathBuf::from(options.listen.to_string()),
        source,
    })?;
    if !app.runtime.policy().has_tokens() {
        tracing::warn!(
            "the policy lists no API token: every API request will be refused; make one with \
             `wasm-orch token new --tenant NAME --policy FILE`"
        );
    }
    on_listen(addr);
    resume_unfinished(&app).await;
    prune_periodically(&app);
    #[cfg(feature = "nats")]
    if let Some(bus) = &app.statebus {
        plans::listen(&app, bus, options.max_body).await;
    }
    app.ready.store(true, Ordering::Relaxed);

    let stop = tokio_util::sync::CancellationToken::new();
    let router = router(Arc::clone(&app), options.max_body);
    let server = axum::serve(listener, router).with_graceful_shutdown({
        let stop = stop.clone();
        async move { stop.cancelled().await }
    });
    let server = tokio::spawn(async move { server.await });
    terminated().await;
    tracing::info!(
        "stopping: no new runs or attempts; running attempts have {:?} to finish",
        options.grace
    );
    app.accepting.store(false, Ordering::Relaxed);
    // Every run stops starting attempts; each stops when its running ones have finished, and
    // is resumed from there when the server starts again.
    for run in app.live.all() {
        run.cancel.drain();
    }
    let deadline = tokio::time::Instant::now() + options.grace;
    while app.live.len() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = app.live.len();
    if left > 0 {
        tracing::warn!(
            "{left} run(s) still had attempts running after the grace period: left resumable \
             (those attempts run again)"
        );
    }
    stop.cancel();
    // Open streams end with the process: clients reconnect with their last event id.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn router(app: Arc<App>, max_body: usize) -> Router {
    api::routes()
        .merge(stream::routes())
        .merge(work::routes())
        .merge(dashboard::routes())
        .merge(openapi::routes())
        .fallback(api::unknown_route)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            api::panicked,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// With the policy's `[defaults] retention`, prunes ended runs older than that every hour (and
/// once at start): a long-lived server's journal does not grow without bound.
fn prune_periodically(app: &Arc<App>) {
    let Some(retention) = app.runtime.retention() else {
        return;
    };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            match app.runtime.prune(retention).await {
                Ok(p) => tracing::info!(?p, "pruned runs past the retention"),
                Err(e) => tracing::warn!("pruning runs past the retention failed: {e}"),
            }
        }
    });
}

/// Resumes the runs this server started and a stopped (or killed) server left unfinished.
async fn resume_unfinished(app: &Arc<App>) {
    let runs = match app.store.served_runs() {
        Ok(runs) => runs,
        Err(e) => {
            tracing::error!("cannot read the runs this server started: {e}");
            return;
        }
    };
    for served in runs {
        let Ok(Some(summary)) = app.runtime.run_summary(&served.run_id).await else {
            continue;
        };
        if summary.state != crate::runs::RunState::Interrupted {
            continue;
        }
        let options = crate::RunOptions::new().tenant(served.tenant.clone());
        match app.runtime.resume(&served.run_id, options).await {
            Ok(run) => {
                tracing::info!(run = %served.run_id, dag = %served.dag_id, "resumed");
                track(app, run, &served.tenant);
            }
            Err(e) => tracing::warn!(run = %served.run_id, "cannot resume: {e}"),
        }
    }
}

/// Keeps a run this server started: its feed and cancel handle while it runs, its metrics.
/// The run is detached: stopping the server leaves it resumable rather than cancelled.
pub(crate) fn track(app: &Arc<App>, run: Run, tenant: &str) {
    let run_id = run.id().to_owned();
    let feed = run.feed();
    let mut events = feed.stream();
    #[cfg(feature = "nats")]
    if let Some(bus) = &app.statebus {
        bus.publish_run(tenant, &feed);
    }
    let cancel = run.detach();
    app.live.insert(
        &run_id,
        LiveRun {
            tenant: tenant.to_owned(),
            feed,
            cancel,
        },
    );
    let app = Arc::clone(app);
    let tenant = tenant.to_owned();
    let span = tracing::info_span!("run", run = %run_id, tenant = %tenant);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            {
                let observer = app.metrics.run_started(&tenant);
                while let Some(event) = events.next().await {
                    observer.observe(&event);
                }
            }
            // Followers that started while it ran read the rest from the journal.
            app.live.remove(&run_id);
            tracing::info!("ended");
        },
        span,
    ));
}
