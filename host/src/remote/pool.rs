//! The coordinator's side of a pool of workers: one NATS connection for the runtime, the
//! attempts it has handed out and is waiting for, the live workers (from their heartbeats), and
//! the components it has uploaded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::lease::{Expired, LeaseState, Leased, Leases};
use super::wire::{Call, CallReply, Envelope, Finished, Order, Report, VERSION, WorkerStatus};
use super::{HEARTBEAT, NatsError, PREFIX, QueueSettings, STREAM, check_pool, token};
use crate::engine::{LoadedAgent, read_component};
use crate::model::digest::sha256_hex;

/// How a coordinator hands attempts to a pool of workers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// The pool's name (its queue, `wasm-orch.work.<pool>`).
    pub pool: String,
    /// How long an attempt a worker took may go without an acknowledgement (a worker sends
    /// in-progress acks while it runs it) before it is delivered to another. Used when the
    /// pool's consumer does not exist yet; an existing one keeps its own.
    pub ack_wait: Duration,
    /// How many times an attempt is delivered before it is `worker-lost`.
    pub max_deliver: i64,
    /// Attempts run here at once while no worker can be reached (NATS down, or no live worker
    /// in the pool).
    pub degraded_concurrency: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            pool: "default".to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            degraded_concurrency: 2,
        }
    }
}

impl PoolOptions {
    pub fn new(pool: impl Into<String>) -> Self {
        Self {
            pool: pool.into(),
            ..Self::default()
        }
    }

    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    pub fn max_deliver(mut self, n: i64) -> Self {
        self.max_deliver = n.max(1);
        self
    }

    pub fn degraded_concurrency(mut self, n: usize) -> Self {
        self.degraded_concurrency = n.max(1);
        self
    }
}

/// A connection to a pool of `wasm-orch worker`s. Give it to
/// [`RuntimeBuilder::workers`](crate::RuntimeBuilder::workers) and the runtime's attempts run
/// on the pool's workers where they can.
#[derive(Clone)]
pub struct WorkerPool {
    pub(crate) inner: Arc<PoolInner>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("pool", &self.inner.options.pool)
            .field("coordinator", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// What a pool has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolCounts {
    /// Attempts handed to workers.
    pub remote: u64,
    /// Attempts run here because no worker could be reached.
    pub degraded: u64,
    /// Ends of an attempt after its first (ignored).
    pub duplicates: u64,
    /// Attempts that ended `worker-lost`.
    pub lost: u64,
    /// Attempts delivered to a worker more than once.
    pub redelivered: u64,
}

pub(crate) struct PoolInner {
    pub(crate) client: async_nats::Client,
    js: jetstream::Context,
    url: String,
    pub(crate) options: PoolOptions,
    /// This coordinator's id: its reports' subject.
    pub(crate) id: String,
    ready: tokio::sync::Mutex<Readiness>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Stream sequence of each attempt handed out and not yet ended → its key.
    seqs: Mutex<HashMap<u64, String>>,
    uploaded: Mutex<HashSet<String>>,
    workers: Mutex<BTreeMap<String, (WorkerStatus, Instant)>>,
    pub(crate) degraded: Arc<Semaphore>,
    /// Attempts offered to workers that lease over HTTP (while NATS cannot reach any).
    pub(crate) leases: Leases,
    /// When the pool was made: while it is still connecting (for as long as three
    /// heartbeats), an attempt waits for the connection before it runs here.
    since: Instant,
    /// When the pool's subscriptions were in place at the server: until three heartbeats have
    /// passed from then, a pool that has heard of no worker yet waits for one before it runs
    /// attempts here.
    listening: std::sync::OnceLock<Instant>,
    /// When an attempt first asked whether the pool is ready.
    first_asked: std::sync::OnceLock<Instant>,
    counts: Counts,
    listener: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        self.listener.abort();
        self.reaper.abort();
    }
}

#[derive(Default)]
struct Counts {
    remote: AtomicU64,
    degraded: AtomicU64,
    duplicates: AtomicU64,
    lost: AtomicU64,
    redelivered: AtomicU64,
}

#[derive(Default)]
struct Readiness {
    /// Shared by every attempt handed out: a stream's handle holds its whole configuration,
    /// which was cloned twice per attempt.
    ready: Option<Arc<Ready>>,
    /// When setting up last failed (it is not tried again for a second).
    failed_at: Option<Instant>,
}

