//! The Wasm engine: compiling, caching, instantiating and running sub-agent components.
//!
//! Owns everything wasmtime: one `Engine` per runtime (async, fuel, epoch interruption, the
//! pooling allocator where the machine allows it), one epoch ticker, the compile cache, the
//! linker with WASI and the host imports, and the execution of one attempt in a fresh store.
//! It never decides what runs when (the scheduler does) and never prints.

mod bindings;
mod blackboard;
mod cache;
mod disk;
mod exec;
mod files;
mod fs_audit;
mod limiter;
mod sandbox;
mod secrets;
mod state;
mod status;
mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use self::cache::CacheSource;
pub(crate) use self::cache::{LoadError, LoadedAgent};
pub(crate) use self::sandbox::RunDir;
use self::sandbox::TaskFiles;
use self::secrets::SecretAccess;
use self::state::TaskState;
pub(crate) use self::tools::RunQuotas;
use self::tools::ToolAccess;
use crate::Error;
use crate::blackboard::Blackboard;
use crate::bus::{
    Bus, EmitterLimits, ErrorKind, Redactor, TaskEmitter, TaskGrants, TaskRef, TaskStatus,
};
use crate::govern::FuelBucket;
use crate::policy::TenantAccess;
use crate::scheduler::{Attempt, Claims, Executor, Job};
use crate::secrets::{Lease, SecretBackend};
use crate::tools::{ToolCall, ToolRegistry};
use crate::workflow::Limits;

/// How the engine is built.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) pooling: bool,
    pub(crate) max_instances: u32,
    pub(crate) epoch_tick: Duration,
    /// Bytes of each pooled memory kept resident between instances.
    pub(crate) keep_resident: usize,
}

pub(crate) struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<TaskState>,
    cache: cache::ComponentCache,
    /// One permit per instance that may exist at once (the pool's size).
    instances: Semaphore,
    pooling: bool,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("pooling", &self.pooling)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(config: &EngineConfig) -> Result<Self, Error> {
        let (engine, pooling) = build_engine(config)?;
        let mut linker = Linker::new(&engine);
        let link = |linker: &mut Linker<TaskState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
            fs_audit::add_to_linker(linker)?;
            status::add_to_linker(linker)?;
            blackboard::add_to_linker(linker)?;
            secrets::add_to_linker(linker)?;
            tools::add_to_linker(linker)
        };
        link(&mut linker).map_err(|e| Error::Setup(format!("linking host imports: {e:#}")))?;
        Ok(Self {
            cache: cache::ComponentCache::new(&engine, config.cache_dir.clone()),
            linker,
            instances: Semaphore::new(config.max_instances as usize),
            pooling,
            _ticker: EpochTicker::start(engine.clone(), config.epoch_tick),
            engine,
        })
    }

    /// Whether instances come from the pooling allocator.
    pub(crate) fn pooling(&self) -> bool {
        self.pooling
    }

    /// Loads (compiles or fetches from cache) the component at `path`. Blocking.
    pub(crate) fn load(
        &self,
        path: &Path,
    ) -> Result<(Arc<LoadedAgent>, CacheSource, Duration), LoadError> {
        self.cache.load(&self.engine, &self.linker, path)
    }

    /// Calls a component's `describe` in a throwaway sandbox (no files, no tools).
    pub(crate) async fn describe(&self, agent: &LoadedAgent) -> anyhow::Result<bindings::Info> {
        let bus = Bus::new("inspect");
        let task = TaskRef {
            node: "describe".into(),
            branch: "inspect.describe".into(),
            agent: "inspect".into(),
            attempt: 1,
        };
        let events = Arc::new(std::sync::Mutex::new(TaskEmitter::new(
            bus,
            task,
            EmitterLimits::default(),
        )));
        let limits = Limits::default();
        let mut store = Store::new(
            &self.engine,
            TaskState {
                wasi: wasmtime_wasi::WasiCtx::builder().build(),
                table: ResourceTable::new(),
                limiter: limiter::MemoryLimiter::new(limits.memory),
                disk: disk::DiskQuota::new(0),
                events,
                board: blackboard::BoardScope::alone(),
                tools: ToolAccess::none(),
                secrets: secrets::SecretAccess::none(),
                deadline: std::time::Instant::now() + Duration::from_secs(10),
                buckets: Vec::new(),
                fuel_seen: limits.fuel,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel)?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|cx| {
            if std::time::Instant::now() >= cx.data().deadline {
                wasmtime::bail!("`describe` took more than 10 seconds");
            }
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        let instance = agent.pre.instantiate_async(&mut store).await?;
        Ok(instance
            .wasm_orch_agent_agent()
            .call_describe(&mut store)
            .await?)
    }
}

fn build_engine(config: &EngineConfig) -> Result<(wasmtime::Engine, bool), Error> {
    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .epoch_interruption(true)
        .wasm_component_model(true);
    if config.pooling {
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(4 << 30)
            // Reset a freed slot's memory with memset rather than madvise: changing page
            // tables costs TLB shootdowns on every core, which dominated short tasks.
            .linear_memory_keep_resident(config.keep_resident)
            .table_keep_resident(config.keep_resident.min(64 << 10));
        let mut pooled = wasm.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match wasmtime::Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                "the pooling allocator is not available here ({e:#}); allocating instances on demand"
            ),
        }
    }
    let engine = wasmtime::Engine::new(&wasm).map_err(|e| Error::Setup(format!("{e:#}")))?;
    Ok((engine, false))
}

