//! The runtime: the public entry point that ties workflow, engine, scheduler, bus and results
//! together. One `Runtime` per process; it runs any number of workflows, side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aggregate::{self, AgentReport, RunReport};
use crate::blackboard::{Blackboard, BlackboardLimits};
use crate::bus::{
    Bus, EmitterLimits, EventKind, EventStream, PlanCreated, PlannedTask, RunCompleted, TaskStatus,
    Timestamp,
};
use crate::engine::{Engine, EngineConfig, LoadError, LocalExecutor, RunAgent, RunContext, RunDir};
use crate::scheduler::{self, millis};
use crate::tools::{Tool, ToolRegistry};
use crate::workflow::{Diagnostic, Diagnostics, Workflow, is_valid_name};
use crate::{Error, scheduler::TaskOutcome};

/// Builds a [`Runtime`]. Every setting has a default.
#[derive(Debug)]
pub struct RuntimeBuilder {
    cache_dir: Option<Option<PathBuf>>,
    state_dir: Option<PathBuf>,
    pooling: bool,
    max_instances: u32,
    tools: ToolRegistry,
}

impl RuntimeBuilder {
    /// Where compiled components are cached on disk, so that a later run (or process) does
    /// not compile them again. Default: `$WASM_ORCH_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/wasm-orch`, else `~/.cache/wasm-orch`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(Some(dir.into()));
        self
    }

    /// Keeps compiled components in memory only. Default: cached on disk too.
    pub fn without_disk_cache(mut self) -> Self {
        self.cache_dir = Some(None);
        self
    }

    /// Where runs keep their files: `<state dir>/tenants/<tenant>/runs/<run id>/<branch>` is
    /// each task's working directory. Default: `$WASM_ORCH_STATE_DIR`, else `.wasm-orch` in
    /// the current directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Whether to use wasmtime's pooling allocator (faster instantiation), which reserves
    /// address space up front. Default: `true`; where the machine does not allow it, the
    /// runtime falls back to allocating on demand.
    pub fn pooling(mut self, enabled: bool) -> Self {
        self.pooling = enabled;
        self
    }

    /// How many guest instances may exist at once across all runs (the pool's size).
    /// Default: 1000.
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n.max(1);
        self
    }

    /// Offers a tool to guests, under `name` (agents still need a grant: `tools = [...]`).
    /// Built in: `sleep`.
    pub fn tool(mut self, name: impl Into<String>, tool: impl Tool) -> Self {
        self.tools.insert(name.into(), Arc::new(tool));
        self
    }

    /// Builds the engine and starts its epoch ticker.
    pub fn build(self) -> Result<Runtime, Error> {
        let cache_dir = self.cache_dir.unwrap_or_else(default_cache_dir);
        let state_dir = self.state_dir.unwrap_or_else(|| {
            std::env::var_os("WASM_ORCH_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".wasm-orch"))
        });
        let engine = Engine::new(&EngineConfig {
            cache_dir,
            pooling: self.pooling,
            max_instances: self.max_instances,
            epoch_tick: Duration::from_millis(10),
        })?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                tools: Arc::new(self.tools),
                state_dir,
            }),
        })
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASM_ORCH_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("wasm-orch"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("wasm-orch"))
}

/// Runs workflows of sandboxed Wasm sub-agents. Cheap to clone; clones share the engine,
/// its compile cache and its instance pool.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Arc<Engine>,
    tools: Arc<ToolRegistry>,
    state_dir: PathBuf,
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    max_concurrency: Option<usize>,
    run_id: Option<String>,
}

impl RunOptions {
    /// The defaults: the workflow's own `max_concurrency`, a fresh run id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the workflow's `max_concurrency`.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n.max(1));
        self
    }

    /// Uses this run id instead of a fresh one (letters, digits, `_`, `-`, `.`).
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }
}

/// A component and what the runtime makes of it (see [`Runtime::inspect`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ComponentInfo {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
    /// The component's world, in WIT.
    pub wit: String,
    /// What the agent says of itself, or why the component is not a sub-agent.
    pub sub_agent: Result<AgentInfo, String>,
}

/// A sub-agent's description of itself (its `describe` export).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<String>,
}

