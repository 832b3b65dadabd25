//! The executor of a run whose runtime has a pool of workers: each attempt goes to a worker
//! when it can, and runs here when it cannot (while no worker can be reached, at the pool's
//! degraded concurrency). The scheduler sees one executor either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::pool::{PoolInner, Ready, ReplyTo, Waiting, WorkerPool};
use super::wire::{CallReply, Finished, InputFile, Order, Report, Request, UpstreamWire, VERSION};
use crate::bus::{SharedEmitter, TaskEmitter, lock};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::capabilities::blackboard::BlackboardView;
use crate::capabilities::messages::MessagesView;
use crate::engine::{LocalExecutor, RunAgent};
use crate::govern::{FuelBucket, FuelDraw};
use crate::model::Name;
use crate::model::digest::sha256_hex;
use crate::model::events::{LogLevel, LogStream, TaskGrants};
use crate::model::port::{Attempt, Executor, Job, UpstreamResult};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::wit::v3::wasm_orch::agent::tools::ToolError;

/// A relayed message call being answered: where its answer goes, and the answer.
type Answering = std::pin::Pin<Box<dyn std::future::Future<Output = (ReplyTo, CallReply)> + Send>>;

/// Interfaces a worker does not serve: secret values stay in the coordinator's process.
const HOME_ONLY: &[&str] = &["wasm-orch:agent/secrets"];

/// Runs a run's attempts on a pool's workers, or here.
pub(crate) struct Dispatch {
    pub(crate) local: LocalExecutor,
    pub(crate) pool: Option<WorkerPool>,
    /// How the last attempt went out: 0 not yet, 1 to workers, 2 here (degraded).
    mode: AtomicU8,
}

impl Dispatch {
    pub(crate) fn new(local: LocalExecutor, pool: Option<WorkerPool>) -> Self {
        Self {
            local,
            pool,
            mode: AtomicU8::new(0),
        }
    }
}

impl Executor for Dispatch {
    async fn execute(&self, job: Job) -> Attempt {
        let Some(pool) = &self.pool else {
            return self.local.execute(job).await;
        };
        // Boxed: the way to a worker holds large futures (NATS requests, the reports'
        // stream); an attempt that runs here keeps a small one (it is moved as it is spawned).
        Box::pin(self.pooled(&pool.inner, job)).await
    }
}

impl Dispatch {
    /// An attempt of a run that has a pool: on a worker, or here.
    async fn pooled(&self, pool: &PoolInner, job: Job) -> Attempt {
        let Some(agent) = self.local.run.agents.get(job.agent) else {
            return self.local.execute(job).await;
        };
        if let Err(why) = self.portable(&job, agent) {
            tracing::debug!(node = %job.task_ref.node, "runs here: {why}");
            return self.local.execute(job).await;
        }
        match pool.ready().await {
            Some(ready) => {
                self.transition(1, pool, "workers are reachable: attempts go to the pool");
                match self.remote(pool, &ready, agent, job).await {
                    Ok(attempt) => attempt,
                    Err(job) => self.degraded(pool, *job).await,
                }
            }
            None => {
                self.transition(
                    2,
                    pool,
                    "no worker can be reached (NATS down, or no live worker in the pool): attempts run here",
                );
                self.degraded(pool, job).await
            }
        }
    }

