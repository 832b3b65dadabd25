//! Starting a run: resolving its plan (settings layered from policy to task), setting up what
//! its tasks share, and driving the scheduler to a report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::memo::{MemoAgent, MemoTask, Memoized};
use super::{Inner, RunOptions, Runtime};
use crate::aggregate;
use crate::bus::{Bus, BusLimits, EmitterLimits, EventStream};
use crate::capabilities::blackboard::{Blackboard, BlackboardLimits};
use crate::capabilities::files::RunDir;
use crate::capabilities::messages::{Delivered, Mailboxes, OnSend, PriorInbox};
use crate::capabilities::secrets::Lease;
use crate::engine::{LocalExecutor, RunAgent, RunContext};
use crate::error::Error;
use crate::journal::{Folded, NewRun, RunState};
use crate::model::Name;
use crate::model::events::{EventKind, RunCompleted};
use crate::model::policy::{OnBlocked, RetryPolicy};
use crate::model::port::Attempt;
use crate::model::report::{FuelUse, Lag, RunMetrics, RunReport};
use crate::model::status::TaskStatus;
use crate::model::time::Timestamp;
use crate::model::time::millis;
use crate::policy::{Policy, StallOverride};
use crate::scheduler::{self, AgentPlan, ErrorBudgetChange, Growth, Plan, Shared, TaskPlan};
use crate::workflow::{Diagnostics, Workflow, is_valid_name};

impl Runtime {
    /// Starts running `workflow`. Must be called within a tokio runtime.
    ///
    /// Returns once every component is loaded and the run has begun; errors mean nothing ran.
    /// Every way a task can fail is an outcome in the [`RunReport`] that [`Run::wait`] returns.
    pub async fn start(&self, workflow: &Workflow, options: RunOptions) -> Result<Run, Error> {
        self.launch(workflow, options, None).await
    }

    /// Resumes run `run_id` from the journal: a run whose process was killed (or that ended
    /// without succeeding). Tasks that succeeded are not run again (their outputs, artifacts
    /// and blackboard writes stay as they were); every other task runs, its attempt numbers
    /// going on from the journal's. The run keeps its id, tenant and budgets (what was spent
    /// stays spent); it gets a new credential. Bound to a tenant
    /// ([`RunOptions::tenant`]), another tenant's run is [`Error::UnknownRun`].
    pub async fn resume(&self, run_id: &str, options: RunOptions) -> Result<Run, Error> {
        let id = run_id.to_owned();
        // After what this runtime sent the journal (a run that just ended here included).
        let folded = self.read_journal(move |journal| journal.fold(&id)).await?;
        let summary = &folded.run.summary;
        if options
            .tenant
            .as_deref()
            .is_some_and(|t| t != summary.tenant)
        {
            return Err(Error::UnknownRun(run_id.to_owned()));
        }
        let not = |why: String| Error::NotResumable {
            run: run_id.to_owned(),
            why,
        };
        match summary.state {
            RunState::Running => {
                return Err(not(
                    "it is running (its process is alive): cancel it there, or wait".into(),
                ));
            }
            RunState::Succeeded => return Err(not("it succeeded: nothing is left to do".into())),
            _ => {}
        }
        // The run's tenant is the journal's, whatever the file says (a service may have run
        // it for its authenticated caller).
        let workflow = Workflow::parse_for_tenant(
            &folded.source_text,
            &folded.run.source_path,
            &folded.run.params,
            &summary.tenant,
        )?;
        let mut folded = folded;
        // Its inboxes as they were, within the limits its workflow sets.
        let journal = Arc::clone(&self.inner.journal);
        let (id, logs, limits) = (
            run_id.to_owned(),
            std::mem::take(&mut folded.messages),
            workflow.messages,
        );
        folded.inboxes = tokio::task::spawn_blocking(move || journal.inboxes(&id, &logs, limits))
            .await
            .map_err(|e| Error::Internal(format!("reading the journal: {e}")))??;
        let options = RunOptions {
            run_id: Some(run_id.to_owned()),
            ..options
        };
        self.launch(&workflow, options, Some(folded)).await
    }

