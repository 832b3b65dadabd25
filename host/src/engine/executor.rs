//! The local executor: the attempt port's implementation over this process's engine. It
//! gathers what an attempt of a run needs from each capability (its files, tools, secrets,
//! blackboard scope), claims the attempt's key, publishes its grants, and has the engine run
//! it in a fresh store.

use std::path::PathBuf;
use std::sync::Arc;

use super::Engine;
use super::LoadedAgent;
use super::exec;
use crate::bus::{Bus, EmitterLimits, TaskEmitter};
use crate::capabilities::blackboard::{Blackboard, BoardScope};
use crate::capabilities::files::{RunDir, TaskFiles};
use crate::capabilities::messages::{Mailboxes, MessageScope};
use crate::capabilities::secrets::{Lease, SecretAccess, SecretBackend};
use crate::capabilities::tools::{Caller, RunQuotas, ToolAccess, ToolRegistry};
use crate::claims::Claims;
use crate::govern::FuelBucket;
use crate::model::Name;
use crate::model::events::TaskGrants;
use crate::model::port::{Attempt, Executor, Job};
use crate::model::status::{ErrorKind, TaskStatus};
use crate::policy::TenantAccess;
use crate::redact::Redactor;

/// An agent of a run, ready to execute.
#[derive(Clone)]
pub(crate) struct RunAgent {
    pub(crate) loaded: Arc<LoadedAgent>,
    /// Tools granted to it (by its registry entry or workflow).
    pub(crate) granted: Arc<[String]>,
    /// Secrets its tenant's policy grants it.
    pub(crate) secrets: Arc<[String]>,
    pub(crate) workdir: bool,
    /// The agent's own fuel rate, shared by every run of the runtime.
    pub(crate) bucket: Option<Arc<FuelBucket>>,
}

/// What the tasks of one run share.
pub(crate) struct RunContext {
    pub(crate) run_id: Name,
    pub(crate) workflow: String,
    pub(crate) tenant: Name,
    pub(crate) bus: Arc<Bus>,
    pub(crate) blackboard: Arc<Blackboard>,
    /// The inboxes of the run's tasks.
    pub(crate) mailboxes: Arc<Mailboxes>,
    /// Every branch of the run.
    pub(crate) branches: Arc<std::collections::HashSet<String>>,
    pub(crate) run_dir: Arc<RunDir>,
    pub(crate) agents: Vec<RunAgent>,
    /// Each task's declared inputs, by task index (a loop's later iterations join as the run
    /// grows).
    pub(crate) inputs: std::sync::RwLock<Vec<Arc<[PathBuf]>>>,
    /// The tenant's fuel rate, shared by all its runs.
    pub(crate) tenant_bucket: Option<Arc<FuelBucket>>,
    pub(crate) tools: Arc<ToolRegistry>,
    /// What the tenant's policy lets its guests reach.
    pub(crate) access: Arc<TenantAccess>,
    pub(crate) quotas: Arc<RunQuotas>,
    /// The tenant's call-rate buckets, by tool.
    pub(crate) tool_rates: Arc<std::collections::HashMap<String, Arc<FuelBucket>>>,
    pub(crate) secrets: Arc<dyn SecretBackend>,
    /// The run's credentials: each attempt reads secrets under the one current as it starts.
    pub(crate) lease: Arc<Lease>,
    /// Every secret value handed to the run's guests, to be kept out of what it emits.
    pub(crate) redactor: Arc<Redactor>,
    pub(crate) claims: Arc<Claims>,
    pub(crate) emitter_limits: EmitterLimits,
}

impl RunContext {
    /// Task `task`'s declared inputs.
    pub(crate) fn inputs(&self, task: usize) -> Option<Arc<[PathBuf]>> {
        let inputs = self.inputs.read().unwrap_or_else(|e| e.into_inner());
        inputs.get(task).cloned()
    }

    /// Takes in the inputs of the tasks a run grew by (after the `from` it had).
    pub(crate) fn grew(&self, from: usize, inputs: impl Iterator<Item = Arc<[PathBuf]>>) {
        let mut all = self.inputs.write().unwrap_or_else(|e| e.into_inner());
        all.truncate(from);
        all.extend(inputs);
    }

    /// Where an attempt's task stands in the run's blackboard.
    pub(crate) fn board_scope(&self, job: &Job) -> BoardScope {
        BoardScope {
            board: Arc::clone(&self.blackboard),
            branch: job.task_ref.branch.clone(),
            branches: Arc::clone(&self.branches),
            relay: None,
        }
    }

    /// What an attempt's `messages` import reaches. A diagnosis speaks for no task: it
    /// neither sends as the task it diagnoses nor takes its messages.
    pub(crate) fn message_scope(&self, job: &Job) -> MessageScope {
        match job.task {
            Some(_) => MessageScope {
                mailboxes: Arc::clone(&self.mailboxes),
                node: job.task_ref.node.clone(),
                relay: None,
            },
            None => MessageScope::alone(),
        }
    }