    /// Why an attempt cannot run on a worker, if it cannot.
    fn portable(&self, job: &Job, agent: &RunAgent) -> Result<(), &'static str> {
        let Some(task) = job.task else {
            return Err("a diagnosis reads the run's state");
        };
        if agent.loaded.source.is_none() {
            return Err("its component was not loaded from a file");
        }
        let _ = task;
        let home = agent.loaded.imports.iter().any(|import| {
            let name = import.split('@').next().unwrap_or(import);
            HOME_ONLY.contains(&name)
        });
        if home {
            return Err("its component imports secrets");
        }
        Ok(())
    }

    /// Publishes a change of where the run's attempts go, once per change.
    fn transition(&self, mode: u8, pool: &PoolInner, message: &str) {
        let before = self.mode.swap(mode, Ordering::Relaxed);
        if before != mode && !(before == 0 && mode == 1) {
            tracing::warn!(pool = %pool.options.pool, "{message}");
        }
        if before != mode {
            self.local
                .run
                .bus
                .publish(crate::model::events::EventKind::Dispatch(
                    crate::model::events::DispatchChanged {
                        pool: Name::from(pool.options.pool.as_str()),
                        to: if mode == 1 { "workers" } else { "local" }.into(),
                        reason: message.to_owned(),
                    },
                ));
        }
    }

    /// Runs an attempt here because no worker can: at the pool's degraded concurrency. While
    /// workers lease attempts over HTTP, it is offered to them too, and runs where it is
    /// taken first.
    async fn degraded(&self, pool: &PoolInner, job: Job) -> Attempt {
        pool.count_degraded();
        job.heartbeat
            .beat(0.0, "waiting to run here: no worker can be reached");
        let agent = self.local.run.agents.get(job.agent);
        if let Some(agent) = agent.filter(|_| pool.leases.has_workers()) {
            return Box::pin(self.offered(pool, agent, job)).await;
        }
        let permit = tokio::select! {
            biased;
            () = job.cancel.cancelled() => {
                return Attempt::not_run(TaskStatus::Cancelled, ErrorKind::Cancelled, "the run was cancelled".into());
            }
            permit = Arc::clone(&pool.degraded).acquire_owned() => permit,
        };
        let attempt = self.local.execute(job).await;
        drop(permit);
        attempt
    }

    /// Offers an attempt for lease over HTTP and waits for a degraded slot here: whichever
    /// comes first runs it.
    async fn offered(&self, pool: &PoolInner, agent: &RunAgent, job: Job) -> Attempt {
        let inputs = match self.inputs(&job).await {
            Ok(inputs) => inputs,
            Err(e) => {
                tracing::debug!(node = %job.task_ref.node, "runs here: {e}");
                return self.here(pool, job).await;
            }
        };
        let mut blobs: Vec<(String, std::path::PathBuf)> = inputs
            .iter()
            .map(|(file, path)| (file.digest.clone(), path.clone()))
            .collect();
        if let Some(source) = &agent.loaded.source {
            blobs.push((agent.loaded.digest.clone(), source.clone()));
        }
        let files = inputs.into_iter().map(|(file, _)| file).collect();
        let Some(order) = self.order(pool, agent, &job, files) else {
            return self.here(pool, job).await;
        };
        if let Some(stopped) = self.out_of_debt(agent, &job).await {
            return stopped;
        }
        let Ok(text) = serde_json::to_string(&order) else {
            return self.here(pool, job).await;
        };
        let key = order.key;
        let waiting = pool.expect(&key);
        let mut taken = pool.leases.offer(&key, Arc::from(text), blobs);
        let leased = tokio::select! {
            biased;
            () = job.cancel.cancelled() => {
                pool.leases.cancel(&key);
                pool.leases.release(&key);
                pool.forget(&key, None);
                return Attempt::not_run(TaskStatus::Cancelled, ErrorKind::Cancelled, "the run was cancelled".into());
            }
            worker = &mut taken => worker.is_ok(),
            permit = Arc::clone(&pool.degraded).acquire_owned() => {
                if pool.leases.withdraw(&key) {
                    pool.forget(&key, None);
                    let attempt = self.local.execute(job).await;
                    drop(permit);
                    return attempt;
                }
                // A worker leased it meanwhile: it runs there.
                true
            }
        };
        if !leased {
            pool.forget(&key, None);
            return self.here(pool, job).await;
        }
        let run = &self.local.run;
        if let Err(refused) = run.claims.claim(&run.tenant, &job.key, &job.task_ref) {
            pool.leases.cancel(&key);
            pool.forget(&key, None);
            return Attempt::not_run(TaskStatus::Failed, ErrorKind::Claimed, refused.to_string());
        }
        self.follow(pool, agent, job, waiting, Handout::Lease).await
    }

    /// Runs an attempt here, at the degraded concurrency.
    async fn here(&self, pool: &PoolInner, job: Job) -> Attempt {
        let permit = tokio::select! {
            biased;
            () = job.cancel.cancelled() => {
                return Attempt::not_run(TaskStatus::Cancelled, ErrorKind::Cancelled, "the run was cancelled".into());
            }
            permit = Arc::clone(&pool.degraded).acquire_owned() => permit,
        };
        let attempt = self.local.execute(job).await;
        drop(permit);
        attempt
    }

    /// The fuel buckets an attempt of `agent` draws on (its tenant's, its agent's).
    fn buckets<'a>(&'a self, agent: &'a RunAgent) -> impl Iterator<Item = &'a Arc<FuelBucket>> {
        self.local
            .run
            .tenant_bucket
            .iter()
            .chain(agent.bucket.iter())
    }

    /// Waits out the debt of the attempt's fuel rates before it is handed out, as an attempt
    /// here waits before it starts; the attempt's end if it is cancelled or runs out of time
    /// meanwhile.
    async fn out_of_debt(&self, agent: &RunAgent, job: &Job) -> Option<Attempt> {
        let wait = self.buckets(agent).filter_map(|b| b.debt()).max()?;
        if wait >= job.limits.timeout {
            return Some(Attempt::not_run(
                TaskStatus::TimedOut,
                ErrorKind::Timeout,
                format!(
                    "its fuel rate's debt ({:.1} s) outlasts its time limit",
                    wait.as_secs_f64()
                ),
            ));
        }
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => Some(Attempt::not_run(
                TaskStatus::Cancelled,
                ErrorKind::Cancelled,
                "the run was cancelled".into(),
            )),
            () = tokio::time::sleep(wait) => None,
        }
    }

    /// The task's input files, staged here as for an attempt here and listed with their
    /// digests (none: it has none); why they cannot go to a worker (too many, too large,
    /// unreadable), if they cannot.
    async fn inputs(&self, job: &Job) -> Result<Vec<(InputFile, std::path::PathBuf)>, String> {
        let run = &self.local.run;
        let Some(sources) = job
            .task
            .and_then(|t| run.inputs(t))
            .filter(|s| !s.is_empty())
        else {
            return Ok(Vec::new());
        };
        let (run_dir, branch) = (Arc::clone(&run.run_dir), job.task_ref.branch.clone());
        tokio::task::spawn_blocking(move || {
            let dir = run_dir
                .inputs(&branch, &sources)
                .map_err(|e| format!("its input files could not be staged: {e}"))?;
            super::files::listed(&dir)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// An attempt's work order; `None` if its parameters or upstream outputs cannot be sent.
    fn order(
        &self,
        pool: &PoolInner,
        agent: &RunAgent,
        job: &Job,
        inputs: Vec<InputFile>,
    ) -> Option<Order> {
        let run = &self.local.run;
        Some(Order {
            v: VERSION,
            coordinator: pool.id.clone(),
            key: job.key.to_string(),
            run_id: run.run_id.to_string(),
            tenant: run.tenant.to_string(),
            task: job.task_ref.clone(),
            component: agent.loaded.digest.clone(),
            limits: job.limits,
            workdir: agent.workdir,
            params: RawValue::from_string(job.params.to_string()).ok()?,
            rates: run
                .tenant_bucket
                .iter()
                .map(|b| (format!("tenant:{}", run.tenant), b.rate()))
                .chain(
                    agent
                        .bucket
                        .iter()
                        .map(|b| (format!("agent:{}", agent.loaded.digest), b.rate())),
                )
                .collect(),
            upstream: job
                .upstream
                .iter()
                .map(|(node, result)| match result {
                    UpstreamResult::Output(output) => UpstreamWire {
                        node: node.to_string(),
                        output: RawValue::from_string(output.get().to_owned()).ok(),
                        failed: None,
                    },
                    UpstreamResult::Failed { status, error } => UpstreamWire {
                        node: node.to_string(),
                        output: None,
                        failed: Some((*status, error.clone())),
                    },
                })
                .collect(),
            inputs,
        })
    }

    /// Hands an attempt to a worker and waits for its end. Gives the job back if it could not
    /// be handed out (it then runs here).
    async fn remote(
        &self,
        pool: &PoolInner,
        ready: &Arc<Ready>,
        agent: &RunAgent,
        job: Job,
    ) -> Result<Attempt, Box<Job>> {
        let run = &self.local.run;
        if let Err(e) = pool.upload(ready, &agent.loaded).await {
            tracing::warn!(node = %job.task_ref.node, "runs here: {e}");
            return Err(Box::new(job));
        }
        let inputs = match self.inputs(&job).await {
            Ok(inputs) => inputs,
            Err(e) => {
                tracing::debug!(node = %job.task_ref.node, "runs here: {e}");
                return Err(Box::new(job));
            }
        };
        for (file, path) in &inputs {
            if let Err(e) = pool.upload_file(ready, &file.digest, path).await {
                tracing::warn!(node = %job.task_ref.node, "runs here: {e}");
                return Err(Box::new(job));
            }
        }
        let files = inputs.into_iter().map(|(file, _)| file).collect();
        let Some(order) = self.order(pool, agent, &job, files) else {
            return Err(Box::new(job));
        };
        if let Some(stopped) = self.out_of_debt(agent, &job).await {
            return Ok(stopped);
        }
        // Claimed here, as a local attempt would be: a repeat of the key is refused.
        if let Err(refused) = run.claims.claim(&run.tenant, &job.key, &job.task_ref) {
            return Ok(Attempt::not_run(
                TaskStatus::Failed,
                ErrorKind::Claimed,
                refused.to_string(),
            ));
        }
        let key = order.key.clone();
        let waiting = pool.expect(&key);
        let seq = match pool.submit(&order).await {
            Ok(seq) => seq,
            Err(e) => {
                pool.forget(&key, None);
                return Ok(Attempt::not_run(
                    TaskStatus::Failed,
                    ErrorKind::Unavailable,
                    format!(
                        "could not hand the attempt to pool `{}`: {e}",
                        pool.options.pool
                    ),
                ));
            }
        };
        let handout = Handout::Queue {
            ready: Arc::clone(ready),
            seq,
        };
        Ok(self.follow(pool, agent, job, waiting, handout).await)
    }

    /// Follows an attempt a worker runs to its end: its reports become the attempt's events,
    /// its guest's calls are made here.
    async fn follow(
        &self,
        pool: &PoolInner,
        agent: &RunAgent,
        job: Job,
        mut waiting: Waiting,
        handout: Handout,
    ) -> Attempt {
        let run = &self.local.run;
        let key = job.key.to_string();
        let has_inputs = job
            .task
            .and_then(|t| run.inputs(t))
            .is_some_and(|i| !i.is_empty());
        let mut emitter = TaskEmitter::new(
            Arc::clone(&run.bus),
            job.task_ref.clone(),
            run.emitter_limits,
        )
        .with_heartbeat(Arc::clone(&job.heartbeat))
        .for_tenant(&run.tenant, Arc::clone(&run.redactor));
        let tools = run.tool_access(&job, agent);
        let board = run.board_scope(&job);
        let messages = run.message_scope(&job);
        // Message calls being answered (a receive waits for its message or its timeout).
        let mut waits: FuturesUnordered<Answering> = FuturesUnordered::new();
        emitter.grants(TaskGrants {
            task: job.task_ref.clone(),
            tenant: run.tenant.clone(),
            tools: tools.effective(),
            secrets: Vec::new(),
            workdir: agent
                .workdir
                .then(|| format!("scratch, on a worker of pool `{}`", pool.options.pool)),
            inputs: if has_inputs {
                vec!["inputs".to_owned()]
            } else {
                Vec::new()
            },
            blackboard: format!("branch `{}`, through the coordinator", job.task_ref.branch),
        });
        let events: SharedEmitter = Arc::new(std::sync::Mutex::new(emitter));
        // However the workers fare, the attempt ends: after every delivery's time and wait.
        let settings = match &handout {
            Handout::Queue { ready, .. } => ready.settings,
            Handout::Lease => super::QueueSettings {
                ack_wait: pool.options.ack_wait,
                max_deliver: pool.options.max_deliver,
            },
        };
        let deliveries = u32::try_from(settings.max_deliver.max(1)).unwrap_or(u32::MAX);
        let patience = (job.limits.timeout + settings.ack_wait).saturating_mul(deliveries)
            + Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + patience;
        let started = Instant::now();
        let ended = loop {
            tokio::select! {
                biased;
                done = &mut waiting.done => break done.ok(),
                Some(report) = waiting.reports.recv() => match report {
                    Report::Started { delivered } => {
                        if delivered > 1 {
                            pool.count_redelivered();
                            lock(&events).log(
                                LogLevel::Warn,
                                LogStream::Host,
                                &format!("delivered again (delivery {delivered}): its earlier worker stopped answering"),
                            );
                        }
                    }
                    Report::Progress { fraction, message } => lock(&events).progress(fraction, &message),
                    Report::Partial { data } => lock(&events).partial(&data),
                    Report::Log { level, stream, message } => lock(&events).log(level, stream, &message),
                    Report::Finished(_) => {}
                },
                // The worker's guest called a tool or the blackboard: checked, made and
                // audited here, as a local attempt's call is.
                Some((call, reply)) = waiting.calls.recv() => {
                    let (tool, input) = match call.call {
                        Request::Tool { tool, input } => (tool, input),
                        // The fuel its guest burned: drawn from the attempt's rates here.
                        Request::Fuel { burned } => {
                            let wait = self.buckets(agent).filter_map(|b| b.draw(burned)).max();
                            let wait_ms = wait.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
                            pool.answer(reply, &CallReply::Fuel { wait_ms }).await;
                            continue;
                        }
                        Request::Blackboard(call) => {
                            let answer = BlackboardView::new(&board, &events).answer(call);
                            pool.answer(reply, &CallReply::Blackboard(answer)).await;
                            continue;
                        }
                        // A receive may wait: it is answered beside the rest, never before
                        // the reports that follow it.
                        Request::Messages(call) => {
                            let (messages, events) = (messages.clone(), Arc::clone(&events));
                            let longest = job.limits.timeout;
                            waits.push(Box::pin(async move {
                                let answer = MessagesView::new(&messages, &events).answer(call, longest).await;
                                (reply, CallReply::Messages(answer))
                            }));
                            continue;
                        }
                    };
                    let made = tokio::time::timeout(
                        job.limits.timeout,
                        crate::capabilities::tools::invoke(&tools, &events, tool, input),
                    )
                    .await;
                    let answer = match made {
                        Ok(Ok(output)) => CallReply::Ok(output),
                        Ok(Err(ToolError::NotFound(m))) => CallReply::NotFound(m),
                        Ok(Err(ToolError::Denied(m))) => CallReply::Denied(m),
                        Ok(Err(ToolError::InvalidInput(m))) => CallReply::InvalidInput(m),
                        Ok(Err(ToolError::Failed(m))) => CallReply::Failed(m),
                        Err(_) => CallReply::Failed("the call ran past the attempt's time limit".into()),
                    };
                    pool.answer(reply, &answer).await;
                }
                Some((reply, answer)) = waits.next(), if !waits.is_empty() => {
                    pool.answer(reply, &answer).await;
                }
                () = job.cancel.cancelled() => {
                    handout.cancel(pool, &key).await;
                    handout.forget(pool, &key);
                    lock(&events).finish();
                    return Attempt::not_run(TaskStatus::Cancelled, ErrorKind::Cancelled, "the run was cancelled".into());
                }
                () = tokio::time::sleep_until(deadline) => break Some((String::new(), lost_after(patience))),
            }
        };
        handout.forget(pool, &key);
        {
            let mut events = lock(&events);
            events.flush();
            events.finish();
        }
        let Some((worker, finished)) = ended else {
            return Attempt::not_run(
                TaskStatus::Failed,
                ErrorKind::Host,
                "the pool was closed while the attempt ran".into(),
            );
        };
        attempt(finished, &worker, &job, started)
    }
}

/// How an attempt went to its worker: on the pool's NATS queue (as message `seq`), or leased
/// over HTTP.
enum Handout {
    Queue { ready: Arc<Ready>, seq: u64 },
    Lease,
}

impl Handout {
    /// Stops the attempt on its worker (or before one takes it).
    async fn cancel(&self, pool: &PoolInner, key: &str) {
        match self {
            Self::Queue { ready, seq } => pool.cancel(ready, key, *seq).await,
            Self::Lease => pool.leases.cancel(key),
        }
    }

    /// Forgets the attempt: what a worker says of it from now on is a duplicate.
    fn forget(&self, pool: &PoolInner, key: &str) {
        match self {
            Self::Queue { seq, .. } => pool.forget(key, Some(*seq)),
            Self::Lease => {
                pool.forget(key, None);
                pool.leases.release(key);
            }
        }
    }
}

/// The attempt a worker's report describes, checked again here.
fn attempt(finished: Finished, worker: &str, job: &Job, started: Instant) -> Attempt {
    let Finished {
        status,
        output,
        error,
        started_at,
        finished_at,
        latency_ms,
        fuel_used,
        memory_peak,
    } = finished;
    let (status, output, error) = match (status, output) {
        (TaskStatus::Succeeded, Some(output)) => {
            crate::engine::accept_output(output.get().to_owned(), &job.limits)
        }
        (TaskStatus::Succeeded, None) => (
            TaskStatus::Failed,
            None,
            Some(TaskError::new(
                ErrorKind::Host,
                format!("worker `{worker}` reported success without an output"),
            )),
        ),
        (status, _) => (status, None, error),
    };
    let output_digest = output
        .as_ref()
        .map(|o| Name::from(sha256_hex(o.get().as_bytes())));
    Attempt {
        status,
        output,
        output_digest,
        cached_from: None,
        worker: (!worker.is_empty()).then(|| Name::from(worker)),
        error,
        started_at,
        finished_at,
        latency: Duration::from_millis(latency_ms).min(started.elapsed()),
        fuel_used: fuel_used.min(job.limits.fuel),
        memory_peak,
        artifacts: Vec::new(),
    }
}

/// The end of an attempt the queue gave up on.
pub(crate) fn lost(seq: u64) -> Finished {
    ended_lost(format!(
        "every delivery of the attempt (work message {seq}) went unanswered: its workers stopped"
    ))
}

fn lost_after(patience: Duration) -> Finished {
    ended_lost(format!(
        "no worker finished the attempt within {:.0} s (every delivery's time limit and ack wait)",
        patience.as_secs_f64()
    ))
}

fn ended_lost(message: String) -> Finished {
    Finished::failed(ErrorKind::WorkerLost, message)
}
