//! One attempt of one task in a fresh store: set up the sandbox and limits, instantiate, call
//! `run`, and turn however it ended into an [`Attempt`].
//!
//! Limits, in the order they can bite:
//! - memory: the limiter denies growth past the agent's limit;
//! - fuel: set on the store; out of fuel is a trap, detected by type;
//! - fuel rates: on every epoch tick the fuel burned since the last one is drawn from the
//!   tenant's and the agent's buckets; when one is in debt the guest sleeps (an async yield,
//!   never a blocked thread) until it has refilled;
//! - wall-clock: the epoch callback traps a running guest past its deadline, and a tokio
//!   deadline drops a guest parked in a host call (a tool) — both end as `timed-out`;
//! - cancellation: the future is dropped at once, on the next epoch tick at the latest;
//! - output size: checked on return.
//!
//! What leaves the attempt (output, error messages, artifacts) is scrubbed of the secret
//! values its run handed out.
//!
//! Fuel used is the difference, read even after a trap. The store is dropped at the end and
//! never reused.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::value::RawValue;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Engine;
use super::cache::LoadedAgent;
use super::limiter::MemoryLimiter;
use super::recycler::Warm;
use super::sandbox::wasi_ctx;
use super::state::TaskState;
use crate::bus::{SharedEmitter, TaskEmitter, lock};
use crate::capabilities::blackboard::BoardScope;
use crate::capabilities::files::{self, DiskQuota, TaskFiles};
use crate::capabilities::messages::MessageScope;
use crate::capabilities::secrets::SecretAccess;
use crate::capabilities::tools::ToolAccess;
use crate::config::format_size;
use crate::govern::FuelDraw;
use crate::model::Name;
use crate::model::digest::sha256_hex;
use crate::model::limits::Limits;
use crate::model::port::{Attempt, Job, UpstreamResult};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::model::time::Timestamp;
use crate::redact::Redactor;
use crate::wit::{self, AgentError, Task, TaskInput, Upstream, UpstreamFailure, UpstreamOutcome};

/// Everything an attempt needs besides the job itself.
pub(crate) struct Setup {
    pub(crate) agent: Arc<LoadedAgent>,
    /// Fuel buckets the attempt draws from (its tenant's, its agent's).
    pub(crate) buckets: Vec<Arc<dyn FuelDraw>>,
    pub(crate) tenant: Name,
    pub(crate) run_id: Name,
    pub(crate) emitter: TaskEmitter,
    pub(crate) board: BoardScope,
    /// Its run's mailboxes, as its task.
    pub(crate) messages: MessageScope,
    pub(crate) tools: ToolAccess,
    pub(crate) secrets: SecretAccess,
    /// The run's redactor (the emitter's too).
    pub(crate) redactor: Arc<Redactor>,
    /// Its working directory, inputs and upstream files; none when its agent has no
    /// filesystem.
    pub(crate) files: TaskFiles,
}

/// The longest error message kept of an attempt (a guest's, a trap's); the rest is cut.
pub(crate) const MAX_ERROR_BYTES: usize = 4 << 10;

/// Fuel between the yields that keep fuel readings exact to within this much (about a
/// millisecond of guest CPU).
const FUEL_SLICE: u64 = 10_000_000;

/// The error the epoch callback raises when a guest runs past its deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wall-clock deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// How the call ended, before classification.
enum Ended {
    Returned(wasmtime::Result<Result<String, AgentError>>),
    TimedOut,
    Cancelled,
}