    /// What an attempt of `agent` may call, as whom.
    pub(crate) fn tool_access(&self, job: &Job, agent: &RunAgent) -> ToolAccess {
        let run = self;
        let caller = Caller {
            tenant: run.tenant.clone(),
            run_id: run.run_id.clone(),
            node: job.task_ref.node.clone(),
            agent: job.task_ref.agent.clone(),
            attempt: job.task_ref.attempt,
            secrets: Arc::clone(&run.redactor),
        };
        ToolAccess {
            registry: Arc::clone(&run.tools),
            granted: Arc::clone(&agent.granted),
            tenant: Arc::clone(&run.access),
            quotas: Arc::clone(&run.quotas),
            rates: Arc::clone(&run.tool_rates),
            caller,
            relay: None,
        }
    }
}

/// The local executor: runs each attempt in a fresh sandbox of this process's engine.
pub(crate) struct LocalExecutor {
    pub(crate) engine: Arc<Engine>,
    pub(crate) run: Arc<RunContext>,
}

impl LocalExecutor {
    /// The files of an attempt: its working directory, its inputs (staged on its first
    /// attempt) and the working directories of the tasks it depends on.
    async fn files(&self, job: &Job, agent: &RunAgent) -> std::io::Result<TaskFiles> {
        let run = &self.run;
        if !agent.workdir {
            return Ok(TaskFiles::default());
        }
        let branch = &job.task_ref.branch;
        let work = run
            .run_dir
            .work_dir(branch, job.task_ref.attempt > 1 && !job.keep_files)?;
        let sources = job
            .task
            .and_then(|t| run.inputs(t))
            .filter(|s| !s.is_empty());
        let inputs = match sources {
            // Staging may copy: off the async threads.
            Some(sources) => {
                let (run_dir, branch, sources) =
                    (Arc::clone(&run.run_dir), branch.clone(), sources.clone());
                let staged =
                    tokio::task::spawn_blocking(move || run_dir.inputs(&branch, &sources)).await;
                Some(staged.map_err(std::io::Error::other)??)
            }
            None => None,
        };
        let upstream = job
            .upstream
            .iter()
            .filter_map(|(node, _)| {
                let dir = run.run_dir.existing(&format!("{}.{node}", run.workflow))?;
                Some((node.to_string(), dir))
            })
            .collect();
        Ok(TaskFiles {
            work: Some(work),
            inputs,
            upstream,
        })
    }
}

impl Executor for LocalExecutor {
    async fn execute(&self, job: Job) -> Attempt {
        let span = tracing::info_span!(
            "attempt",
            run = %self.run.run_id,
            tenant = %self.run.tenant,
            node = %job.task_ref.node,
            agent = %job.task_ref.agent,
            attempt = job.task_ref.attempt,
            status = tracing::field::Empty,
        );
        let attempt = tracing::Instrument::instrument(self.attempt(job), span.clone()).await;
        span.record("status", attempt.status.as_str());
        attempt
    }
}

impl LocalExecutor {
    async fn attempt(&self, job: Job) -> Attempt {
        let run = &self.run;
        let agent = &run.agents[job.agent];
        if let Err(refused) = run.claims.claim(&run.tenant, &job.key, &job.task_ref) {
            return Attempt::not_run(TaskStatus::Failed, ErrorKind::Claimed, refused.to_string());
        }
        let files = match self.files(&job, agent).await {
            Ok(files) => files,
            Err(e) => {
                return Attempt::not_run(
                    TaskStatus::Failed,
                    ErrorKind::Host,
                    format!("could not set up the task's files: {e}"),
                );
            }
        };
        let tools = run.tool_access(&job, agent);
        let mut emitter = TaskEmitter::new(
            Arc::clone(&run.bus),
            job.task_ref.clone(),
            run.emitter_limits,
        )
        .with_heartbeat(Arc::clone(&job.heartbeat))
        .for_tenant(&run.tenant, Arc::clone(&run.redactor));
        let inputs = files.read_only();
        emitter.grants(TaskGrants {
            task: job.task_ref.clone(),
            tenant: run.tenant.clone(),
            tools: tools.effective(),
            secrets: agent.secrets.to_vec(),
            workdir: files.work.as_ref().map(|w| w.path().display().to_string()),
            inputs,
            blackboard: format!(
                "branches/{}/ (own), shared/ (compare-and-swap)",
                job.task_ref.branch
            ),
        });
        let setup = exec::Setup {
            agent: Arc::clone(&agent.loaded),
            buckets: run
                .tenant_bucket
                .iter()
                .chain(agent.bucket.iter())
                .map(|b| Arc::clone(b) as Arc<dyn crate::govern::FuelDraw>)
                .collect(),
            tenant: run.tenant.clone(),
            run_id: run.run_id.clone(),
            emitter,
            board: run.board_scope(&job),
            messages: run.message_scope(&job),
            tools,
            secrets: SecretAccess {
                backend: Arc::clone(&run.secrets),
                credential: run.lease.current(),
                granted: Arc::clone(&agent.secrets),
            },
            redactor: Arc::clone(&run.redactor),
            files,
        };
        // Boxed: the future of an attempt is large (the store's setup, the guest call), and
        // the task spawned for it is moved a few times before it runs.
        Box::pin(self.engine.execute(job, setup)).await
    }
}