/// Increments the engine's epoch at a fixed rate, on its own thread, until dropped.
/// Each store's deadline is relative to it, so no task's timing depends on another's.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wasm-orch-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| tracing::error!("could not start the epoch ticker: {e}"))
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// An agent of a run, ready to execute.
#[derive(Clone)]
pub(crate) struct RunAgent {
    pub(crate) name: String,
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
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    pub(crate) tenant: String,
    pub(crate) bus: Arc<Bus>,
    pub(crate) blackboard: Arc<Blackboard>,
    /// Every branch of the run.
    pub(crate) branches: Arc<std::collections::HashSet<String>>,
    pub(crate) run_dir: Arc<RunDir>,
    pub(crate) agents: Vec<RunAgent>,
    /// Each task's declared inputs, by task index.
    pub(crate) inputs: Vec<Vec<PathBuf>>,
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
        let work = run.run_dir.work_dir(branch)?;
        let sources = job
            .task
            .and_then(|t| run.inputs.get(t))
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
                Some((node.clone(), dir))
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
        let caller = ToolCall {
            tenant: run.tenant.clone(),
            run_id: run.run_id.clone(),
            node: job.task_ref.node.clone(),
            agent: agent.name.clone(),
            attempt: job.task_ref.attempt,
            input: serde_json::Value::Null,
            secrets: Arc::clone(&run.redactor),
        };
        let tools = ToolAccess {
            registry: Arc::clone(&run.tools),
            granted: Arc::clone(&agent.granted),
            tenant: Arc::clone(&run.access),
            quotas: Arc::clone(&run.quotas),
            rates: Arc::clone(&run.tool_rates),
            caller,
        };
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
                .cloned()
                .collect(),
            tenant: run.tenant.clone(),
            run_id: run.run_id.clone(),
            emitter,
            board: blackboard::BoardScope {
                board: Arc::clone(&run.blackboard),
                branch: job.task_ref.branch.clone(),
                branches: Arc::clone(&run.branches),
            },
            tools,
            secrets: SecretAccess {
                backend: Arc::clone(&run.secrets),
                credential: run.lease.current(),
                granted: Arc::clone(&agent.secrets),
            },
            redactor: Arc::clone(&run.redactor),
            files,
        };
        self.engine.execute(job, setup).await
    }
}