impl Engine {
    pub(crate) async fn execute(&self, job: Job, setup: Setup) -> Attempt {
        let limits = job.limits;
        let Setup {
            agent,
            buckets,
            tenant,
            run_id,
            emitter,
            board,
            messages,
            tools,
            secrets,
            redactor,
            files,
        } = setup;
        let events: SharedEmitter = Arc::new(Mutex::new(emitter));
        // The attempt's time limit covers everything it waits for, its fuel debt included.
        let deadline = Instant::now() + limits.timeout;
        // A tenant (or agent) in fuel debt starts nothing until the debt is paid.
        if let Some(wait) = buckets.iter().filter_map(|b| b.debt()).max() {
            let until = (Instant::now() + wait).min(deadline);
            tokio::select! {
                biased;
                () = job.cancel.cancelled() => {
                    return Attempt::not_run(TaskStatus::Cancelled, ErrorKind::Cancelled, "the run was cancelled".into());
                }
                () = tokio::time::sleep_until(until.into()) => {}
            }
            if until >= deadline {
                return Attempt::not_run(
                    TaskStatus::TimedOut,
                    ErrorKind::Timeout,
                    format!(
                        "ran past its time limit of {} waiting for its tenant's fuel rate to allow it to start",
                        humantime::format_duration(limits.timeout)
                    ),
                );
            }
        }
        let started_at = Timestamp::now();
        let started = Instant::now();

        let _active = self.recycler.attempt();
        // An instance made ahead (with its pool slot), or a slot for a new one.
        let warm = agent.warm.take(limits.memory, limits.fuel);
        self.recycler.warm(&agent);
        let permit = match &warm {
            Some(_) => None,
            None => {
                let acquired = tokio::select! {
                    biased;
                    () = job.cancel.cancelled() => None,
                    permit = Arc::clone(&self.instances).acquire_owned() => permit.ok(),
                };
                if acquired.is_none() {
                    return Attempt::not_run(
                        TaskStatus::Cancelled,
                        ErrorKind::Cancelled,
                        "the run was cancelled".into(),
                    );
                }
                acquired
            }
        };

        let wasi = match wasi_ctx(&files, &events) {
            Ok(wasi) => wasi,
            Err(e) => {
                return Attempt::not_run(
                    TaskStatus::Failed,
                    ErrorKind::Host,
                    format!("could not set up the task's sandbox: {e:#}"),
                );
            }
        };
        let (mut store, instance, permit, init_fuel) = match warm {
            Some(Warm {
                mut store,
                instance,
                permit,
                init_fuel,
            }) => {
                // Everything of its own, before any of its code runs for it.
                let state = store.data_mut();
                state.wasi = wasi;
                state.limiter.set_limit(limits.memory);
                state.disk = DiskQuota::new(limits.disk);
                state.events = Arc::clone(&events);
                state.board = board;
                state.messages = messages;
                state.tools = tools;
                state.secrets = secrets;
                state.deadline = deadline;
                state.buckets = buckets;
                state.fuel_seen = limits.fuel;
                (store, Some(instance), Some(permit), init_fuel)
            }
            None => {
                let mut store = Store::new(
                    &self.engine,
                    TaskState {
                        wasi,
                        table: ResourceTable::new(),
                        limiter: MemoryLimiter::new(limits.memory),
                        disk: DiskQuota::new(limits.disk),
                        events: Arc::clone(&events),
                        board,
                        messages,
                        tools,
                        secrets,
                        deadline,
                        buckets,
                        fuel_seen: limits.fuel,
                    },
                );
                store.limiter(|s| &mut s.limiter);
                (store, None, permit, 0)
            }
        };
        // Compiled code keeps its fuel counter in a register and stores it back only at calls,
        // so in a loop without calls `get_fuel` would not see what the guest burns. Yielding
        // every FUEL_SLICE stores it back: fuel read on an epoch tick (for rates) or after a
        // timeout (for the report) is then at most one slice stale.
        // A warm instance's instantiation is paid from the attempt's fuel, as a cold one's is
        // (and drawn from the buckets with the rest).
        let fuelled = store
            .set_fuel(limits.fuel - init_fuel)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_SLICE)));
        if let Err(e) = fuelled {
            self.recycler.retire(store, permit);
            return Attempt::not_run(
                TaskStatus::Failed,
                ErrorKind::Host,
                format!("could not set fuel: {e:#}"),
            );
        }
        // Every epoch tick: publish coalesced progress; trap past the deadline; draw the fuel
        // burned from the buckets and sleep off a debt; otherwise yield to tokio (so other
        // tasks run, and a cancelled task is dropped promptly).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| {
            let left = cx.get_fuel()?;
            let state = cx.data_mut();
            lock(&state.events).flush();
            let now = Instant::now();
            if now >= state.deadline {
                return Err(wasmtime::Error::new(DeadlineExceeded));
            }
            match state.draw(left) {
                Some(wait) => {
                    let until = (now + wait).min(state.deadline);
                    Ok(UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(tokio::time::sleep_until(until.into())),
                    ))
                }
                // `yield_now` goes to the back of the worker's queue; a plain wake-up would
                // put the guest in the worker's "run next" slot, and one spinning guest could
                // keep a worker while others wait.
                None => Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                )),
            }
        });

        let input = TaskInput {
            task: Task {
                run_id: run_id.to_string(),
                node: job.task_ref.node.to_string(),
                branch: job.task_ref.branch.to_string(),
                attempt: job.task_ref.attempt,
                tenant: tenant.to_string(),
            },
            params: job.params.to_string(),
            upstream: job
                .upstream
                .into_iter()
                .map(|(node, result)| Upstream {
                    node: node.to_string(),
                    outcome: match result {
                        UpstreamResult::Output(output) => {
                            UpstreamOutcome::Output(output.get().to_owned())
                        }
                        UpstreamResult::Failed { status, error } => {
                            UpstreamOutcome::Failed(UpstreamFailure {
                                status: contract_status(status),
                                kind: contract_kind(error.kind),
                                message: error.message,
                            })
                        }
                    },
                })
                .collect(),
        };

        let ended = {
            let call = async {
                let instance = match instance {
                    Some(instance) => instance,
                    None => agent.pre.instantiate_async(&mut store).await?,
                };
                instance.call_run(&mut store, &input).await
            };
            tokio::select! {
                biased;
                () = job.cancel.cancelled() => Ended::Cancelled,
                result = tokio::time::timeout_at(deadline.into(), call) => match result {
                    Ok(returned) => Ended::Returned(returned),
                    Err(_) => Ended::TimedOut,
                },
            }
        };

        let latency = started.elapsed();
        let left = store.get_fuel().unwrap_or(0);
        let fuel_used = limits.fuel.saturating_sub(left);
        // The fuel burned since the last tick is paid for too: the attempt reports only once
        // its tenant (and agent) are out of debt, so work never finishes faster than the
        // rates allow, however late the epoch ticks come.
        let debt = store.data_mut().draw(left);
        let limiter = &store.data().limiter;
        let (status, output, mut error) = classify(ended, &limits, limiter, &events, &redactor);
        // A guest's error message is bounded (and redacted) before it is kept, copied into
        // events, the history, retries and dependents.
        if let Some(e) = &mut error {
            if e.message.len() > MAX_ERROR_BYTES {
                let cut = redactor.clean(&e.message, MAX_ERROR_BYTES);
                e.message = format!("{cut}… ({} bytes in all)", e.message.len());
            } else if !redactor.is_empty() {
                e.message = redactor.text(&e.message).into_owned();
            }
        }
        let memory_peak = limiter.peak();
        lock(&events).finish();
        // Its instance (and pool slot) goes back before anything else happens, the debt's
        // sleep included.
        self.recycler.retire(store, permit);
        // Most tasks leave nothing: that is one `read_dir`; a walk (and any scrubbing) of
        // what a guest left runs off the async threads.
        let artifacts = match files.work.as_ref().map(|w| w.path()) {
            Some(dir) if !files::is_empty(&dir) => {
                let redactor = Arc::clone(&redactor);
                tokio::task::spawn_blocking(move || files::artifacts(&dir, &redactor))
                    .await
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        drop(files);
        // What is left of the debt when the time limit comes is paid by the tenant's next
        // attempt, before it starts: the rate holds, and no attempt outlives its limit.
        if let Some(wait) = debt {
            let until = (Instant::now() + wait).min(deadline.max(Instant::now()));
            tokio::select! {
                () = job.cancel.cancelled() => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
        let output_digest = output
            .as_ref()
            .map(|o| Name::from(sha256_hex(o.get().as_bytes())));
        Attempt {
            status,
            output,
            output_digest,
            cached_from: None,
            worker: None,
            error,
            started_at,
            finished_at: Timestamp::now(),
            latency,
            fuel_used,
            memory_peak,
            artifacts,
        }
    }
}

type Classified = (TaskStatus, Option<Arc<RawValue>>, Option<TaskError>);

fn classify(
    ended: Ended,
    limits: &Limits,
    limiter: &MemoryLimiter,
    events: &SharedEmitter,
    redactor: &Redactor,
) -> Classified {
    let fail = |status, kind, message: String| (status, None, Some(TaskError::new(kind, message)));
    let memory_exceeded = |requested: u64| {
        fail(
            TaskStatus::MemoryExceeded,
            ErrorKind::MemoryLimit,
            format!(
                "denied memory: the guest asked for {} in all, over its limit of {}",
                format_size(requested),
                format_size(limiter.limit())
            ),
        )
    };
    let timed_out = || {
        fail(
            TaskStatus::TimedOut,
            ErrorKind::Timeout,
            format!(
                "ran past its time limit of {}",
                humantime::format_duration(limits.timeout)
            ),
        )
    };
    match ended {
        Ended::Cancelled => fail(
            TaskStatus::Cancelled,
            ErrorKind::Cancelled,
            "the run was cancelled".into(),
        ),
        Ended::TimedOut => timed_out(),
        Ended::Returned(Ok(Ok(output))) => {
            let output = match redactor.json_text(&output) {
                std::borrow::Cow::Borrowed(_) => output,
                std::borrow::Cow::Owned(clean) => clean,
            };
            accept_output(output, limits)
        }
        // A guest that was denied memory, caught it (as CPython's MemoryError does) and then
        // failed, failed for want of memory: its outcome says so, with its own words.
        Ended::Returned(Ok(Err(AgentError::Failed(m)))) if limiter.denied().is_some() => {
            let requested = limiter.denied().unwrap_or_default();
            let (status, output, error) = memory_exceeded(requested);
            let error = error.map(|mut e| {
                e.message = format!(
                    "{}; the agent then failed: {}",
                    e.message,
                    crate::model::text::truncate(&m, 1024)
                );
                e
            });
            (status, output, error)
        }
        Ended::Returned(Ok(Err(error))) => {
            let (kind, message) = match error {
                AgentError::InvalidInput(m) => (ErrorKind::InvalidInput, m),
                AgentError::Failed(m) => (ErrorKind::Failed, m),
                AgentError::Unavailable(m) => (ErrorKind::Unavailable, m),
            };
            fail(TaskStatus::Failed, kind, message)
        }
        Ended::Returned(Err(e)) => {
            if e.downcast_ref::<DeadlineExceeded>().is_some() {
                return timed_out();
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => fail(
                    TaskStatus::OutOfFuel,
                    ErrorKind::OutOfFuel,
                    format!("used all of its {} fuel", limits.fuel),
                ),
                Some(trap) => match limiter.denied() {
                    Some(requested) => memory_exceeded(requested),
                    None => {
                        let tail = lock(events).stderr_tail();
                        let message = match panic_message(&tail) {
                            Some(panic) => format!("guest {panic} ({trap})"),
                            None => format!("{trap}"),
                        };
                        fail(TaskStatus::Trapped, ErrorKind::Trap, message)
                    }
                },
                None => match limiter.denied() {
                    // Instantiation fails when the initial memory alone is over the limit.
                    Some(requested) => memory_exceeded(requested),
                    None => fail(TaskStatus::Failed, ErrorKind::Host, format!("{e:#}")),
                },
            }
        }
    }
}

pub(crate) fn accept_output(output: String, limits: &Limits) -> Classified {
    let reject = |kind, message: String| {
        (
            TaskStatus::OutputRejected,
            None,
            Some(TaskError::new(kind, message)),
        )
    };
    if output.len() as u64 > limits.max_output {
        return reject(
            ErrorKind::OutputTooLarge,
            format!(
                "the output has {}, over the limit of {}",
                format_size(output.len() as u64),
                format_size(limits.max_output)
            ),
        );
    }
    // Valid JSON that a reader cannot take in (a number past f64's range, say) would be a
    // success nobody downstream can read: the output must parse as a JSON value.
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&output) {
        return reject(
            ErrorKind::OutputNotJson,
            format!("the output is not JSON that can be read back: {e}"),
        );
    }
    match RawValue::from_string(output) {
        Ok(raw) => (TaskStatus::Succeeded, Some(Arc::from(raw)), None),
        Err(e) => reject(
            ErrorKind::OutputNotJson,
            format!("the output is not JSON: {e}"),
        ),
    }
}

/// `panicked at src/lib.rs:3:5: message` from what a Rust guest printed on stderr.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at ")?;
    let mut lines = stderr[start..].lines();
    let location = lines.next()?.trim_end_matches(':');
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ")).collect();
    Some(format!("{location}: {}", message.join("\n").trim()))
}

