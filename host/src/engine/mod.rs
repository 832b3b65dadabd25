//! The Wasm engine: compiling, caching, instantiating and running sub-agent components.
//!
//! Owns everything wasmtime: one `Engine` per runtime (async, fuel, epoch interruption, the
//! pooling allocator where the machine allows it), one epoch ticker, the compile cache, the
//! linker with WASI and the host imports, and the execution of one attempt in a fresh store.
//! It never decides what runs when (the scheduler does) and never prints.

mod cache;
mod exec;
mod executor;
mod limiter;
mod recycler;
mod sandbox;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

#[cfg(feature = "nats")]
pub(crate) use self::cache::MAX_COMPONENT;
pub(crate) use self::cache::{LoadError, LoadedAgent, read_component};
#[cfg(feature = "nats")]
pub(crate) use self::exec::Setup;
#[cfg(any(feature = "fuzzing", feature = "nats"))]
pub(crate) use self::exec::accept_output;
pub(crate) use self::executor::{LocalExecutor, RunAgent, RunContext};
use self::state::TaskState;
use crate::bus::{Bus, EmitterLimits, TaskEmitter};
use crate::capabilities::{blackboard, files, messages, secrets, tools};
use crate::error::Error;
use crate::model::events::TaskRef;
use crate::model::limits::Limits;
use crate::model::report::CacheSource;

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
    /// Stopped (and joined) first, when the engine is dropped.
    recycler: recycler::Recycler,
    engine: wasmtime::Engine,
    linker: Linker<TaskState>,
    cache: cache::ComponentCache,
    /// One permit per instance that may exist at once (the pool's size).
    instances: Arc<Semaphore>,
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
        state::link(&mut linker)
            .map_err(|e| Error::Engine(format!("linking host imports: {e:#}")))?;
        let instances = Arc::new(Semaphore::new(config.max_instances as usize));
        Ok(Self {
            recycler: recycler::Recycler::start(engine.clone(), Arc::clone(&instances)),
            cache: cache::ComponentCache::new(&engine, config.cache_dir.clone()),
            linker,
            instances,
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

    /// Loads (compiles or fetches from cache) a component from its bytes. Blocking.
    #[cfg(feature = "nats")]
    pub(crate) fn load_bytes(
        &self,
        bytes: &[u8],
    ) -> Result<(Arc<LoadedAgent>, CacheSource), LoadError> {
        self.cache
            .load_bytes(&self.engine, &self.linker, bytes, None)
    }

    /// Calls a component's `describe` in a throwaway sandbox (no files, no tools).
    pub(crate) async fn describe(&self, agent: &LoadedAgent) -> anyhow::Result<crate::wit::Info> {
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
                disk: files::DiskQuota::new(0),
                events,
                board: blackboard::BoardScope::alone(),
                messages: messages::MessageScope::alone(),
                tools: tools::ToolAccess::none(),
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
        Ok(instance.call_describe(&mut store).await?)
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
            .table_keep_resident(config.keep_resident.min(64 << 10))
            // Where the kernel can tell which pages a guest dirtied (Linux 6.7+), only those
            // are reset: a guest that touched a few pages costs a few pages, not its whole
            // initial memory.
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut pooled = wasm.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match wasmtime::Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                "the pooling allocator is not available here ({e:#}); allocating instances on demand"
            ),
        }
    }
    let engine = wasmtime::Engine::new(&wasm).map_err(|e| Error::Engine(format!("{e:#}")))?;
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
