//! `wasm-orch worker`: takes attempts from a pool's queue and runs them in this process's
//! engine, under the limits each work order carries (fuel, memory, time, output, disk), in a
//! fresh store each, exactly as the local executor does.
//!
//! A worker takes no more messages than it has free slots. While an attempt runs, its message
//! gets an in-progress ack every third of the ack wait, so it is not delivered to another
//! worker; it is acknowledged once its end is reported. A worker that stops on purpose
//! (SIGTERM) lets running attempts finish within its grace, and hands back (NAK) those that do
//! not, so another worker takes them at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::http::{Granted, HttpHome, MAX_HTTP_BODY};
use super::wire::{
    Call, CallReply, Envelope, Finished, Order, Report, Request, VERSION, WorkerStatus,
};
use super::{HEARTBEAT, NatsError, PREFIX, QueueSettings, check_pool, token};
use crate::bus::{Bus, EmitterLimits, TaskEmitter};
use crate::capabilities::blackboard::{BoardCall, BoardRelay, BoardReply, BoardScope};
use crate::capabilities::files::{RunDir, TaskFiles};
use crate::capabilities::messages::{MessageCall, MessageRelay, MessageReply, MessageScope};
use crate::capabilities::secrets::SecretAccess;
use crate::capabilities::tools::{ToolAccess, ToolRelay};
use crate::engine::{Engine, EngineConfig, LoadedAgent, MAX_COMPONENT, Setup};
use crate::govern::FuelBucket;
use crate::model::Name;
use crate::model::digest::sha256_hex;
use crate::model::events::EventKind;
use crate::model::limits::FuelRate;
use crate::model::port::{Heartbeat, Job, UpstreamResult};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::model::time::Timestamp;
use crate::wit::v3::wasm_orch::agent::tools::ToolError;

/// How a worker runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The pool whose queue it takes attempts from.
    pub pool: String,
    /// Attempts it runs at once.
    pub slots: usize,
    /// Its id in heartbeats and reports (default: host name and process id).
    pub id: Option<String>,
    /// Where it keeps compiled components and attempts' scratch directories.
    pub state_dir: PathBuf,
    /// The pool consumer's ack wait and max-deliver count, if this worker creates it.
    pub ack_wait: Duration,
    pub max_deliver: i64,
    /// After a stop is asked for: how long running attempts may go on.
    pub grace: Duration,
    /// The coordinator's HTTP API (`wasm-orch serve`) and a worker's token for it: while NATS
    /// cannot be reached, the worker leases attempts there.
    pub coordinator: Option<(String, String)>,
}

impl WorkerOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            pool: "default".to_owned(),
            slots: 4,
            id: None,
            state_dir: state_dir.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            grace: Duration::from_secs(30),
            coordinator: None,
        }
    }

    /// Leases attempts from the coordinator at `url` (its HTTP API) with `token` (a worker's)
    /// while NATS cannot be reached.
    pub fn coordinator(mut self, url: impl Into<String>, token: impl Into<String>) -> Self {
        self.coordinator = Some((url.into(), token.into()));
        self
    }

    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = pool.into();
        self
    }

    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    pub fn max_deliver(mut self, n: i64) -> Self {
        self.max_deliver = n.max(1);
        self
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// What a worker did, when it stops.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct WorkerSummary {
    pub finished: u64,
    /// Attempts handed back (NAK) because the worker stopped before they ended.
    pub handed_back: u64,
}

struct State {
    id: String,
    pool: String,
    slots: u32,
    client: async_nats::Client,
    engine: Engine,
    /// The components' object store, once JetStream answered.
    objects: std::sync::OnceLock<jetstream::object_store::ObjectStore>,
    /// The coordinator's HTTP API, when the worker may lease attempts there.
    http: Option<Arc<HttpHome>>,
    scratch: PathBuf,
    busy: AtomicU32,
    finished: AtomicU64,
    handed_back: AtomicU64,
    /// Running attempts: key → (tenant, its stop).
    running: Mutex<HashMap<String, (String, CancellationToken)>>,
    agents: Mutex<HashMap<String, Arc<LoadedAgent>>>,
    /// This worker's fuel buckets, by account (a tenant's, an agent's).
    buckets: Mutex<HashMap<String, Arc<FuelBucket>>>,
    /// One component fetched and compiled at a time.
    loading: tokio::sync::Mutex<()>,
    leaving: AtomicBool,
    started_at: Timestamp,
}

