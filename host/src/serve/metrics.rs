//! `GET /metrics`: Prometheus text, named after the seeds (`agent_statebus_lag_ms`,
//! `agent_task_parallelism`, `agent_task_blocked_total`, `agent_task_repeat_total`,
//! `agent_result_generation_latency`) plus runs, tasks by outcome and fuel, each labelled by
//! tenant. Fed by one observer per run the server runs, reading the run's events.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::TaskStatus;
use crate::events::{Event, EventKind, Timestamp};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    tenant: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolKindLabel {
    pool: String,
    kind: String,
}

type Histograms = Family<TenantLabel, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    runs_started: Family<TenantLabel, Counter>,
    runs_completed: Family<OutcomeLabel, Counter>,
    runs_active: Family<TenantLabel, Gauge>,
    tasks: Family<OutcomeLabel, Counter>,
    parallelism: Family<TenantLabel, Gauge>,
    blocked: Family<TenantLabel, Counter>,
    repeats: Family<TenantLabel, Counter>,
    retries: Family<TenantLabel, Counter>,
    fuel: Family<TenantLabel, Counter>,
    lag: Histograms,
    result_latency: Histograms,
    run_duration: Histograms,
    workers_live: Family<PoolLabel, Gauge>,
    workers_slots: Family<PoolLabel, Gauge>,
    workers_busy: Family<PoolLabel, Gauge>,
    pool_attempts: Family<PoolKindLabel, Counter>,
}

fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

fn ms_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 22))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            runs_started: Family::default(),
            runs_completed: Family::default(),
            runs_active: Family::default(),
            tasks: Family::default(),
            parallelism: Family::default(),
            blocked: Family::default(),
            repeats: Family::default(),
            retries: Family::default(),
            fuel: Family::default(),
            lag: Family::new_with_constructor(lag_histogram as fn() -> Histogram),
            result_latency: Family::new_with_constructor(ms_histogram as fn() -> Histogram),
            run_duration: Family::new_with_constructor(ms_histogram as fn() -> Histogram),
            workers_live: Family::default(),
            workers_slots: Family::default(),
            workers_busy: Family::default(),
            pool_attempts: Family::default(),
            registry: Registry::default(),
        };
        // Counters get `_total` appended when encoded.
        registry.register(
            "agent_runs_started",
            "Runs started by this server",
            m.runs_started.clone(),
        );
        registry.register(
            "agent_runs_completed",
            "Runs ended, by status",
            m.runs_completed.clone(),
        );
        registry.register(
            "agent_runs_active",
            "Runs running in this server now",
            m.runs_active.clone(),
        );
        registry.register(
            "agent_tasks",
            "Task attempts ended, by outcome",
            m.tasks.clone(),
        );
        registry.register(
            "agent_task_parallelism",
            "Attempts running now",
            m.parallelism.clone(),
        );
        registry.register(
            "agent_task_blocked",
            "Tasks found blocked (silent past their stall timeout)",
            m.blocked.clone(),
        );
        registry.register(
            "agent_task_repeat",
            "Attempts delivered again and refused by their claim",
            m.repeats.clone(),
        );
        registry.register("agent_task_retry", "Attempts retried", m.retries.clone());
        registry.register(
            "agent_fuel_consumed",
            "Fuel burned by guests",
            m.fuel.clone(),
        );
        registry.register(
            "agent_statebus_lag_ms",
            "Milliseconds from an event's emission to its observer in the server",
            m.lag.clone(),
        );
        registry.register(
            "agent_result_generation_latency",
            "Milliseconds to build a run's results document",
            m.result_latency.clone(),
        );
        registry.register(
            "agent_run_duration_ms",
            "Milliseconds from a run's start to its end",
            m.run_duration.clone(),
        );
        registry.register(
            "agent_workers_live",
            "Workers of the pool heard from in the last three heartbeats",
            m.workers_live.clone(),
        );
        registry.register(
            "agent_workers_slots",
            "Attempts the pool's live workers can run at once",
            m.workers_slots.clone(),
        );
        registry.register(
            "agent_workers_busy",
            "Attempts the pool's live workers run now",
            m.workers_busy.clone(),
        );
        registry.register(
            "agent_pool_attempts",
            "Attempts by where they went: remote (to a worker), degraded (run here, no worker reachable), redelivered, duplicate (an end after the first), lost (worker-lost)",
            m.pool_attempts.clone(),
        );
        Self { registry, ..m }
    }

    /// Reads the pool's live workers and counts into the metrics (before a render).
    #[cfg(feature = "nats")]
    pub(crate) fn observe_pool(&self, pool: &crate::workers::WorkerPool) {
        let label = PoolLabel {
            pool: pool.name().to_owned(),
        };
        let live = pool.workers();
        let sum = |f: fn(&crate::workers::WorkerStatus) -> u32| {
            live.iter().map(|w| i64::from(f(w))).sum::<i64>()
        };
        self.workers_live
            .get_or_create(&label)
            .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
        self.workers_slots
            .get_or_create(&label)
            .set(sum(|w| w.slots));
        self.workers_busy.get_or_create(&label).set(sum(|w| w.busy));
        let counts = pool.counts();
        for (kind, n) in [
            ("remote", counts.remote),
            ("degraded", counts.degraded),
            ("redelivered", counts.redelivered),
            ("duplicate", counts.duplicates),
            ("lost", counts.lost),
        ] {
            let counter = self.pool_attempts.get_or_create(&PoolKindLabel {
                pool: label.pool.clone(),
                kind: kind.to_owned(),
            });
            counter.inc_by(n.saturating_sub(counter.get()));
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// A run started (or resumed) here; its events go to the returned observer.
    pub(crate) fn run_started(&self, tenant: &str) -> RunObserver<'_> {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        self.runs_started.get_or_create(&label).inc();
        self.runs_active.get_or_create(&label).inc();
        RunObserver {
            metrics: self,
            label,
            running: Mutex::new(HashSet::new()),
        }
    }
}