impl Runtime {
    /// A builder with every setting at its default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            cache_dir: None,
            state_dir: None,
            pooling: true,
            max_instances: 1000,
            tools: ToolRegistry::with_builtins(),
        }
    }

    /// Whether instances come from the pooling allocator.
    pub fn uses_pooling(&self) -> bool {
        self.inner.engine.pooling()
    }

    /// Loads every component of `workflow` (compiling those not cached) and checks that each
    /// implements `wasm-orch:agent/sub-agent` and that every granted tool exists. Problems
    /// point at the workflow file's lines.
    pub async fn check(&self, workflow: &Workflow) -> Result<BTreeMap<String, AgentReport>, Error> {
        Ok(self
            .load_agents(workflow)
            .await?
            .into_iter()
            .map(|(agent, report)| (agent.name, report))
            .collect())
    }

    async fn load_agents(
        &self,
        workflow: &Workflow,
    ) -> Result<Vec<(RunAgent, AgentReport)>, Error> {
        let mut problems = Vec::new();
        let mut agents = Vec::new();
        for def in &workflow.agents {
            for (tool, span) in &def.tools {
                if self.inner.tools.get(tool).is_none() {
                    let known: Vec<&str> = self.inner.tools.names().collect();
                    problems.push(workflow.tool_error(
                        span.clone(),
                        format!(
                            "agent `{}` is granted tool `{tool}`, which this host does not have",
                            def.name
                        ),
                        format!("tools of this host: {}", known.join(", ")),
                    ));
                }
            }
            let engine = Arc::clone(&self.inner.engine);
            let path = def.component.clone();
            let loaded = tokio::task::spawn_blocking(move || engine.load(&path))
                .await
                .map_err(|e| Error::Internal(format!("loading a component: {e}")))?;
            match loaded {
                Ok((loaded, cache, took)) => {
                    let report = AgentReport {
                        description: def.description.clone(),
                        component: def.component.clone(),
                        digest: loaded.digest.clone(),
                        cache,
                        load_ms: millis(took),
                        limits: def.limits,
                    };
                    let granted: Vec<String> = def.tools.iter().map(|(t, _)| t.clone()).collect();
                    agents.push((
                        RunAgent {
                            name: def.name.clone(),
                            loaded,
                            limits: def.limits,
                            granted: granted.into(),
                            workdir: def.workdir,
                        },
                        report,
                    ));
                }
                Err(e) => problems.push(load_problem(workflow, def, e)),
            }
        }
        if problems.is_empty() {
            Ok(agents)
        } else {
            Err(Error::InvalidWorkflow(Diagnostics(problems)))
        }
    }

    /// Starts running `workflow`. Must be called within a tokio runtime.
    ///
    /// Returns once every component is loaded and the run has begun; errors mean nothing ran.
    /// Every way a task can fail is an outcome in the [`RunReport`] that [`Run::wait`] returns.
    pub async fn start(&self, workflow: &Workflow, options: RunOptions) -> Result<Run, Error> {
        let run_id = match options.run_id {
            Some(id) if is_valid_name(&id) => id,
            Some(id) => return Err(Error::Setup(format!("`{id}` is not a valid run id"))),
            None => new_run_id(),
        };
        let loaded = self.load_agents(workflow).await?;
        let directory = self
            .inner
            .state_dir
            .join("tenants")
            .join(&workflow.tenant)
            .join("runs")
            .join(&run_id);
        let run_dir = RunDir::create(&directory).map_err(|source| Error::Io {
            path: directory.clone(),
            source,
        })?;
        let bus = Bus::new(run_id.clone());
        let blackboard = Arc::new(Blackboard::new(BlackboardLimits::default()));
        // `load_agents` keeps the workflow's order, so a task's agent index is the same here.
        let task_agents = workflow.tasks.iter().map(|t| t.agent).collect();
        let (agents, reports): (Vec<RunAgent>, Vec<AgentReport>) = loaded.into_iter().unzip();
        let agent_reports: BTreeMap<String, AgentReport> =
            agents.iter().map(|a| a.name.clone()).zip(reports).collect();
        let run_dir = Arc::new(run_dir);
        let context = Arc::new(RunContext {
            run_id: run_id.clone(),
            tenant: workflow.tenant.clone(),
            bus: Arc::clone(&bus),
            blackboard: Arc::clone(&blackboard),
            run_dir: Arc::clone(&run_dir),
            agents,
            task_agents,
            tools: Arc::clone(&self.inner.tools),
            emitter_limits: EmitterLimits::default(),
        });
        let executor = Arc::new(LocalExecutor {
            engine: Arc::clone(&self.inner.engine),
            run: context,
        });
        let max_concurrency = options.max_concurrency.unwrap_or(workflow.max_concurrency);
        bus.publish(EventKind::PlanCreated(plan(workflow, max_concurrency)));

        let cancel = CancellationToken::new();
        let workflow = workflow.clone();
        let (run_bus, run_cancel, run_dir_path) =
            (Arc::clone(&bus), cancel.clone(), directory.clone());
        let run_id_for_task = run_id.clone();
        let handle = tokio::spawn(async move {
            let started_at = Timestamp::now();
            let started = Instant::now();
            let outcomes: Vec<TaskOutcome> =
                scheduler::run(&workflow, max_concurrency, executor, &run_bus, &run_cancel).await;
            let _ = tokio::task::spawn_blocking(move || run_dir.remove_empty_dirs()).await;
            let report = aggregate::report(aggregate::Finished {
                workflow: &workflow,
                run_id: run_id_for_task,
                outcomes,
                cancelled: run_cancel.is_cancelled(),
                started_at,
                duration: started.elapsed(),
                agents: agent_reports,
                blackboard: blackboard.snapshot(),
                events: run_bus.len() + 1,
                directory: run_dir_path,
            });
            let count = |s: TaskStatus| report.counts.get(&s).copied().unwrap_or(0);
            run_bus.publish(EventKind::RunCompleted(RunCompleted {
                workflow: report.workflow.clone(),
                status: report.status,
                duration_ms: report.duration_ms,
                succeeded: count(TaskStatus::Succeeded),
                failed: report.tasks.len()
                    - count(TaskStatus::Succeeded)
                    - count(TaskStatus::Skipped)
                    - count(TaskStatus::Cancelled),
                skipped: count(TaskStatus::Skipped),
                cancelled: count(TaskStatus::Cancelled),
            }));
            run_bus.close();
            report
        });
        Ok(Run {
            id: run_id,
            directory,
            bus,
            cancel,
            handle,
        })
    }

    /// Describes a component: its WIT world, and whether (and as what) it is a sub-agent.
    pub async fn inspect(&self, component: impl AsRef<Path>) -> Result<ComponentInfo, Error> {
        let path = component.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let wit = world_wit(&bytes).map_err(|message| Error::Component {
            path: path.clone(),
            message,
        })?;
        let engine = Arc::clone(&self.inner.engine);
        let load_path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || engine.load(&load_path))
            .await
            .map_err(|e| Error::Internal(format!("loading a component: {e}")))?;
        let (digest, sub_agent) = match loaded {
            Ok((agent, _, _)) => {
                let info = self
                    .inner
                    .engine
                    .describe(&agent)
                    .await
                    .map(|i| AgentInfo {
                        name: i.name,
                        version: i.version,
                        description: i.description,
                        capabilities: i.capabilities,
                    })
                    .map_err(|e| format!("its `describe` failed: {e:#}"));
                (agent.digest.clone(), info)
            }
            Err(LoadError::Link(why)) => (
                String::new(),
                Err(format!("it imports what the host does not provide: {why}")),
            ),
            Err(LoadError::NotSubAgent(why)) => (String::new(), Err(why)),
            Err(LoadError::Compile(message)) => return Err(Error::Component { path, message }),
            Err(LoadError::Read(source)) => return Err(Error::Io { path, source }),
        };
        Ok(ComponentInfo {
            size: bytes.len() as u64,
            path,
            digest,
            wit,
            sub_agent,
        })
    }
}