    async fn launch(
        &self,
        workflow: &Workflow,
        options: RunOptions,
        mut resumed: Option<Folded>,
    ) -> Result<Run, Error> {
        let inner: &Inner = &self.inner;
        if let Some(tenant) = options.tenant.as_deref()
            && tenant != workflow.tenant
        {
            return Err(Error::WrongTenant {
                path: workflow.source.path.clone(),
                workflow: workflow.name.clone(),
                owner: workflow.tenant.clone(),
                tenant: tenant.to_owned(),
            });
        }
        let run_id = match options.run_id {
            Some(id) if is_valid_name(&id) => id,
            Some(id) => return Err(Error::InvalidRunId(id)),
            None => new_run_id(),
        };
        let doctors = diagnostic_agents(workflow, &inner.policy)?;
        guard_inputs(workflow, &inner.state_dir, inner.secrets.0.directory())?;
        let loaded = self.load_agents(workflow).await?;
        let directory = inner
            .state_dir
            .join("tenants")
            .join(&workflow.tenant)
            .join("runs")
            .join(&run_id);
        // The journal's record of the run, and where its events go.
        let link = match (&resumed, inner.journal_runs) {
            (_, false) => None,
            (Some(folded), true) => Some(
                blocking({
                    let journal = Arc::clone(&inner.journal);
                    let (id, last) = (run_id.clone(), folded.run.summary.last_seq);
                    move || journal.reopen(&id, last)
                })
                .await?,
            ),
            (None, true) => Some(
                blocking({
                    let journal = Arc::clone(&inner.journal);
                    let (id, tenant, name) = (
                        run_id.clone(),
                        workflow.tenant.clone(),
                        workflow.name.clone(),
                    );
                    let (path, text) = (workflow.source.path.clone(), workflow.source.text.clone());
                    let (params, tasks, dir) = (
                        workflow.overrides.clone(),
                        workflow.tasks.len(),
                        directory.clone(),
                    );
                    move || {
                        journal.begin(&NewRun {
                            run_id: &id,
                            tenant: &tenant,
                            workflow: &name,
                            source_path: &path,
                            source_text: &text,
                            params: &params,
                            tasks,
                            directory: &dir,
                        })
                    }
                })
                .await?,
            ),
        };
        let after = resumed.as_ref().map_or(0, |f| f.run.summary.last_seq);
        let sink = link.as_ref().map(|l| inner.journal.sink(l));
        let bus = Bus::journaled(run_id.clone(), BusLimits::default(), after, sink);
        let Some(repeats) = inner
            .claims
            .open(&run_id, &workflow.tenant, Arc::clone(&bus))
        else {
            return Err(Error::RunIdInUse(run_id));
        };
        let run_dir = match RunDir::create(&directory) {
            Ok(dir) => Arc::new(dir),
            Err(source) => {
                inner.claims.close(&run_id);
                return Err(Error::Io {
                    path: directory,
                    source,
                });
            }
        };

        let access = Arc::new(inner.policy.access(&workflow.tenant));
        // The agents, as the engine and the scheduler see them. An agent's runtime-wide key
        // (for its shared concurrency, fuel rate and score) is its name and component.
        let governor = &inner.governor;
        let mut run_agents = Vec::new();
        let mut agent_plans = Vec::new();
        let mut agent_reports = BTreeMap::new();
        for (def, l) in workflow.agents.iter().zip(loaded) {
            let key = format!("{}@{}", def.name, &l.loaded.digest[..16]);
            run_agents.push(RunAgent {
                loaded: l.loaded,
                granted: def.tools.iter().map(|(t, _)| t.clone()).collect(),
                secrets: access.secrets_of(&def.name).into(),
                workdir: def.workdir,
                bucket: def.fuel_rate.map(|rate| governor.agent_bucket(&key, rate)),
            });
            agent_plans.push(AgentPlan {
                name: def.name.clone(),
                key,
                limits: def.limits,
                max_concurrency: def.max_concurrency,
            });
            agent_reports.insert(def.name.clone(), l.report);
        }
        let tasks = task_plans(workflow, &inner.policy, &doctors);
        let (memo_plan, memo_notes) = memo_tasks(workflow, &workflow.tasks, &run_agents);
        let tenant = governor.tenant(&workflow.tenant);
        let budget = workflow.budget.within(tenant.limits.budget);
        let max_concurrency = options.max_concurrency.unwrap_or(workflow.max_concurrency);
        let error_budget = workflow
            .error_budget
            .clone()
            .or_else(|| inner.policy.defaults.error_budget.clone());

        let on_write = link.as_ref().map(|l| {
            let (journal, link) = (Arc::clone(&inner.journal), Arc::clone(l));
            Box::new(move |key: &str, value: &str, version: u64| {
                journal.board(&link, key, value, version);
            }) as crate::capabilities::blackboard::OnWrite
        });
        let prior_board = resumed
            .as_ref()
            .map(|f| f.blackboard.clone())
            .unwrap_or_default();
        let blackboard = Arc::new(Blackboard::restored(
            BlackboardLimits::default(),
            prior_board,
            on_write,
        ));
        // The run's own subscriber: it reads every event as it is published, so the bus's lag
        // (`agent.statebus.lag_ms`) is measured whoever else listens.
        let recorder = {
            let mut events = bus.subscribe();
            tokio::spawn(async move { while events.next().await.is_some() {} })
        };
        let mut plan = workflow.plan_event(0..workflow.tasks.len(), max_concurrency, budget);
        plan.notes.extend(memo_notes);
        plan.notes
            .extend(inner.policy.stranger_note(&workflow.tenant));
        if let Some(folded) = &resumed {
            let done = folded.tasks.values().filter(|t| t.succeeded).count();
            plan.notes.push(format!(
                "resumed after event {}: {done} of {} tasks had succeeded and do not run again",
                folded.run.summary.last_seq,
                workflow.tasks.len()
            ));
        }
        bus.publish(EventKind::PlanCreated(plan));
        // The run's credential for secrets, renewed at half its TTL while the run lives.
        let lease = Arc::new(Lease::issue(
            &run_id,
            &workflow.tenant,
            inner.policy.defaults.credential_ttl,
            inner.secrets.clone(),
            Arc::clone(&bus),
        ));
        let renewal = AbortOnDrop(tokio::spawn({
            let lease = Arc::clone(&lease);
            let every = (inner.policy.defaults.credential_ttl / 2).max(Duration::from_millis(10));
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    lease.renew();
                }
            }
        }));
        let tool_rates = access
            .tool_limits
            .iter()
            .filter_map(|(tool, limit)| {
                let rate = limit.per_second?;
                Some((
                    tool.clone(),
                    governor.tool_bucket(&workflow.tenant, tool, rate),
                ))
            })
            .collect();
        // Every message is journaled, so a resumed run's inboxes are as they were.
        let on_send = link.as_ref().map(|l| {
            let (journal, link) = (Arc::clone(&inner.journal), Arc::clone(l));
            Box::new(move |to: &str, seq: u64, from: &str, body: &str| {
                journal.message(&link, to, seq, from, body);
            }) as OnSend
        });
        let prior_inboxes = resumed
            .as_mut()
            .map(|f| std::mem::take(&mut f.inboxes))
            .unwrap_or_default()
            .into_iter()
            .map(|(node, prior)| {
                let inbox = PriorInbox {
                    unread: prior
                        .unread
                        .into_iter()
                        .map(|(seq, sender, body)| Delivered {
                            sender: Name::from(sender),
                            body,
                            seq,
                        })
                        .collect(),
                    last_seq: prior.last_seq,
                    counts: prior.counts,
                };
                (Name::from(node), inbox)
            })
            .collect();
        let (mailboxes, woken) = Mailboxes::restored(
            workflow.messages,
            workflow
                .tasks
                .iter()
                .map(|t| (Name::from(&t.id), t.on_message)),
            prior_inboxes,
            on_send,
        );
        let context = Arc::new(RunContext {
            mailboxes: Arc::clone(&mailboxes),
            run_id: Name::from(&run_id),
            workflow: workflow.name.clone(),
            tenant: Name::from(&workflow.tenant),
            bus: Arc::clone(&bus),
            blackboard: Arc::clone(&blackboard),
            branches: Arc::new(
                (0..workflow.tasks.len())
                    .flat_map(|i| {
                        let branch = workflow.branch(i);
                        [format!("{branch}.diagnosis"), branch]
                    })
                    // A loop over a child workflow: the branches of the iterations it will
                    // grow by are under its own.
                    .chain(workflow.tasks.iter().filter_map(|t| {
                        t.iteration
                            .as_ref()
                            .map(|it| format!("{}.{}", workflow.name, it.looped))
                    }))
                    .collect(),
            ),
            run_dir: Arc::clone(&run_dir),
            agents: run_agents,
            inputs: std::sync::RwLock::new(
                workflow
                    .tasks
                    .iter()
                    .map(|t| Arc::from(t.inputs.as_slice()))
                    .collect(),
            ),
            tenant_bucket: tenant.bucket.clone(),
            tools: Arc::clone(&inner.tools),
            access,
            quotas: Arc::default(),
            tool_rates: Arc::new(tool_rates),
            secrets: Arc::clone(&inner.secrets.0),
            lease: Arc::clone(&lease),
            redactor: Arc::default(),
            claims: Arc::clone(&inner.claims),
            emitter_limits: EmitterLimits::default(),
        });
        let redactor = Arc::clone(&context.redactor);
        let memo_agents = context
            .agents
            .iter()
            .map(|a| MemoAgent {
                digest: a.loaded.digest.clone(),
                grants: serde_json::json!({ "tools": &*a.granted, "secrets": &*a.secrets }),
            })
            .collect();
        let grown_inputs = Arc::clone(&context);
        let local = LocalExecutor {
            engine: Arc::clone(&inner.engine),
            run: context,
        };
        #[cfg(feature = "nats")]
        let local = crate::remote::dispatch::Dispatch::new(local, inner.workers.clone());
        let executor = Arc::new(Memoized {
            inner: local,
            journal: Arc::clone(&inner.journal),
            run_id: Name::from(&run_id),
            agents: memo_agents,
            // Memoized outputs live in the journal: a run that is not journaled reuses none.
            tasks: std::sync::RwLock::new(if inner.journal_runs {
                memo_plan
            } else {
                Vec::new()
            }),
        });
        let memoized = inner.journal_runs.then(|| Arc::clone(&executor));

        let cancel = CancellationToken::new();
        let drain = CancellationToken::new();
        let run_drain = drain.clone();
        let runtime = self.clone();
        let workflow = Arc::new(workflow.clone());
        let (run_bus, run_cancel, run_directory) =
            (Arc::clone(&bus), cancel.clone(), directory.clone());
        let id = run_id.clone();
        // A resumed run: what each task did before, when the run first started, and what it
        // has spent.
        let (prior, fuel_spent, first_started) = match &resumed {
            Some(folded) => (
                prior_tasks(&workflow, folded),
                folded.fuel_used,
                Some(folded.run.started_ms),
            ),
            None => (HashMap::new(), 0, None),
        };
        let journal = Arc::clone(&inner.journal);
        // Every attempt's span is a child of its run's.
        let span = tracing::info_span!(
            "run",
            run = %run_id,
            tenant = %workflow.tenant,
            workflow = %workflow.name,
        );
        let handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let governor = &runtime.inner.governor;
                let (started_at, started) = match first_started {
                    Some(ms) => {
                        let at = Timestamp::from_unix_millis(ms);
                        let ago = std::time::SystemTime::now()
                            .duration_since(at.0)
                            .unwrap_or_default();
                        (
                            at,
                            Instant::now().checked_sub(ago).unwrap_or_else(Instant::now),
                        )
                    }
                    None => (Timestamp::now(), Instant::now()),
                };
                let agent_names: Vec<String> = agent_plans.iter().map(|a| a.name.clone()).collect();
                let capacities: BTreeMap<String, usize> = agent_plans
                    .iter()
                    .map(|a| {
                        (
                            a.name.clone(),
                            a.max_concurrency
                                .unwrap_or(max_concurrency)
                                .min(max_concurrency),
                        )
                    })
                    .collect();
                let keys: BTreeMap<String, String> = agent_plans
                    .iter()
                    .map(|a| (a.name.clone(), a.key.clone()))
                    .collect();
                let plan = Plan {
                    workflow: Arc::clone(&workflow),
                    run_id: id.clone(),
                    max_concurrency,
                    agents: agent_plans,
                    tasks,
                    error_budget,
                    budget,
                    started,
                    resumed: prior,
                    fuel_spent,
                };
                let renewal = renewal;
                let revoke = |change| match change {
                    ErrorBudgetChange::Breached => {
                        lease.revoke("the run's error budget was breached")
                    }
                    ErrorBudgetChange::Resumed => {
                        lease.reissue("the run resumed after its error budget was breached");
                    }
                };
                let snapshot = || serde_json::to_value(blackboard.snapshot()).unwrap_or_default();
                let policy = &runtime.inner.policy;
                let grow = |wf: &Workflow, grown: Workflow| {
                    let doctors = diagnostic_agents(&grown, policy).map_err(|e| e.to_string())?;
                    let added = grown.tasks.get(wf.tasks.len()..).unwrap_or_default();
                    for t in added {
                        mailboxes.open(Name::from(&t.id), t.on_message);
                    }
                    grown_inputs.grew(
                        wf.tasks.len(),
                        added.iter().map(|t| Arc::from(t.inputs.as_slice())),
                    );
                    // A grown task with `cache = true` (its own, or its agent's) is memoized
                    // as any other.
                    if let Some(memoized) = &memoized {
                        let (memo, notes) = memo_tasks(&grown, added, &grown_inputs.agents);
                        for note in notes {
                            tracing::info!("{note}");
                        }
                        memoized.grew(wf.tasks.len(), memo);
                    }
                    let tasks = task_plans(&grown, policy, &doctors);
                    Ok(Growth {
                        workflow: grown,
                        tasks,
                    })
                };
                let shared = Shared {
                    grow: &grow,
                    governor,
                    tenant: Arc::clone(&tenant),
                    bus: &run_bus,
                    blackboard: &snapshot,
                    cancel: &run_cancel,
                    drain: &run_drain,
                    on_error_budget: &revoke,
                    ended: &|node: &str| mailboxes.close(node),
                    woken: Some(woken),
                };
                let mut finished = scheduler::run(plan, executor, shared).await;
                let drained = finished.drained;
                drop(renewal);
                lease.revoke("the run ended");
                runtime.inner.claims.close(&id);
                let _ = tokio::task::spawn_blocking(move || run_dir.remove_empty_dirs()).await;
                let duration = started.elapsed();
                let meter = std::mem::replace(&mut finished.meter, scheduler::Meter::new(started));
                let (attempts, retries, blocked, failures) =
                    (meter.attempts, meter.retries, meter.blocked, meter.failures);
                let (parallelism, mut agents) =
                    meter.finish(duration, |name| capacities.get(name).copied().unwrap_or(1));
                for (name, usage) in &mut agents {
                    if let Some(key) = keys.get(name) {
                        usage.score = Some(governor.score(key));
                    }
                }
                let workers = where_attempts_ran(&finished.tasks);
                let local_attempts =
                    attempts.saturating_sub(workers.values().map(|w| w.attempts).sum());
                let mut metrics = RunMetrics {
                    workers,
                    local_attempts,
                    parallelism,
                    attempts,
                    retry_total: retries,
                    repeat_total: repeats.load(std::sync::atomic::Ordering::Relaxed),
                    blocked_total: blocked,
                    failures,
                    statebus_lag_ms: Lag::default(),
                    result_generation_latency_ms: 0.0,
                    events_evicted: 0,
                    fuel: FuelUse {
                        run: finished.fuel_used,
                        tenant: tenant.name.clone(),
                        tenant_total: tenant.account.fuel_used(),
                    },
                    agents,
                    total_messages: 0,
                };
                let messages = mailboxes.counts();
                metrics.total_messages = messages.values().map(|m| m.sent).sum();
                let last_settled = finished.last_settled;
                let grown = Arc::clone(&finished.workflow);
                let mut report = aggregate::report(aggregate::Finished {
                    workflow: &grown,
                    run_id: id,
                    run: finished,
                    agent_names,
                    cancelled: run_cancel.is_cancelled(),
                    started_at,
                    duration,
                    agents: agent_reports,
                    blackboard: blackboard.snapshot(),
                    budget,
                    metrics: metrics.clone(),
                    events: 0,
                    directory: run_directory,
                    messages,
                });
                // Secret values are redacted where guests emit them; this is the last line of
                // defence for the report as a whole.
                if !redactor.is_empty() {
                    let text = serde_json::to_string(&report).unwrap_or_default();
                    if let std::borrow::Cow::Owned(clean) = redactor.json_text(&text) {
                        match serde_json::from_str(&clean) {
                            Ok(clean) => report = clean,
                            // A secret equal to a word of the report's own structure: the parts
                            // a guest wrote were redacted at the source already.
                            Err(e) => tracing::warn!(
                                "run {}: the redacted report does not parse ({e}); keeping the one redacted at the source",
                                report.run_id
                            ),
                        }
                    }
                }
                metrics.result_generation_latency_ms = millis(last_settled.elapsed());
                if !drained {
                    run_bus.publish(EventKind::RunMetrics(metrics.clone()));
                }
                let count = |s: TaskStatus| report.counts.get(&s).copied().unwrap_or(0);
                let (succeeded, skipped, cancelled) = (
                    count(TaskStatus::Succeeded),
                    count(TaskStatus::Skipped),
                    count(TaskStatus::Cancelled),
                );
                let completed = (!drained).then(|| RunCompleted {
                    workflow: report.workflow.clone(),
                    status: report.status,
                    duration_ms: report.duration_ms,
                    succeeded,
                    failed: report.tasks.len() - succeeded - skipped - cancelled,
                    skipped,
                    cancelled,
                });
                if let Some(completed) = completed {
                    run_bus.publish(EventKind::RunCompleted(completed));
                }
                run_bus.close();
                let _ = recorder.await;
                metrics.statebus_lag_ms = run_bus.lag();
                metrics.events_evicted = run_bus.stats().evicted;
                report.metrics = metrics;
                report.events = run_bus.len();
                if let Some(link) = &link
                    && !drained
                {
                    // The writer serializes and commits the report with the run's last
                    // events. A `sync` run waits for it; any other is read back through this
                    // runtime (whose reads wait for what was sent before them) or from its
                    // file once the runtime is dropped.
                    if journal.finish(link, Box::new(report.clone())) {
                        let journal = Arc::clone(&journal);
                        let _ = tokio::task::spawn_blocking(move || journal.flush()).await;
                    }
                }
                report
            },
            span,
        ));
        Ok(Run {
            id: run_id,
            directory,
            bus,
            cancel,
            drain,
            handle: Some(handle),
            detached: false,
        })
    }
}