#[derive(Clone)]
pub(crate) struct Ready {
    stream: jetstream::stream::Stream,
    objects: jetstream::object_store::ObjectStore,
    pub(crate) settings: QueueSettings,
}

/// Where the answer to a worker's call goes: the NATS request's reply subject, or the HTTP
/// request that waits for it.
pub(crate) enum ReplyTo {
    Nats(async_nats::Subject),
    Http(oneshot::Sender<CallReply>),
}

/// An attempt handed out, waiting for its reports.
struct Pending {
    reports: mpsc::Sender<Report>,
    calls: mpsc::Sender<(Call, ReplyTo)>,
    done: Option<oneshot::Sender<(String, Finished)>>,
    /// The worker that took it last (only its calls are answered).
    worker: Option<String>,
}

/// What an attempt handed out hears: its reports, and its end (with the worker's id).
pub(crate) struct Waiting {
    pub(crate) reports: mpsc::Receiver<Report>,
    /// Tool calls from the worker, each with where its answer goes.
    pub(crate) calls: mpsc::Receiver<(Call, ReplyTo)>,
    pub(crate) done: oneshot::Receiver<(String, Finished)>,
}

/// Reports kept per attempt before more are dropped (the worker's emitter already bounds a
/// guest's progress, partials and logs).
const REPORTS_QUEUED: usize = 4096;