fn world_wit(bytes: &[u8]) -> Result<String, String> {
    let decoded = wit_component::decode(bytes).map_err(|e| format!("not a component: {e:#}"))?;
    let mut printer = wit_component::WitPrinter::default();
    printer
        .print(decoded.resolve(), decoded.package(), &[])
        .map_err(|e| format!("cannot print its WIT: {e:#}"))?;
    Ok(printer.output.to_string())
}

fn load_problem(workflow: &Workflow, def: &crate::workflow::AgentDef, e: LoadError) -> Diagnostic {
    let name = &def.name;
    let file = def.component.display();
    match e {
        LoadError::Read(e) => workflow.component_error(def, format!("cannot read component `{file}` of agent `{name}`: {e}"), "check the path and its permissions"),
        LoadError::Compile(why) => workflow.component_error(def, format!("component `{file}` of agent `{name}` is not a valid component: {why}"), "point at a WebAssembly component built for wasm32-wasip2"),
        LoadError::Link(why) => workflow.component_error(def, format!("component `{file}` of agent `{name}` imports something the host does not provide: {why}"), "a sub-agent may import only wasm-orch:agent and WASI 0.2 interfaces"),
        LoadError::NotSubAgent(why) => workflow.component_error(def, format!("component `{file}` of agent `{name}` does not implement `wasm-orch:agent/sub-agent`: {why}"), "build it with wasm-orch-sdk (`wasm_orch_sdk::export!`) so that it exports `wasm-orch:agent/agent`"),
    }
}

fn plan(workflow: &Workflow, max_concurrency: usize) -> PlanCreated {
    PlanCreated {
        workflow: workflow.name.clone(),
        tenant: workflow.tenant.clone(),
        max_concurrency,
        tasks: workflow
            .tasks
            .iter()
            .map(|t| PlannedTask {
                node: t.id.clone(),
                agent: workflow.agents[t.agent].name.clone(),
                depends_on: t
                    .deps
                    .iter()
                    .map(|&d| workflow.tasks[d].id.clone())
                    .collect(),
                priority: t.priority,
                mutex: t.mutex.clone(),
                critical: t.critical,
                description: t.description.clone(),
            })
            .collect(),
    }
}

/// A time-ordered, unique enough run id: `20261122-101500-3fa9c1`.
fn new_run_id() -> String {
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

/// A run in progress.
#[derive(Debug)]
pub struct Run {
    id: String,
    directory: PathBuf,
    bus: Arc<Bus>,
    cancel: CancellationToken,
    handle: JoinHandle<RunReport>,
}

/// Cancels a run from anywhere (a signal handler, another task). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CancelHandle(CancellationToken);

impl CancelHandle {
    /// Cancels the run: nothing more starts, and running guests are stopped promptly (they end
    /// as `cancelled`).
    pub fn cancel(&self) {
        self.0.cancel();
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

    /// Cancels the run (see [`CancelHandle::cancel`]).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A handle that cancels this run.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.cancel.clone())
    }

    /// Waits for the run to end and returns its report.
    pub async fn wait(self) -> Result<RunReport, Error> {
        self.handle
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }
}