/// Which tasks are memoized, and notes on those that asked to be and are not.
fn memo_tasks(
    workflow: &Workflow,
    tasks: &[crate::workflow::TaskDef],
    agents: &[RunAgent],
) -> (Vec<Option<Arc<MemoTask>>>, Vec<String>) {
    let mut notes = Vec::new();
    let tasks = tasks
        .iter()
        .map(|t| {
            let candidates = t.target.agents();
            let asked = candidates
                .iter()
                .any(|&a| t.cache.or(workflow.agents[a].cache).unwrap_or(false));
            if !asked || t.cache == Some(false) {
                return None;
            }
            // What may depend on the world is memoized only when its agent says so.
            let worldly = candidates.iter().find(|&&a| {
                let run = &agents[a];
                (!run.granted.is_empty() || !run.secrets.is_empty())
                    && workflow.agents[a].cache != Some(true)
            });
            if let Some(&a) = worldly {
                notes.push(format!(
                    "task `{}` is not memoized: agent `{}` calls tools or reads secrets; set \
                     `cache = true` on the agent itself to memoize it anyway",
                    t.id, workflow.agents[a].name
                ));
                return None;
            }
            Some(Arc::new(MemoTask::new(t.inputs.clone())))
        })
        .collect();
    (tasks, notes)
}