/// Runs a worker until `stop` is cancelled (then for at most its grace).
pub async fn run_worker(
    url: &str,
    options: WorkerOptions,
    stop: CancellationToken,
) -> Result<WorkerSummary, NatsError> {
    check_pool(&options.pool)?;
    let client = super::connect(url, "wasm-orch worker").await?;
    let js = jetstream::new(client.clone());
    let wanted = QueueSettings {
        ack_wait: options.ack_wait,
        max_deliver: options.max_deliver,
    };
    let jetstream = |reason: String| NatsError::JetStream {
        url: url.to_owned(),
        reason,
    };
    let slots = u32::try_from(options.slots.max(1)).unwrap_or(u32::MAX);
    // The same engine as `run`'s: instances from the pooling allocator, a freed slot's first
    // 2 MiB reset in place. Allocating on demand mapped and unmapped every attempt's memory,
    // and the attempts' threads queued on the process's memory-map lock.
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(options.state_dir.join("cache")),
        pooling: true,
        max_instances: slots.saturating_mul(2).max(8),
        epoch_tick: Duration::from_millis(10),
        keep_resident: 2 << 20,
    })
    .map_err(|e| jetstream(format!("the worker's engine could not start: {e}")))?;
    let id = options.id.clone().unwrap_or_else(default_id);
    let http = match &options.coordinator {
        Some((base, token)) => Some(Arc::new(HttpHome::new(base, token).map_err(|reason| {
            NatsError::Coordinator {
                url: base.clone(),
                reason,
            }
        })?)),
        None => None,
    };
    let state = Arc::new(State {
        id,
        pool: options.pool.clone(),
        slots,
        client: client.clone(),
        engine,
        objects: std::sync::OnceLock::new(),
        http,
        scratch: options.state_dir.join("attempts"),
        busy: AtomicU32::new(0),
        finished: AtomicU64::new(0),
        handed_back: AtomicU64::new(0),
        running: Mutex::default(),
        agents: Mutex::default(),
        buckets: Mutex::default(),
        loading: tokio::sync::Mutex::new(()),
        leaving: AtomicBool::new(false),
        started_at: Timestamp::now(),
    });
    let beats = tokio::spawn(heartbeats(Arc::clone(&state)));
    let cancels = tokio::spawn(cancellations(Arc::clone(&state)));
    let free = Arc::new(Semaphore::new(slots as usize));
    // While NATS cannot be reached, attempts are leased from the coordinator over HTTP.
    let leasing = state.http.is_some().then(|| {
        tokio::spawn(lease_attempts(
            Arc::clone(&state),
            Arc::clone(&free),
            stop.clone(),
        ))
    });

    // The server may not be up yet: keep trying until it is, or until asked to stop.
    let queue = loop {
        let setup = async {
            let (_, consumer, settings) = super::queue(&js, &options.pool, wanted).await?;
            let objects = super::components(&js).await?;
            Ok::<_, String>((consumer, settings, objects))
        };
        tokio::select! {
            () = stop.cancelled() => break None,
            setup = tokio::time::timeout(Duration::from_secs(5), setup) => match setup {
                Ok(Ok(ready)) => break Some(ready),
                Ok(Err(e)) => tracing::warn!("worker: {e}; trying again"),
                Err(_) => tracing::warn!("worker: JetStream at {url} does not answer yet; trying again"),
            },
        }
        tokio::select! {
            () = stop.cancelled() => break None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    if let Some((consumer, settings, objects)) = queue {
        let _ = state.objects.set(objects);
        tracing::info!(worker = %state.id, pool = %state.pool, slots, "worker: taking attempts");
        take_attempts(&state, &consumer, settings, &free, &stop).await;
    }
    if let Some(leasing) = leasing {
        let _ = leasing.await;
    }
    // Stopping: no new attempt; running ones get the grace, then are handed back.
    let all = slots;
    let drained = tokio::time::timeout(options.grace, free.acquire_many(all)).await;
    if drained.is_err() {
        state.leaving.store(true, Ordering::Relaxed);
        for (_, stop) in lock(&state.running).values() {
            stop.cancel();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), free.acquire_many(all)).await;
    }
    beats.abort();
    cancels.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    Ok(WorkerSummary {
        finished: state.finished.load(Ordering::Relaxed),
        handed_back: state.handed_back.load(Ordering::Relaxed),
    })
}