impl WorkerPool {
    /// Connects to NATS at `url` and to the pool `options.pool` on it. A server that is down is
    /// not an error: attempts run here (at the degraded concurrency) until it is back.
    pub async fn connect(url: &str, options: PoolOptions) -> Result<Self, NatsError> {
        check_pool(&options.pool)?;
        let client = super::connect(url, "wasm-orch coordinator").await?;
        let js = jetstream::new(client.clone());
        let id = format!(
            "c{:016x}",
            fastrand::u64(..) ^ u64::from(std::process::id())
        );
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<PoolInner>| PoolInner {
            listener: tokio::spawn(listen(
                client.clone(),
                id.clone(),
                options.pool.clone(),
                weak.clone(),
            )),
            reaper: tokio::spawn(reap(weak.clone())),
            leases: Leases::default(),
            client,
            js,
            url: url.to_owned(),
            degraded: Arc::new(Semaphore::new(options.degraded_concurrency.max(1))),
            options,
            id,
            ready: tokio::sync::Mutex::default(),
            pending: Mutex::default(),
            seqs: Mutex::default(),
            uploaded: Mutex::default(),
            workers: Mutex::default(),
            since: Instant::now(),
            listening: std::sync::OnceLock::new(),
            first_asked: std::sync::OnceLock::new(),
            counts: Counts::default(),
        });
        Ok(Self { inner })
    }

    /// The pool's live workers (heard from in the last three heartbeats), by id.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        let now = Instant::now();
        lock(&self.inner.workers)
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) < 3 * HEARTBEAT)
            .map(|(status, _)| status.clone())
            .collect()
    }

    /// What the pool has done so far.
    pub fn counts(&self) -> PoolCounts {
        let c = &self.inner.counts;
        PoolCounts {
            remote: c.remote.load(Ordering::Relaxed),
            degraded: c.degraded.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            redelivered: c.redelivered.load(Ordering::Relaxed),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.options.pool
    }

    /// Leases worker `worker` an attempt offered over HTTP (see the `lease` module), waiting
    /// up to `wait` for one: the server side of `POST /v1/work/lease`.
    pub async fn lease(&self, worker: &str, wait: Duration) -> Option<Leased> {
        let inner = &self.inner;
        let leased = inner
            .leases
            .lease(worker, inner.options.ack_wait, wait)
            .await?;
        if let Some(waiting) = lock(&inner.pending).get_mut(&leased.key) {
            waiting.worker = Some(worker.to_owned());
        }
        Some(leased)
    }

    /// Worker `worker` still runs attempt `key`: `POST /v1/work/renew`.
    pub fn renew(&self, worker: &str, key: &str) -> LeaseState {
        self.inner
            .leases
            .renew(worker, key, self.inner.options.ack_wait)
    }

    /// A leasing worker's report (an [`Envelope`] as JSON): `POST /v1/work/report`. Refused
    /// when it does not parse, speaks another wire version, or is about an attempt another
    /// worker holds.
    pub fn report(&self, body: &[u8]) -> Result<(), String> {
        let envelope: Envelope =
            serde_json::from_slice(body).map_err(|e| format!("the report does not parse: {e}"))?;
        if envelope.v != VERSION {
            return Err(format!(
                "the report is of wire version {} and this coordinator speaks {VERSION}",
                envelope.v
            ));
        }
        if let Some(holder) = self.inner.leases.holder(&envelope.key)
            && holder != envelope.worker
        {
            return Err(format!(
                "attempt `{}` is leased to another worker",
                crate::model::text::truncate(&envelope.key, 200)
            ));
        }
        self.inner.report(envelope);
        Ok(())
    }

    /// A leasing worker's call for its guest (a [`Call`] as JSON), answered as a NATS worker's
    /// is (checked, made and audited by the attempt's coordinator): `POST /v1/work/call`.
    /// Returns the answer, as JSON.
    pub async fn call(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let call: Call =
            serde_json::from_slice(body).map_err(|e| format!("the call does not parse: {e}"))?;
        if call.v != VERSION {
            return Err(format!(
                "the call is of wire version {} and this coordinator speaks {VERSION}",
                call.v
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.inner.call(call, ReplyTo::Http(tx)).await;
        let answer = rx.await.unwrap_or_else(|_| {
            CallReply::Failed("the attempt ended before its call was answered".into())
        });
        serde_json::to_vec(&answer).map_err(|e| e.to_string())
    }

    /// The file of digest `digest` (a component, an input file), if an attempt offered for
    /// lease needs it: read again, at most [`MAX_BLOB`] bytes, and checked against the digest:
    /// `GET /v1/work/blobs/{digest}`.
    pub async fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = self.inner.leases.blob(digest) else {
            return Ok(None);
        };
        let bytes = tokio::task::spawn_blocking(move || read_blob(&path))
            .await
            .map_err(|e| e.to_string())??;
        if sha256_hex(&bytes) != digest {
            return Err("the file changed since its attempt was offered".into());
        }
        Ok(Some(bytes))
    }

    /// How long a lease lasts unrenewed (the pool's ack wait).
    pub fn lease_time(&self) -> Duration {
        self.inner.options.ack_wait
    }
}

impl PoolInner {
    /// The queue, if attempts can be handed out now: connected, set up, with a live worker.
    pub(crate) async fn ready(&self) -> Option<Arc<Ready>> {
        // A coordinator that just started may still be connecting (the first connection is
        // made in the background): that is not a server that is down.
        let listening = loop {
            if let Some(at) = self.listening.get() {
                break *at;
            }
            if self.client.connection_state() == async_nats::connection::State::Disconnected
                || self.since.elapsed() >= 3 * HEARTBEAT
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return None;
        }
        // Nor has it heard the workers' heartbeats yet. Its first attempt may also come long
        // after it started listening (a process busy loading its workflow reads the beats
        // that came meanwhile late): that attempt asks the workers again, and waits a
        // heartbeat for their answer. Later ones wait no longer than the three beats after
        // listening (while no worker answers, each attempt would otherwise wait).
        let first = *self.first_asked.get_or_init(|| {
            if !self.live() {
                let (client, pool) = (self.client.clone(), self.options.pool.clone());
                tokio::spawn(async move { ask_for_heartbeats(&client, &pool).await });
            }
            Instant::now()
        });
        let deadline = (listening + 3 * HEARTBEAT).max(first + HEARTBEAT);
        while !self.live() {
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut readiness = self.ready.lock().await;
        if let Some(ready) = &readiness.ready {
            return Some(Arc::clone(ready));
        }
        if readiness
            .failed_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        let wanted = QueueSettings {
            ack_wait: self.options.ack_wait,
            max_deliver: self.options.max_deliver,
        };
        let setup = async {
            let (stream, _, settings) = super::queue(&self.js, &self.options.pool, wanted).await?;
            let objects = super::components(&self.js).await?;
            Ok::<_, String>(Arc::new(Ready {
                stream,
                objects,
                settings,
            }))
        };
        match tokio::time::timeout(Duration::from_secs(5), setup).await {
            Ok(Ok(ready)) => {
                readiness.ready = Some(Arc::clone(&ready));
                Some(ready)
            }
            Ok(Err(e)) => {
                tracing::warn!("pool `{}` at {}: {e}", self.options.pool, self.url);
                readiness.failed_at = Some(Instant::now());
                None
            }
            Err(_) => {
                tracing::warn!(
                    "pool `{}` at {}: JetStream did not answer",
                    self.options.pool,
                    self.url
                );
                readiness.failed_at = Some(Instant::now());
                None
            }
        }
    }

    /// Whether a worker of the pool was heard from in the last three heartbeats.
    fn live(&self) -> bool {
        let now = Instant::now();
        lock(&self.workers)
            .values()
            .any(|(_, seen)| now.duration_since(*seen) < 3 * HEARTBEAT)
    }

    /// Puts the file at `path` (of `digest`) in the object store, once: an input file of an
    /// attempt handed to a worker.
    pub(crate) async fn upload_file(
        &self,
        ready: &Ready,
        digest: &str,
        path: &std::path::Path,
    ) -> Result<(), String> {
        if lock(&self.uploaded).contains(digest) {
            return Ok(());
        }
        if ready.objects.info(digest).await.is_err() {
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| format!("`{}`: {e}", path.display()))?;
            ready
                .objects
                .put(digest, &mut file)
                .await
                .map_err(|e| format!("uploading `{}`: {e}", path.display()))?;
        }
        lock(&self.uploaded).insert(digest.to_owned());
        Ok(())
    }

    /// Puts `agent`'s component in the object store, once.
    pub(crate) async fn upload(&self, ready: &Ready, agent: &LoadedAgent) -> Result<(), String> {
        if lock(&self.uploaded).contains(&agent.digest) {
            return Ok(());
        }
        if ready.objects.info(&agent.digest).await.is_ok() {
            lock(&self.uploaded).insert(agent.digest.clone());
            return Ok(());
        }
        let Some(path) = agent.source.clone() else {
            return Err("the component was not loaded from a file".into());
        };
        let bytes = tokio::task::spawn_blocking(move || read_component(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the component again: {e:?}"))?;
        if sha256_hex(&bytes) != agent.digest {
            return Err("the component's file changed since it was loaded".into());
        }
        ready
            .objects
            .put(agent.digest.as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| format!("uploading the component: {e}"))?;
        lock(&self.uploaded).insert(agent.digest.clone());
        Ok(())
    }

    /// Waits for the reports of attempt `key` (before it is handed out).
    pub(crate) fn expect(&self, key: &str) -> Waiting {
        let (reports, reports_rx) = mpsc::channel(REPORTS_QUEUED);
        let (calls, calls_rx) = mpsc::channel(16);
        let (done, done_rx) = oneshot::channel();
        lock(&self.pending).insert(
            key.to_owned(),
            Pending {
                reports,
                calls,
                done: Some(done),
                worker: None,
            },
        );
        Waiting {
            reports: reports_rx,
            calls: calls_rx,
            done: done_rx,
        }
    }

    /// Hands `order` to the pool's queue; returns its stream sequence.
    pub(crate) async fn submit(&self, order: &Order) -> Result<u64, String> {
        let payload = serde_json::to_vec(order).map_err(|e| e.to_string())?;
        let max = self.client.server_info().max_payload;
        if payload.len() > max {
            return Err(format!(
                "the work order has {} bytes, more than the {max} the NATS server takes",
                payload.len()
            ));
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", order.key.as_str());
        let ack = self
            .js
            .publish_with_headers(
                super::work_subject(&self.options.pool),
                headers,
                payload.into(),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if ack.stream != STREAM {
            return Err(format!(
                "the work subject is stored by stream `{}`",
                ack.stream
            ));
        }
        lock(&self.seqs).insert(ack.sequence, order.key.clone());
        self.counts.remote.fetch_add(1, Ordering::Relaxed);
        Ok(ack.sequence)
    }

    /// Forgets attempt `key` (handed out as `seq`): later reports about it are duplicates.
    pub(crate) fn forget(&self, key: &str, seq: Option<u64>) {
        lock(&self.pending).remove(key);
        if let Some(seq) = seq {
            lock(&self.seqs).remove(&seq);
        }
    }

    /// Stops attempt `key`: workers running it stop it; if it is still queued, it is removed.
    pub(crate) async fn cancel(&self, ready: &Ready, key: &str, seq: u64) {
        let subject = format!("{PREFIX}.cancel.{}", self.id);
        let _ = self.client.publish(subject, key.to_owned().into()).await;
        let _ = ready.stream.delete_message(seq).await;
    }

    pub(crate) fn count_degraded(&self) {
        self.counts.degraded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_redelivered(&self) {
        self.counts.redelivered.fetch_add(1, Ordering::Relaxed);
    }

    /// A report from a worker.
    fn report(&self, envelope: Envelope) {
        let mut pending = lock(&self.pending);
        let Some(waiting) = pending.get_mut(&envelope.key) else {
            if matches!(envelope.report, Report::Finished(_)) {
                self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        match envelope.report {
            Report::Finished(finished) => match waiting.done.take() {
                Some(done) => {
                    let _ = done.send((envelope.worker, *finished));
                }
                None => {
                    self.counts.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            },
            other => {
                if matches!(other, Report::Started { .. }) {
                    waiting.worker = Some(envelope.worker);
                }
                let _ = waiting.reports.try_send(other);
            }
        }
    }

    /// A worker's tool call: to the attempt it is for, if that worker runs it.
    async fn call(&self, call: Call, reply: ReplyTo) {
        let refused = {
            let mut pending = lock(&self.pending);
            match pending.get_mut(&call.key) {
                None => Err((
                    format!("attempt `{}` is not running for this coordinator", call.key),
                    reply,
                )),
                Some(waiting) if waiting.worker.as_deref() != Some(call.worker.as_str()) => Err((
                    format!("attempt `{}` is not worker `{}`'s", call.key, call.worker),
                    reply,
                )),
                Some(waiting) => match waiting.calls.try_send((call, reply)) {
                    Ok(()) => Ok(()),
                    Err(
                        mpsc::error::TrySendError::Full((_, reply))
                        | mpsc::error::TrySendError::Closed((_, reply)),
                    ) => Err(("too many tool calls at once".to_owned(), reply)),
                },
            }
        };
        if let Err((reason, reply)) = refused {
            self.answer(reply, &CallReply::Denied(reason)).await;
        }
    }

    /// Answers a worker's tool call.
    pub(crate) async fn answer(&self, reply: ReplyTo, answer: &CallReply) {
        match reply {
            ReplyTo::Nats(subject) => {
                if let Ok(payload) = serde_json::to_vec(answer) {
                    let _ = self.client.publish(subject, payload.into()).await;
                }
            }
            ReplyTo::Http(tx) => {
                let _ = tx.send(answer.clone());
            }
        }
    }

    /// Attempt `key`, leased over HTTP, is given up: every lease of it ran out.
    fn lease_lost(&self, key: &str, why: String) {
        let done = lock(&self.pending)
            .get_mut(key)
            .and_then(|waiting| waiting.done.take());
        if let Some(done) = done {
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
            let _ = done.send((
                String::new(),
                Finished::failed(crate::model::status::ErrorKind::WorkerLost, why),
            ));
        }
    }

    /// The server gave up on the attempt handed out as `seq`: every delivery went unanswered.
    fn lost(&self, seq: u64) -> bool {
        let Some(key) = lock(&self.seqs).remove(&seq) else {
            return false;
        };
        let done = lock(&self.pending)
            .get_mut(&key)
            .and_then(|waiting| waiting.done.take());
        if let Some(done) = done {
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
            let _ = done.send((String::new(), super::dispatch::lost(seq)));
        }
        true
    }

    fn heartbeat(&self, status: WorkerStatus) {
        lock(&self.workers).insert(status.id.clone(), (status, Instant::now()));
    }
}

/// Pings `pool`'s workers: each answers with a heartbeat at once.
async fn ask_for_heartbeats(client: &async_nats::Client, pool: &str) {
    if let Err(e) = client
        .publish(super::ping_subject(pool), bytes::Bytes::new())
        .await
    {
        tracing::debug!("pool `{pool}`: the workers were not asked for a heartbeat: {e}");
    }
}

/// Reads what the pool's workers and the server say to this coordinator, until the pool is
/// dropped.
async fn listen(
    client: async_nats::Client,
    id: String,
    pool: String,
    inner: std::sync::Weak<PoolInner>,
) {
    let subscribe = async {
        let reports = client.subscribe(format!("{PREFIX}.reports.{id}")).await?;
        let beats = client
            .subscribe(format!("{PREFIX}.workers.{}.*", token(&pool)))
            .await?;
        let lost = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.pool-{pool}"
            ))
            .await?;
        Ok::<_, async_nats::SubscribeError>((reports, beats, lost))
    };
    let (mut reports, mut beats, mut lost) = match subscribe.await {
        Ok(subscribers) => subscribers,
        Err(e) => {
            tracing::error!("pool `{pool}`: cannot subscribe to the workers' reports: {e}");
            return;
        }
    };
    // The subscriptions are in place once they are written to the server (the first
    // connection is made in the background): from then on, the workers' heartbeats reach
    // this pool.
    let listening = client.clone();
    let mut listening = Box::pin(async move { listening.flush().await });
    let mut marked = false;
    loop {
        tokio::select! {
            Some(message) = reports.next() => {
                let Some(inner) = inner.upgrade() else { return };
                // A request is a tool call: on the reports' subject, so that it is read after
                // the report that its worker took the attempt.
                if let Some(reply) = message.reply {
                    match serde_json::from_slice::<Call>(&message.payload) {
                        Ok(call) if call.v == VERSION => inner.call(call, ReplyTo::Nats(reply)).await,
                        _ => inner.answer(ReplyTo::Nats(reply), &CallReply::Failed(format!(
                            "a tool call this coordinator (wire version {VERSION}) cannot read"
                        ))).await,
                    }
                    continue;
                }
                match serde_json::from_slice::<Envelope>(&message.payload) {
                    Ok(envelope) if envelope.v == VERSION => inner.report(envelope),
                    Ok(envelope) => tracing::warn!(
                        "pool `{pool}`: worker `{}` speaks version {} (this coordinator: {VERSION}); its report is ignored",
                        crate::model::text::truncate(&envelope.worker, 80), envelope.v
                    ),
                    Err(e) => tracing::warn!("pool `{pool}`: a report that does not parse: {e}"),
                }
            }
            Some(message) = beats.next() => {
                let Some(inner) = inner.upgrade() else { return };
                if let Ok(status) = serde_json::from_slice::<WorkerStatus>(&message.payload) {
                    inner.heartbeat(status);
                }
            }
            Some(message) = lost.next() => {
                let Some(inner) = inner.upgrade() else { return };
                #[derive(serde::Deserialize)]
                struct Advisory { stream_seq: u64 }
                if let Ok(advisory) = serde_json::from_slice::<Advisory>(&message.payload)
                    && inner.lost(advisory.stream_seq)
                {
                    // It stays in the stream otherwise (never acknowledged).
                    let ready = inner.ready.lock().await.ready.clone();
                    if let Some(ready) = ready {
                        let _ = ready.stream.delete_message(advisory.stream_seq).await;
                    }
                }
            }
            flushed = &mut listening, if !marked => {
                marked = true;
                match flushed {
                    Ok(()) => {
                        ask_for_heartbeats(&client, &pool).await;
                        let Some(inner) = inner.upgrade() else { return };
                        let _ = inner.listening.set(Instant::now());
                    }
                    Err(e) => tracing::warn!("pool `{pool}`: the subscriptions were not sent: {e}"),
                }
            }
            else => return,
        }
    }
}

/// Offers again the leases that ran out (their workers stopped renewing them), or ends their
/// attempts `worker-lost` past the pool's max-deliver count; until the pool is dropped.
async fn reap(inner: std::sync::Weak<PoolInner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let max = u32::try_from(inner.options.max_deliver.max(1)).unwrap_or(u32::MAX);
        for (key, expired) in inner.leases.expire(Instant::now(), max) {
            match expired {
                Expired::Again => inner.count_redelivered(),
                Expired::Lost(why) => inner.lease_lost(&key, why),
            }
        }
    }
}

/// The most bytes a blob served to a leasing worker may have (a component, an input file).
pub const MAX_BLOB: u64 = 256 << 20;

/// A file's bytes, refused past [`MAX_BLOB`].
fn read_blob(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BLOB + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_BLOB {
        return Err(format!(
            "`{}` has more than the {MAX_BLOB} bytes a worker is sent",
            path.display()
        ));
    }
    Ok(bytes)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