/// Turns one run's events into metrics; on drop, whatever it counted as running stops.
#[derive(Debug)]
pub(crate) struct RunObserver<'m> {
    metrics: &'m Metrics,
    label: TenantLabel,
    /// Attempts running now: (node, attempt).
    running: Mutex<HashSet<(String, u32)>>,
}

impl RunObserver<'_> {
    pub(crate) fn observe(&self, event: &Event) {
        let m = self.metrics;
        let lag = Timestamp::now()
            .0
            .duration_since(event.at.0)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        m.lag.get_or_create(&self.label).observe(lag);
        match &event.kind {
            EventKind::TaskStatus(s) => {
                let key = (s.task.node.to_string(), s.task.attempt);
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if s.status == TaskStatus::Running {
                    if running.insert(key) {
                        m.parallelism.get_or_create(&self.label).inc();
                    }
                } else if running.remove(&key) {
                    m.parallelism.get_or_create(&self.label).dec();
                }
                if s.status.is_final() || s.status == TaskStatus::Retrying {
                    m.tasks
                        .get_or_create(&self.outcome(s.status.as_str()))
                        .inc();
                }
            }
            EventKind::TaskBlocked(_) => {
                m.blocked.get_or_create(&self.label).inc();
            }
            EventKind::RunMetrics(r) => {
                m.repeats.get_or_create(&self.label).inc_by(r.repeat_total);
                m.retries.get_or_create(&self.label).inc_by(r.retry_total);
                m.fuel.get_or_create(&self.label).inc_by(r.fuel.run);
                m.result_latency
                    .get_or_create(&self.label)
                    .observe(r.result_generation_latency_ms);
            }
            EventKind::RunCompleted(c) => {
                m.runs_completed
                    .get_or_create(&self.outcome(&c.status.to_string()))
                    .inc();
                m.run_duration
                    .get_or_create(&self.label)
                    .observe(c.duration_ms);
            }
            _ => {}
        }
    }

    fn outcome(&self, outcome: &str) -> OutcomeLabel {
        OutcomeLabel {
            tenant: self.label.tenant.clone(),
            outcome: outcome.to_owned(),
        }
    }
}

impl Drop for RunObserver<'_> {
    fn drop(&mut self) {
        let m = self.metrics;
        let running = self.running.get_mut().unwrap_or_else(|p| p.into_inner());
        if !running.is_empty() {
            m.parallelism
                .get_or_create(&self.label)
                .dec_by(running.len() as i64);
        }
        m.runs_active.get_or_create(&self.label).dec();
    }
}