/// Runs a blocking journal call off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a journal call failed: {e}")))?
}

/// What each task of a resumed run did before, as the scheduler takes it: by task id, those
/// its planners added included.
fn prior_tasks(workflow: &Workflow, folded: &Folded) -> HashMap<String, scheduler::Resumed> {
    folded
        .tasks
        .iter()
        .map(|(node, prior)| {
            let target = workflow.tasks.iter().find(|t| &t.id == node);
            let attempts = prior
                .attempts
                .iter()
                .map(|a| {
                    let agent = workflow
                        .agents
                        .iter()
                        .position(|d| d.name == a.agent)
                        .or_else(|| target.and_then(|t| t.target.agents().first().copied()))
                        .unwrap_or(0);
                    let attempt = Attempt {
                        status: a.status,
                        output: a.output.clone(),
                        output_digest: a.output_digest.clone(),
                        cached_from: a.cached_from.clone(),
                        worker: a.worker.clone(),
                        error: a.error.clone(),
                        started_at: a.started_at,
                        finished_at: a.finished_at,
                        latency: Duration::from_secs_f64(a.latency_ms.max(0.0) / 1000.0),
                        fuel_used: a.fuel_used,
                        memory_peak: a.memory_peak,
                        artifacts: a.artifacts.clone(),
                    };
                    (agent, attempt)
                })
                .collect();
            let resumed = scheduler::Resumed {
                attempts,
                succeeded: prior.succeeded,
            };
            (node.clone(), resumed)
        })
        .collect()
}