/// The contract's name for how an upstream task ended. Only a status that is not a success
/// reaches a downstream task as a failure; any other is `failed`.
fn contract_status(status: TaskStatus) -> wit::TaskStatus {
    match status {
        TaskStatus::TimedOut => wit::TaskStatus::TimedOut,
        TaskStatus::OutOfFuel => wit::TaskStatus::OutOfFuel,
        TaskStatus::MemoryExceeded => wit::TaskStatus::MemoryExceeded,
        TaskStatus::Trapped => wit::TaskStatus::Trapped,
        TaskStatus::OutputRejected => wit::TaskStatus::OutputRejected,
        TaskStatus::Cancelled => wit::TaskStatus::Cancelled,
        TaskStatus::Skipped => wit::TaskStatus::Skipped,
        TaskStatus::Blocked => wit::TaskStatus::Blocked,
        TaskStatus::BudgetExhausted => wit::TaskStatus::BudgetExhausted,
        TaskStatus::Failed
        | TaskStatus::Pending
        | TaskStatus::Ready
        | TaskStatus::Running
        | TaskStatus::Retrying
        | TaskStatus::Iterated
        | TaskStatus::Succeeded
        | TaskStatus::Cached => wit::TaskStatus::Failed,
    }
}

/// The contract's name for the kind of an upstream task's error.
fn contract_kind(kind: ErrorKind) -> wit::ErrorKind {
    match kind {
        ErrorKind::InvalidInput => wit::ErrorKind::InvalidInput,
        ErrorKind::Failed => wit::ErrorKind::Failed,
        ErrorKind::Unavailable => wit::ErrorKind::Unavailable,
        ErrorKind::Trap => wit::ErrorKind::Trap,
        ErrorKind::OutOfFuel => wit::ErrorKind::OutOfFuel,
        ErrorKind::Timeout => wit::ErrorKind::Timeout,
        ErrorKind::MemoryLimit => wit::ErrorKind::MemoryLimit,
        ErrorKind::OutputTooLarge => wit::ErrorKind::OutputTooLarge,
        ErrorKind::OutputNotJson => wit::ErrorKind::OutputNotJson,
        ErrorKind::Host => wit::ErrorKind::Host,
        ErrorKind::Cancelled => wit::ErrorKind::Cancelled,
        ErrorKind::Dependency => wit::ErrorKind::Dependency,
        ErrorKind::Blocked => wit::ErrorKind::Blocked,
        ErrorKind::Budget => wit::ErrorKind::Budget,
        ErrorKind::ErrorBudget => wit::ErrorKind::ErrorBudget,
        ErrorKind::Claimed => wit::ErrorKind::Claimed,
        ErrorKind::Interrupted => wit::ErrorKind::Interrupted,
        ErrorKind::WorkerLost => wit::ErrorKind::WorkerLost,
        // The contract's kinds are fixed within a version: a refused plan is a failure.
        ErrorKind::InvalidPlan => wit::ErrorKind::Failed,
        // Nothing depends on a task that starts on a message.
        ErrorKind::NotNeeded => wit::ErrorKind::Dependency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_no_reader_can_take_in_is_rejected() {
        // Valid JSON by the grammar; past f64's range for every reader (found by fuzzing).
        let huge = format!("2{}", "1".repeat(400));
        let (status, output, error) = accept_output(huge, &Limits::default());
        assert_eq!(status, TaskStatus::OutputRejected);
        assert!(output.is_none());
        assert_eq!(error.map(|e| e.kind), Some(ErrorKind::OutputNotJson));
        let (status, ..) = accept_output("{\"n\": 1e300}".into(), &Limits::default());
        assert_eq!(status, TaskStatus::Succeeded);
    }

    #[test]
    fn panic_messages_are_read_from_stderr() {
        let stderr = "some output\nthread '<unnamed>' panicked at crash/src/lib.rs:28:9:\nboom \
                      goes the agent\nnote: run with `RUST_BACKTRACE=1` environment variable\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at crash/src/lib.rs:28:9: boom goes the agent")
        );
        assert_eq!(panic_message("nothing to see"), None);
    }

    #[test]
    fn outputs_over_the_limit_or_not_json_are_rejected() {
        let limits = Limits {
            max_output: 8,
            ..Limits::default()
        };
        assert_eq!(
            accept_output("[1,2]".into(), &limits).0,
            TaskStatus::Succeeded
        );
        let (status, _, error) = accept_output("\"123456789\"".into(), &limits);
        assert_eq!(status, TaskStatus::OutputRejected);
        assert_eq!(error.map(|e| e.kind), Some(ErrorKind::OutputTooLarge));
        let (_, _, error) = accept_output("{oops".into(), &limits);
        assert_eq!(error.map(|e| e.kind), Some(ErrorKind::OutputNotJson));
    }
}