/// Takes attempts from the pool's queue on NATS, as many as there are free slots, until
/// `stop`.
async fn take_attempts(
    state: &Arc<State>,
    consumer: &jetstream::consumer::PullConsumer,
    settings: QueueSettings,
    free: &Arc<Semaphore>,
    stop: &CancellationToken,
) {
    'take: loop {
        let first = tokio::select! {
            () = stop.cancelled() => break 'take,
            permit = Arc::clone(free).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break 'take,
            },
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(free).try_acquire_owned() {
            permits.push(permit);
        }
        let batch = consumer
            .fetch()
            .max_messages(permits.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!("worker: cannot take attempts: {e}");
                drop(permits);
                tokio::select! {
                    () = stop.cancelled() => break 'take,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue 'take,
                }
            }
        };
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => {
                    let Some(permit) = permits.pop() else {
                        // More than asked for: hand it back.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        continue;
                    };
                    tokio::spawn(attempt(Arc::clone(state), message, permit, settings));
                }
                Err(e) => tracing::warn!("worker: a message could not be read: {e}"),
            }
        }
    }
}

impl State {
    /// This worker's bucket of account `account` at `rate` (a new one if the rate changed).
    fn bucket(&self, account: &str, rate: FuelRate) -> Arc<FuelBucket> {
        let mut buckets = lock(&self.buckets);
        match buckets.get(account) {
            Some(bucket) if bucket.rate() == rate => Arc::clone(bucket),
            _ => {
                let bucket = Arc::new(FuelBucket::new(rate));
                buckets.insert(account.to_owned(), Arc::clone(&bucket));
                bucket
            }
        }
    }
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Says every heartbeat that this worker is alive, and how busy; and at once when a
/// coordinator asks (one that just started: a heartbeat sent before it listened did not
/// reach it, so every ping is answered).
async fn heartbeats(state: Arc<State>) {
    let subject = format!("{PREFIX}.workers.{}.{}", state.pool, token(&state.id));
    let mut tick = tokio::time::interval(HEARTBEAT);
    // A configuration that does not let workers read pings leaves them to the heartbeats.
    let mut pings = match state
        .client
        .subscribe(super::ping_subject(&state.pool))
        .await
    {
        Ok(pings) => Some(pings),
        Err(e) => {
            tracing::warn!("worker: cannot subscribe to the pool's pings: {e}");
            None
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            ping = async { pings.as_mut()?.next().await }, if pings.is_some() => {
                match (ping, pings.as_mut()) {
                    // The pings already here are answered by the same heartbeat: it leaves
                    // after each of their askers was listening.
                    (Some(_), Some(waiting)) => {
                        while let Some(Some(_)) = waiting.next().now_or_never() {}
                    }
                    _ => pings = None,
                }
            }
        }
        let mut tenants: Vec<String> = lock(&state.running)
            .values()
            .map(|(tenant, _)| tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        let status = WorkerStatus {
            v: VERSION,
            id: state.id.clone(),
            pool: state.pool.clone(),
            slots: state.slots,
            busy: state.busy.load(Ordering::Relaxed),
            finished: state.finished.load(Ordering::Relaxed),
            tenants,
            started_at: state.started_at,
            at: Timestamp::now(),
        };
        if let Ok(payload) = serde_json::to_vec(&status) {
            let _ = state.client.publish(subject.clone(), payload.into()).await;
        }
    }
}

/// Stops the attempts coordinators cancel.
async fn cancellations(state: Arc<State>) {
    let Ok(mut cancels) = state.client.subscribe(format!("{PREFIX}.cancel.*")).await else {
        tracing::error!("worker: cannot subscribe to cancellations");
        return;
    };
    while let Some(message) = cancels.next().await {
        let Ok(key) = std::str::from_utf8(&message.payload) else {
            continue;
        };
        if let Some((_, stop)) = lock(&state.running).get(key) {
            stop.cancel();
        }
    }
}

/// Takes one attempt from its message to its reported end.
async fn attempt(
    state: Arc<State>,
    message: jetstream::Message,
    permit: OwnedSemaphorePermit,
    settings: QueueSettings,
) {
    let delivered = message
        .info()
        .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let (message, acker) = message.split();
    let order = match serde_json::from_slice::<Order>(&message.payload) {
        Ok(order) if order.v == VERSION => order,
        Ok(order) => {
            let reason = format!(
                "the work order is of wire version {} and this worker speaks {VERSION}: run the same wasm-orch on coordinator and workers",
                order.v
            );
            let home = Home::nats(&state, &order, 1);
            report_end(&state, &home, &order, host_error(reason)).await;
            let _ = acker.ack_with(AckKind::Term).await;
            return;
        }
        Err(e) => {
            tracing::warn!("worker: a work order that does not parse is dropped: {e}");
            let _ = acker.ack_with(AckKind::Term).await;
            return;
        }
    };
    let stop = CancellationToken::new();
    {
        let mut running = lock(&state.running);
        if running.contains_key(&order.key) {
            // Delivered again while it still runs here: the running one answers for it.
            return;
        }
        running.insert(order.key.clone(), (order.tenant.clone(), stop.clone()));
    }
    state.busy.fetch_add(1, Ordering::Relaxed);
    let home = Home::nats(&state, &order, delivered);
    // A delivery after the first says so at once: the coordinator counts it, and refuses the
    // calls of the worker that had it before. A first delivery says it only before the first
    // thing it sends home: a short attempt goes out and back in two messages, not three.
    if delivered > 1 {
        home.announce(&order.key, &state.id).await;
    }
    // Keeps the message ours while the attempt runs: an in-progress ack every third of the
    // ack wait, from this task (a task of its own per attempt cost a spawn and a timer).
    let finished = {
        let every = (settings.ack_wait / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // Boxed: the spawned attempt stays small (tokio moves it as it spawns it).
        let mut running = Box::pin(run(&state, &order, stop.clone(), &home));
        loop {
            tokio::select! {
                finished = &mut running => break finished,
                _ = tick.tick() => {
                    let _ = acker.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    lock(&state.running).remove(&order.key);
    state.busy.fetch_sub(1, Ordering::Relaxed);
    if stop.is_cancelled() && state.leaving.load(Ordering::Relaxed) {
        // This worker is going away: another takes the attempt now.
        state.handed_back.fetch_add(1, Ordering::Relaxed);
        let _ = acker.ack_with(AckKind::Nak(None)).await;
    } else {
        report_end(&state, &home, &order, finished).await;
        let _ = acker.ack().await;
        state.finished.fetch_add(1, Ordering::Relaxed);
    }
    drop(permit);
}

/// Leases attempts from the coordinator over HTTP while NATS cannot be reached, as many as
/// there are free slots, until `stop`.
async fn lease_attempts(state: Arc<State>, free: Arc<Semaphore>, stop: CancellationToken) {
    let Some(http) = state.http.clone() else {
        return;
    };
    loop {
        let on_nats = state.client.connection_state() == async_nats::connection::State::Connected
            && state.objects.get().is_some();
        if on_nats {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => continue,
            }
        }
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&free).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let leased = tokio::select! {
            () = stop.cancelled() => return,
            leased = http.lease(&state.id, &state.pool) => leased,
        };
        match leased {
            Ok(Some(granted)) => {
                tokio::spawn(leased_attempt(Arc::clone(&state), granted, permit));
            }
            Ok(None) => drop(permit),
            Err(e) => {
                drop(permit);
                tracing::warn!("worker: cannot lease attempts from {}: {e}", http.base);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs one attempt leased over HTTP to its reported end, renewing its lease meanwhile.
async fn leased_attempt(state: Arc<State>, granted: Granted, permit: OwnedSemaphorePermit) {
    let Some(http) = state.http.clone() else {
        return;
    };
    let home = Home::Http(Arc::clone(&http));
    let order = granted.order;
    let stop = CancellationToken::new();
    {
        let mut running = lock(&state.running);
        if running.contains_key(&order.key) {
            return;
        }
        running.insert(order.key.clone(), (order.tenant.clone(), stop.clone()));
    }
    state.busy.fetch_add(1, Ordering::Relaxed);
    send(
        &state,
        &home,
        &order,
        Report::Started {
            delivered: granted.delivered,
        },
    )
    .await;
    // The lease stays ours while we renew it; a coordinator that cancelled the attempt, or
    // gave it to another worker, says so.
    let gone = Arc::new(AtomicBool::new(false));
    let renewal = {
        let (http, stop, gone) = (Arc::clone(&http), stop.clone(), Arc::clone(&gone));
        let (worker, key) = (state.id.clone(), order.key.clone());
        let every = (granted.lease / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match http.renew(&worker, &key).await.as_deref() {
                    Ok("held") | Err(_) => {}
                    Ok("cancelled") => stop.cancel(),
                    Ok(_) => {
                        gone.store(true, Ordering::Relaxed);
                        stop.cancel();
                    }
                }
            }
        })
    };
    let finished = run(&state, &order, stop.clone(), &home).await;
    renewal.abort();
    lock(&state.running).remove(&order.key);
    state.busy.fetch_sub(1, Ordering::Relaxed);
    if !gone.load(Ordering::Relaxed) {
        report_end(&state, &home, &order, finished).await;
        state.finished.fetch_add(1, Ordering::Relaxed);
    }
    drop(permit);
}

/// Runs the attempt of `order` in a fresh store of this worker's engine; its reports and calls
/// go `home`.
async fn run(state: &State, order: &Order, stop: CancellationToken, home: &Home) -> Finished {
    let agent = match component(state, &order.component, home).await {
        Ok(agent) => agent,
        Err(reason) => return host_error(reason),
    };
    let scratch = state.scratch.join(sha256_hex(order.key.as_bytes()));
    let uses_scratch = order.workdir || !order.inputs.is_empty();
    let mut files = if order.workdir {
        let made = RunDir::create(&scratch)
            .map(Arc::new)
            .and_then(|dir| dir.work_dir(&order.task.branch, true));
        match made {
            Ok(work) => TaskFiles {
                work: Some(work),
                ..TaskFiles::default()
            },
            Err(e) => return host_error(format!("could not make a scratch directory: {e}")),
        }
    } else {
        TaskFiles::default()
    };
    if !order.inputs.is_empty() {
        let dir = scratch.join(".inputs");
        if let Err(e) = fetch_inputs(state, order, home, &dir).await {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(scratch)).await;
            return host_error(format!("its input files did not reach the worker: {e}"));
        }
        files.inputs = Some(dir);
    }
    let bus = Bus::new(order.run_id.as_str());
    let mut events = bus.subscribe();
    let emitter = TaskEmitter::new(
        Arc::clone(&bus),
        order.task.clone(),
        EmitterLimits::default(),
    );
    let job = Job {
        task_ref: order.task.clone(),
        task: Some(0),
        key: Name::from(order.key.as_str()),
        agent: 0,
        limits: order.limits,
        heartbeat: Arc::new(Heartbeat::new()),
        params: Arc::from(order.params.get()),
        upstream: order
            .upstream
            .iter()
            .map(|u| {
                let result = match (&u.output, &u.failed) {
                    (Some(output), _) => UpstreamResult::Output(Arc::from(output.clone())),
                    (None, Some((status, error))) => UpstreamResult::Failed {
                        status: *status,
                        error: error.clone(),
                    },
                    (None, None) => UpstreamResult::Failed {
                        status: TaskStatus::Failed,
                        error: TaskError::new(ErrorKind::Host, "no outcome was sent"),
                    },
                };
                (Name::from(u.node.as_str()), result)
            })
            .collect(),
        cancel: stop,
        keep_files: false,
    };
    let relay = Arc::new(Relay {
        home: home.clone(),
        key: order.key.clone(),
        worker: state.id.clone(),
        timeout: order.limits.timeout,
    });
    // An attempt on fuel rates draws from its coordinator's buckets: the fuel burned goes
    // home every FUEL_REPORT, and the debt it is told of is slept off at the next epoch tick.
    let fuel = (!order.rates.is_empty()).then(|| {
        let local = order
            .rates
            .iter()
            .map(|(account, rate)| state.bucket(account, *rate))
            .collect();
        Arc::new(RelayedFuel::new(local, Arc::clone(&relay)))
    });
    let setup = Setup {
        agent,
        buckets: fuel
            .iter()
            .map(|f| Arc::clone(f) as Arc<dyn crate::govern::FuelDraw>)
            .collect(),
        tenant: Name::from(order.tenant.as_str()),
        run_id: Name::from(order.run_id.as_str()),
        emitter,
        board: BoardScope::relayed(order.task.branch.clone(), Arc::clone(&relay) as _),
        messages: MessageScope::relayed(order.task.node.clone(), Arc::clone(&relay) as _),
        tools: ToolAccess::relayed(Arc::clone(&relay) as _),
        secrets: SecretAccess::none(),
        redactor: Arc::default(),
        files,
    };
    // The guest's progress, partials and logs go home as they happen.
    let forward = async {
        while let Some(event) = events.next().await {
            let report = match &event.kind {
                EventKind::Progress(p) => Report::Progress {
                    fraction: p.fraction,
                    message: p.message.clone(),
                },
                EventKind::Partial(p) => Report::Partial {
                    data: p.data.to_string(),
                },
                EventKind::Log(l) => Report::Log {
                    level: l.level,
                    stream: l.stream,
                    message: l.message.clone(),
                },
                _ => continue,
            };
            send(state, home, order, report).await;
        }
    };
    let execute = async {
        let attempt = Box::pin(state.engine.execute(job, setup)).await;
        bus.close();
        attempt
    };
    let (attempt, ()) = tokio::join!(execute, forward);
    if let Some(fuel) = &fuel {
        // What it burned last is drawn too: the account pays for every unit.
        fuel.inner.report().await;
    }
    if uses_scratch {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(scratch)).await;
    }
    Finished {
        status: attempt.status,
        output: attempt
            .output
            .as_ref()
            .and_then(|o| serde_json::value::RawValue::from_string(o.get().to_owned()).ok()),
        error: attempt.error,
        started_at: attempt.started_at,
        finished_at: attempt.finished_at,
        latency_ms: u64::try_from(attempt.latency.as_millis()).unwrap_or(u64::MAX),
        fuel_used: attempt.fuel_used,
        memory_peak: attempt.memory_peak,
    }
}

/// Fetches the input files of `order` (from the object store, or the coordinator's HTTP API)
/// into `dir`, each checked against its digest and size.
async fn fetch_inputs(state: &State, order: &Order, home: &Home, dir: &Path) -> Result<(), String> {
    super::files::check(&order.inputs)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for file in &order.inputs {
        let bytes = match (home, state.objects.get()) {
            (Home::Http(http), _) => http.blob(&file.digest, file.bytes).await?,
            (Home::Nats { .. }, Some(objects)) => {
                super::fetch::object(objects, &file.digest, file.bytes)
                    .await
                    .map_err(|e| format!("input `{}`: {e}", file.path))?
            }
            (Home::Nats { .. }, None) => {
                return Err("the object store has not answered yet".into());
            }
        };
        let (dir, file) = (dir.to_path_buf(), file.clone());
        tokio::task::spawn_blocking(move || super::files::place(&dir, &file, &bytes))
            .await
            .map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// The component of digest `digest`: compiled already, or fetched from the object store,
/// checked against its digest and compiled once.
async fn component(state: &State, digest: &str, home: &Home) -> Result<Arc<LoadedAgent>, String> {
    if let Some(agent) = lock(&state.agents).get(digest) {
        return Ok(Arc::clone(agent));
    }
    let _one = state.loading.lock().await;
    if let Some(agent) = lock(&state.agents).get(digest) {
        return Ok(Arc::clone(agent));
    }
    let bytes = match (home, state.objects.get()) {
        (Home::Http(http), _) => http.blob(digest, MAX_COMPONENT).await?,
        (Home::Nats { .. }, Some(objects)) => super::fetch::object(objects, digest, MAX_COMPONENT)
            .await
            .map_err(|e| {
                format!("component {digest} could not be fetched from the object store: {e}")
            })?,
        (Home::Nats { .. }, None) => {
            return Err("the components' object store has not answered yet".into());
        }
    };
    if bytes.len() as u64 > MAX_COMPONENT {
        return Err(format!(
            "component {digest} has more than the {MAX_COMPONENT} bytes a component may have"
        ));
    }
    if sha256_hex(&bytes) != digest {
        return Err(format!(
            "the object store's component {digest} does not have that digest: it is damaged"
        ));
    }
    let engine = &state.engine;
    let loaded = tokio::task::block_in_place(|| engine.load_bytes(&bytes))
        .map_err(|e| format!("component {digest} does not load: {e:?}"))?;
    let agent = loaded.0;
    lock(&state.agents).insert(digest.to_owned(), Arc::clone(&agent));
    Ok(agent)
}

async fn send(state: &State, home: &Home, order: &Order, report: Report) {
    if !matches!(report, Report::Finished(_)) {
        home.announce(&order.key, &state.id).await;
    }
    let envelope = Envelope {
        v: VERSION,
        key: order.key.clone(),
        worker: state.id.clone(),
        report,
    };
    let Ok(payload) = serde_json::to_vec(&envelope) else {
        return;
    };
    let sent = match home {
        Home::Nats {
            client, subject, ..
        } => client
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| e.to_string()),
        Home::Http(http) => http.report(payload).await,
    };
    if let Err(e) = sent {
        tracing::warn!("worker: a report on {} was not sent: {e}", order.key);
    }
}

async fn report_end(state: &State, home: &Home, order: &Order, mut finished: Finished) {
    // An end larger than the way home takes would never arrive: it is refused here instead.
    let size = finished.output.as_ref().map_or(0, |o| o.get().len());
    let (max, way) = match home {
        Home::Nats { client, .. } => (client.server_info().max_payload, "NATS (max_payload)"),
        Home::Http(_) => (MAX_HTTP_BODY, "HTTP (the coordinator's limit)"),
    };
    if size + 4096 > max {
        finished.status = TaskStatus::OutputRejected;
        finished.output = None;
        finished.error = Some(TaskError::new(
            ErrorKind::OutputTooLarge,
            format!(
                "the output has {size} bytes, more than a worker can send over {way}: {max}; lower the agent's max_output"
            ),
        ));
    }
    // The end reaches the server before the message's acknowledgement does: both go out on
    // this worker's one connection, in the order they are published (no flush needed, which
    // cost a round trip per attempt). If the connection breaks in between, the message is
    // delivered again and the coordinator counts the second end as a duplicate.
    send(state, home, order, Report::Finished(Box::new(finished))).await;
}

fn host_error(reason: String) -> Finished {
    Finished::failed(ErrorKind::Host, reason)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often, at most, a rated attempt's burned fuel goes home.
const FUEL_REPORT: Duration = Duration::from_millis(20);

/// An attempt's fuel accounts: the worker's own buckets of its rates (shared by the worker's
/// attempts of the same account, drawn at once), and the coordinator's (shared by every
/// worker), told what was burned every [`FUEL_REPORT`] and answering with the debt to sleep
/// off. A report is sent from the epoch tick that finds one due: a spinning guest's own ticks
/// carry it, whatever else the worker's threads are busy with.
#[derive(Debug)]
struct RelayedFuel {
    inner: Arc<FuelAccount>,
}

#[derive(Debug)]
struct FuelAccount {
    local: Vec<Arc<FuelBucket>>,
    relay: Arc<Relay>,
    burned: AtomicU64,
    /// Until when the guest sleeps, as the coordinator last said.
    until: Mutex<Option<std::time::Instant>>,
    /// When the last report went, and whether one is on its way.
    last: Mutex<std::time::Instant>,
    sending: AtomicBool,
}

impl RelayedFuel {
    fn new(local: Vec<Arc<FuelBucket>>, relay: Arc<Relay>) -> Self {
        Self {
            inner: Arc::new(FuelAccount {
                local,
                relay,
                burned: AtomicU64::new(0),
                until: Mutex::new(None),
                last: Mutex::new(std::time::Instant::now()),
                sending: AtomicBool::new(false),
            }),
        }
    }
}

impl FuelAccount {
    /// Sends what was burned since the last report, and takes in the debt.
    async fn report(&self) {
        let burned = self.burned.swap(0, Ordering::Relaxed);
        if burned > 0
            && let Ok(CallReply::Fuel { wait_ms }) =
                self.relay.request(Request::Fuel { burned }).await
        {
            *lock(&self.until) =
                (wait_ms > 0).then(|| std::time::Instant::now() + Duration::from_millis(wait_ms));
        }
        *lock(&self.last) = std::time::Instant::now();
        self.sending.store(false, Ordering::Release);
    }
}

impl crate::govern::FuelDraw for RelayedFuel {
    fn draw(&self, fuel: u64) -> Option<Duration> {
        let account = &self.inner;
        let here = account.local.iter().filter_map(|b| b.draw(fuel)).max();
        account.burned.fetch_add(fuel, Ordering::Relaxed);
        let now = std::time::Instant::now();
        let due = now.duration_since(*lock(&account.last)) >= FUEL_REPORT;
        if due && !account.sending.swap(true, Ordering::AcqRel) {
            let account = Arc::clone(account);
            tokio::spawn(async move { account.report().await });
        }
        let home = (*lock(&account.until)).and_then(|until| until.checked_duration_since(now));
        here.max(home)
    }
}

/// Where an attempt's reports and calls go: its coordinator's reports subject on NATS, or
/// its HTTP API (a leased attempt).
#[derive(Debug, Clone)]
enum Home {
    Nats {
        client: async_nats::Client,
        subject: String,
        /// The attempt's `Started` report (its delivery count), sent once, before anything
        /// else but its end.
        started: Arc<Announced>,
    },
    Http(Arc<HttpHome>),
}

#[derive(Debug)]
struct Announced {
    delivered: u32,
    sent: tokio::sync::OnceCell<()>,
}

impl Home {
    fn nats(state: &State, order: &Order, delivered: u32) -> Self {
        Self::Nats {
            client: state.client.clone(),
            subject: format!("{PREFIX}.reports.{}", token(&order.coordinator)),
            started: Arc::new(Announced {
                delivered,
                sent: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Sends the attempt's `Started` report on NATS, if it has not gone yet (a leased
    /// attempt sends its own as it starts). Whatever is sent after it reaches the coordinator after it: the same
    /// connection, the same subject.
    async fn announce(&self, key: &str, worker: &str) {
        let Self::Nats {
            client,
            subject,
            started,
        } = self
        else {
            return;
        };
        started
            .sent
            .get_or_init(|| async {
                let envelope = Envelope {
                    v: VERSION,
                    key: key.to_owned(),
                    worker: worker.to_owned(),
                    report: Report::Started {
                        delivered: started.delivered,
                    },
                };
                if let Ok(payload) = serde_json::to_vec(&envelope)
                    && let Err(e) = client.publish(subject.clone(), payload.into()).await
                {
                    tracing::warn!("worker: the start of {key} was not reported: {e}");
                }
            })
            .await;
    }
}

/// A worker's tool and blackboard calls, made by the attempt's coordinator.
#[derive(Debug)]
struct Relay {
    home: Home,
    key: String,
    worker: String,
    /// The attempt's time limit: no call waits longer (the engine drops it at its deadline).
    timeout: Duration,
}

impl Relay {
    /// Sends `call` home and waits for its answer.
    async fn request(&self, call: Request) -> Result<CallReply, String> {
        self.home.announce(&self.key, &self.worker).await;
        let call = Call {
            v: VERSION,
            key: self.key.clone(),
            worker: self.worker.clone(),
            call,
        };
        let payload =
            serde_json::to_vec(&call).map_err(|e| format!("the call could not be encoded: {e}"))?;
        let answer = match &self.home {
            Home::Nats {
                client, subject, ..
            } => {
                let request = async_nats::Request::new()
                    .payload(payload.into())
                    .timeout(Some(self.timeout));
                client
                    .send_request(subject.clone(), request)
                    .await
                    .map_err(|e| format!("the coordinator did not answer the call: {e}"))?
                    .payload
                    .to_vec()
            }
            Home::Http(http) => http.call(payload, self.timeout).await?,
        };
        serde_json::from_slice::<CallReply>(&answer)
            .map_err(|e| format!("the coordinator's answer does not parse: {e}"))
    }
}

impl ToolRelay for Relay {
    fn invoke(
        &self,
        name: String,
        input: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ToolError>> + Send + '_>>
    {
        Box::pin(async move {
            match self.request(Request::Tool { tool: name, input }).await {
                Ok(CallReply::Ok(output)) => Ok(output),
                Ok(CallReply::NotFound(m)) => Err(ToolError::NotFound(m)),
                Ok(CallReply::Denied(m)) => Err(ToolError::Denied(m)),
                Ok(CallReply::InvalidInput(m)) => Err(ToolError::InvalidInput(m)),
                Ok(CallReply::Failed(m)) => Err(ToolError::Failed(m)),
                Ok(CallReply::Blackboard(_) | CallReply::Messages(_) | CallReply::Fuel { .. }) => {
                    Err(ToolError::Failed(
                        "the coordinator answered another call".into(),
                    ))
                }
                Err(e) => Err(ToolError::Failed(e)),
            }
        })
    }
}

impl BoardRelay for Relay {
    fn call(
        &self,
        call: BoardCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = BoardReply> + Send + '_>> {
        Box::pin(async move {
            match self.request(Request::Blackboard(call)).await {
                Ok(CallReply::Blackboard(reply)) => reply,
                // A call the coordinator refused before it reached the board (not this
                // worker's attempt, too many at once).
                Ok(CallReply::Denied(why)) => BoardReply::Denied(why),
                Ok(_) => BoardReply::Denied("the coordinator answered another call".into()),
                Err(e) => BoardReply::Denied(e),
            }
        })
    }
}

impl MessageRelay for Relay {
    fn call(
        &self,
        call: MessageCall,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = MessageReply> + Send + '_>> {
        Box::pin(async move {
            match self.request(Request::Messages(call)).await {
                Ok(CallReply::Messages(reply)) => reply,
                Ok(CallReply::Denied(why)) => MessageReply::Denied(why),
                Ok(_) => MessageReply::Denied("the coordinator answered another call".into()),
                Err(e) => MessageReply::Denied(e),
            }
        })
    }
}