/// Refuses a workflow whose tasks would read the runtime's own files: its state directory
/// (other runs' and tenants' working directories, stores) or a secrets directory. A workflow
/// file may sit beside them, so being under the workflow's directory is not enough.
fn guard_inputs(workflow: &Workflow, state: &Path, secrets: Option<&Path>) -> Result<(), Error> {
    let protected: Vec<(PathBuf, &str)> = [(Some(state), "state"), (secrets, "secrets")]
        .into_iter()
        .filter_map(|(dir, what)| Some((std::fs::canonicalize(dir?).ok()?, what)))
        .collect();
    let mut problems = Vec::new();
    for task in &workflow.tasks {
        for input in &task.inputs {
            for (dir, what) in &protected {
                // Either way round: an input that contains the directory gives it away too.
                if input.starts_with(dir) || dir.starts_with(input) {
                    problems.push(workflow.source.error_in_file(format!(
                        "task `{}` would read `{}`, which holds (or is inside) the runtime's {what} \
                         directory `{}`",
                        task.id,
                        input.display(),
                        dir.display()
                    )).help("give tasks files of their own: the runtime's directories belong to no workflow"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidWorkflow(Diagnostics(problems)))
    }
}

/// The diagnostic agent of each task whose blocked-task policy is `diagnose`, checked
/// against the workflow's agents (the policy file may name one the workflow lacks).
pub(crate) fn diagnostic_agents(
    workflow: &Workflow,
    policy: &Policy,
) -> Result<Vec<Option<usize>>, Error> {
    let mut problems = Vec::new();
    let mut doctors = Vec::new();
    for task in &workflow.tasks {
        let stall = layered_stall(workflow, policy, task);
        let doctor = match (stall.resolve().map(|s| s.action), &stall.diagnostic_agent) {
            (Some(OnBlocked::Diagnose), None) => {
                problems.push(workflow.source.error_in_file(format!(
                    "task `{}` hands blocked attempts to a diagnostic agent, but none is named",
                    task.id
                )).help("set `diagnostic_agent = \"...\"` on the task, the workflow or the policy's [defaults]"));
                None
            }
            (_, Some(name)) => {
                match workflow.agents.iter().position(|a| &a.name == name) {
                    Some(index) => Some(index),
                    None => {
                        let source = policy.source.as_ref().unwrap_or(&workflow.source);
                        problems.push(source.error_in_file(format!(
                        "the diagnostic agent `{name}` is not an agent of workflow `{}`",
                        workflow.name
                    )).help("declare it in the workflow (or its registry), or name another"));
                        None
                    }
                }
            }
            _ => None,
        };
        doctors.push(doctor);
    }
    if problems.is_empty() {
        Ok(doctors)
    } else {
        problems.dedup();
        Err(Error::InvalidWorkflow(Diagnostics(problems)))
    }
}

fn layered_stall(
    workflow: &Workflow,
    policy: &Policy,
    task: &crate::workflow::TaskDef,
) -> StallOverride {
    task.stall
        .over(&workflow.stall.over(&policy.defaults.stall))
}

/// Each task's failure handling: the task's settings, over those of the agent an attempt ran
/// on, over the workflow's, the policy defaults and the built-in defaults.
fn task_plans(workflow: &Workflow, policy: &Policy, doctors: &[Option<usize>]) -> Vec<TaskPlan> {
    let base = workflow
        .retry
        .over(policy.defaults.retry.over(RetryPolicy::default()));
    workflow
        .tasks
        .iter()
        .zip(doctors)
        .map(|(task, doctor)| TaskPlan {
            retry: task
                .target
                .agents()
                .iter()
                .map(|&a| {
                    (
                        a,
                        task.retry.over(workflow.agents[a].retry.over(base.clone())),
                    )
                })
                .collect(),
            stall: layered_stall(workflow, policy, task).resolve(),
            diagnostic_agent: *doctor,
        })
        .collect()
}

/// A time-ordered, unique enough run id: `20261122-101500-3fa9c1`.
pub(super) fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let (date, time) = compact.split_at(8.min(compact.len()));
    format!("{date}-{time}-{:06x}", hasher.finish() & 0xff_ffff)
}

/// Aborts a background task when dropped (also when the task that owns it panics).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A run in progress. Dropping it cancels the run (running guests are stopped promptly),
/// unless it was [detached](Run::detach): a run that nobody holds is not left running by
/// accident.
#[derive(Debug)]
pub struct Run {
    id: String,
    directory: PathBuf,
    bus: Arc<Bus>,
    cancel: CancellationToken,
    drain: CancellationToken,
    /// `None` once [`Run::wait`] has taken it.
    handle: Option<JoinHandle<RunReport>>,
    detached: bool,
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.detached {
            self.cancel.cancel();
        }
    }
}

/// Opens streams of one run's events (see [`Run::feed`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventFeed(Arc<Bus>);

impl EventFeed {
    /// Every event still held, from the first, then live ones until the run ends.
    pub fn stream(&self) -> EventStream {
        self.0.subscribe()
    }

    /// Events from sequence number `seq` on. Those the feed no longer holds (the oldest past
    /// its bound, or, for a resumed run, those before it was resumed: read them from the
    /// journal, [`Runtime::run_events`]) are skipped and counted in
    /// [`EventStream::missed`].
    pub fn stream_from(&self, seq: u64) -> EventStream {
        self.0.subscribe_from(seq)
    }
}

/// Cancels a run from anywhere (a signal handler, another task). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CancelHandle {
    cancel: CancellationToken,
    drain: CancellationToken,
}

impl CancelHandle {
    /// Cancels the run: nothing more starts, and running guests are stopped promptly (they end
    /// as `cancelled`).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Drains the run: nothing more starts, running attempts finish, then the run stops
    /// without ending. It is not marked as ended in the journal (its events stop before
    /// `agent.run.completed`): once this process exits it is interrupted, and a resume runs
    /// what had not run. For a service that stops: [`Run::wait`] then returns a report in
    /// which what did not run is `cancelled`, in memory only.
    pub fn drain(&self) {
        self.drain.cancel();
    }
}

impl Run {
    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The run's directory: each task's working directory is under it.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Every event of the run, from its first (whenever this is called) to its last.
    pub fn events(&self) -> EventStream {
        self.bus.subscribe()
    }

    /// A handle that opens streams of this run's events, from any sequence number, for as
    /// long as it is held (also after the run ended, or after [`Run::wait`] took the run).
    pub fn feed(&self) -> EventFeed {
        EventFeed(Arc::clone(&self.bus))
    }

    /// Cancels the run (see [`CancelHandle::cancel`]).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A handle that cancels this run.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            cancel: self.cancel.clone(),
            drain: self.drain.clone(),
        }
    }

    /// Waits for the run to end and returns its report.
    ///
    /// Dropping this future before it completes drops the run, which cancels it (unless it was
    /// detached).
    pub async fn wait(mut self) -> Result<RunReport, Error> {
        let handle = self
            .handle
            .take()
            .ok_or_else(|| Error::Internal("the run was awaited already".into()))?;
        handle.await.map_err(|e| Error::Internal(e.to_string()))
    }

    /// Lets the run go on in the background, whoever holds it: dropping the returned handle
    /// (or this `Run`'s clones of it) no longer cancels it. Its events and results are still
    /// published and written as usual; the handle can still cancel it.
    pub fn detach(mut self) -> CancelHandle {
        self.detached = true;
        self.cancel_handle()
    }
}

/// Per worker, what it ran of these tasks' attempts.
fn where_attempts_ran(
    tasks: &[scheduler::TaskOutcome],
) -> std::collections::BTreeMap<String, crate::model::report::WorkerUsage> {
    let mut workers =
        std::collections::BTreeMap::<String, crate::model::report::WorkerUsage>::new();
    for (_, a) in tasks.iter().flat_map(|t| &t.attempts) {
        if let Some(w) = &a.worker {
            let usage = workers.entry(w.to_string()).or_default();
            usage.attempts += 1;
            if a.status.is_success() {
                usage.succeeded += 1;
            }
            usage.busy_ms += millis(a.latency);
        }
    }
    workers
}
