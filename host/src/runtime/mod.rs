//! The runtime: the public entry point that ties workflow, engine, governance, scheduler, bus
//! and results together. One `Runtime` per process; it runs any number of workflows, side by
//! side, sharing its engine, compile cache, instance pool, tenants and learned agent scores.

mod memo;
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::run::blocking;
pub use self::run::{CancelHandle, EventFeed, Run};
use crate::capabilities::secrets::{Backend, EnvSecrets, SecretBackend};
use crate::capabilities::tools::{Tool, ToolRegistry};
use crate::claims::{ClaimError, Claims};
use crate::engine::{Engine, EngineConfig, LoadError, LoadedAgent, read_component};
use crate::error::Error;
use crate::govern::Governor;
use crate::journal::{Durability, Journal};
use crate::model::report::AgentReport;
use crate::model::report::RunReport;
use crate::model::time::millis;
use crate::policy::Policy;
use crate::workflow::{AgentDef, Diagnostic, Diagnostics, Workflow};

/// Builds a [`Runtime`]. Every setting has a default.
#[derive(Debug)]
pub struct RuntimeBuilder {
    cache_dir: Option<Option<PathBuf>>,
    state_dir: Option<PathBuf>,
    pooling: bool,
    max_instances: u32,
    /// Tools the host adds to the built-in ones.
    tools: ToolRegistry,
    policy: Policy,
    keep_resident: usize,
    secrets: Backend,
    durability: Durability,
    journal_runs: bool,
    #[cfg(feature = "nats")]
    workers: Option<crate::remote::WorkerPool>,
}

impl RuntimeBuilder {
    /// Runs attempts on a pool of `wasm-orch worker`s where they can run there (see
    /// [`workers`](crate::workers)); the rest, and every attempt while no worker can be
    /// reached, run here.
    #[cfg(feature = "nats")]
    pub fn workers(mut self, pool: crate::remote::WorkerPool) -> Self {
        self.workers = Some(pool);
        self
    }

    /// How durable the journal (`<state dir>/journal.db`) is: [`Durability::Async`] (the
    /// default) survives a killed process, [`Durability::Sync`] a power failure.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Keeps runs in memory only: they are not journaled, so they cannot be listed, shown or
    /// resumed afterwards (the `kv` tool's stores are still kept in the journal's database).
    /// Default: every run is journaled.
    pub fn without_journal(mut self) -> Self {
        self.journal_runs = false;
        self
    }

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

    /// With the pooling allocator: how much of each instance's memory stays resident when the
    /// instance ends, to be reset with `memset` rather than returned to the kernel. Resetting
    /// through the kernel changes page tables, which interrupts every core (a TLB
    /// shootdown); for guests whose memory fits, keeping it resident makes short tasks about
    /// twice as fast. It costs up to this much resident memory per warm pool slot.
    /// Default: 2 MiB (a small Rust guest starts with about 1.1 MiB).
    pub fn memory_keep_resident(mut self, bytes: usize) -> Self {
        self.keep_resident = bytes;
        self
    }

    /// How many guest instances may exist at once across all runs (the pool's size).
    /// Default: 1000.
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n.max(1);
        self
    }

    /// Offers a tool to guests, under `name` (agents still need a grant: `tools = [...]`,
    /// and their tenant's policy must allow it). Built in: `sleep`, `kv` and `http_get`; a
    /// tool given here under one of those names replaces it.
    pub fn tool(mut self, name: impl Into<String>, tool: impl Tool) -> Self {
        self.tools.insert(name.into(), Arc::new(tool));
        self
    }

    /// Where guests' secrets come from. Default: environment variables
    /// ([`EnvSecrets`]: tenant `acme`'s `api-token` is `$WASM_ORCH_SECRET_ACME__API_TOKEN`).
    pub fn secrets(mut self, backend: impl SecretBackend) -> Self {
        self.secrets = Backend(Arc::new(backend));
        self
    }

    /// The operator's policy: defaults for every workflow (retries, blocked tasks, error
    /// budgets) and each tenant's fuel rate, concurrency and budget. Default: no limits,
    /// no retries.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
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
            keep_resident: self.keep_resident,
        })?;
        let http_allow = self
            .policy
            .access
            .iter()
            .map(|(tenant, access)| (tenant.clone(), access.http_allow.clone()))
            .chain(
                self.policy
                    .fallback
                    .iter()
                    .map(|(_, access)| ("*".to_owned(), access.http_allow.clone())),
            )
            .collect();
        let journal = Journal::open(&state_dir, self.durability)?;
        let mut tools = ToolRegistry::with_builtins(Arc::clone(&journal), http_allow);
        tools.extend(self.tools);
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                tools: Arc::new(tools),
                governor: Governor::new(self.policy.tenants.clone(), self.policy.fallback_limits()),
                policy: self.policy,
                state_dir,
                secrets: self.secrets,
                claims: Arc::default(),
                journal,
                journal_runs: self.journal_runs,
                #[cfg(feature = "nats")]
                workers: self.workers,
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
/// its compile cache and instance pool, the tenants' fuel buckets and budgets, and what the
/// runtime has learned about agents.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Arc<Engine>,
    tools: Arc<ToolRegistry>,
    governor: Governor,
    policy: Policy,
    state_dir: PathBuf,
    secrets: Backend,
    /// Idempotency keys claimed, per live run.
    claims: Arc<Claims>,
    journal: Arc<Journal>,
    /// Whether runs are journaled (see [`RuntimeBuilder::without_journal`]).
    journal_runs: bool,
    #[cfg(feature = "nats")]
    workers: Option<crate::remote::WorkerPool>,
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    max_concurrency: Option<usize>,
    run_id: Option<String>,
    tenant: Option<String>,
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

    /// Runs only for this tenant: a workflow file names its own tenant, so a service that
    /// has authenticated its caller passes the caller's tenant here, and [`Runtime::start`]
    /// refuses a workflow that belongs to any other (nothing runs).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
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
    /// The version of the contract it exports (`wasm-orch:agent@0.3.0`), if it exports one.
    pub contract: Option<String>,
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

/// An agent of a workflow, loaded.
pub(crate) struct Loaded {
    pub(crate) loaded: Arc<LoadedAgent>,
    pub(crate) report: AgentReport,
}

impl Runtime {
    /// The pool of workers this runtime hands attempts to, if any.
    #[cfg(feature = "nats")]
    pub fn workers(&self) -> Option<&crate::remote::WorkerPool> {
        self.inner.workers.as_ref()
    }

    /// A builder with every setting at its default.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            cache_dir: None,
            state_dir: None,
            pooling: true,
            max_instances: 1000,
            tools: ToolRegistry::empty(),
            policy: Policy::default(),
            keep_resident: 2 << 20,
            secrets: Backend(Arc::new(EnvSecrets::default())),
            durability: Durability::default(),
            journal_runs: true,
            #[cfg(feature = "nats")]
            workers: None,
        }
    }

    /// A fresh, time-ordered run id: what a run gets when its [`RunOptions`] name none. For a
    /// caller that must record the id before the run starts ([`RunOptions::run_id`]).
    pub fn new_run_id() -> String {
        run::new_run_id()
    }

    /// Whether instances come from the pooling allocator.
    pub fn uses_pooling(&self) -> bool {
        self.inner.engine.pooling()
    }

    /// Loads every component of `workflow` (compiling those not cached) and checks that each
    /// implements `wasm-orch:agent/sub-agent`, that every granted tool exists, and that the
    /// policy suits the workflow. Problems point at the lines of the files involved.
    pub async fn check(&self, workflow: &Workflow) -> Result<BTreeMap<String, AgentReport>, Error> {
        run::diagnostic_agents(workflow, &self.inner.policy)?;
        Ok(workflow
            .agents
            .iter()
            .zip(self.load_agents(workflow).await?)
            .map(|(def, loaded)| (def.name.clone(), loaded.report))
            .collect())
    }

    /// Loads the components of `workflow`'s agents, in its order.
    async fn load_agents(&self, workflow: &Workflow) -> Result<Vec<Loaded>, Error> {
        let mut problems = Vec::new();
        let mut agents = Vec::new();
        for def in &workflow.agents {
            for (tool, span) in &def.tools {
                if self.inner.tools.get(tool).is_none() {
                    let known: Vec<&str> = self.inner.tools.names().collect();
                    problems.push(Workflow::tool_error(
                        def,
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
                    agents.push(Loaded { loaded, report });
                }
                Err(e) => problems.push(load_problem(def, e)),
            }
        }
        if problems.is_empty() {
            Ok(agents)
        } else {
            Err(Error::InvalidWorkflow(Diagnostics(problems)))
        }
    }

    /// Describes a component: its WIT world, and whether (and as what) it is a sub-agent.
    pub async fn inspect(&self, component: impl AsRef<Path>) -> Result<ComponentInfo, Error> {
        let path = component.as_ref().to_path_buf();
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || read_component(&path)
        })
        .await
        .map_err(|e| Error::Internal(format!("reading a component: {e}")))?;
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(LoadError::Read(source)) => return Err(Error::Io { path, source }),
            Err(
                LoadError::Compile(message)
                | LoadError::Link(message)
                | LoadError::NotSubAgent(message),
            ) => {
                return Err(Error::Component { path, message });
            }
        };
        let (wit, mut contract) = world_wit(&bytes).map_err(|message| Error::Component {
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
                // The version the host serves it as (it checked the exports' types).
                contract = Some(agent.pre.contract().to_string());
                let info = self
                    .inner
                    .engine
                    .describe(&agent)
                    .await
                    .map(|i| {
                        // The component's own words: bounded before they go anywhere.
                        let cut = |s: String, max: usize| {
                            crate::model::text::truncate(&s, max).to_owned()
                        };
                        AgentInfo {
                            name: cut(i.name, 256),
                            version: cut(i.version, 256),
                            description: cut(i.description, 4096),
                            capabilities: i
                                .capabilities
                                .into_iter()
                                .take(64)
                                .map(|c| cut(c, 256))
                                .collect(),
                        }
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
            contract,
            sub_agent,
        })
    }

    /// Claims the attempt with idempotency key `key` (`<run>/<node>/<attempt>`, as in its
    /// `running` event) for `tenant`. The runtime's own executor claims every attempt before
    /// it runs it, so this is for hosts that hand attempts to workers of their own, or that
    /// may deliver one twice: only the first claim of a key succeeds. A repeat is refused and
    /// counted (the run's `repeat_total`); a claim by another tenant than the run's is
    /// refused. Each refusal is an audit event of the run. An attempt's key is announced when
    /// it is dispatched (its `running` event) and claimed by the runtime's executor as it
    /// starts (before its `agent.task.grants` event): a key claimed here first is not run by
    /// the runtime (the attempt ends `failed`, kind `claimed`).
    pub fn claim(&self, tenant: &str, key: &str) -> Result<(), ClaimError> {
        let mut parts = key.split('/');
        let (_, node, attempt) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let claimant = crate::model::events::TaskRef {
            node: node.into(),
            branch: "".into(),
            agent: "host".into(),
            attempt: attempt.and_then(|a| a.parse().ok()).unwrap_or(0),
        };
        self.inner.claims.claim(tenant, key, &claimant)
    }

    /// The journaled runs, newest first (see [`RunFilter`](crate::runs::RunFilter)).
    pub async fn runs(
        &self,
        filter: crate::runs::RunFilter,
    ) -> Result<Vec<crate::runs::RunSummary>, Error> {
        self.read_journal(move |journal| journal.runs(&filter))
            .await
    }

    /// A journaled run.
    pub async fn run_summary(
        &self,
        run_id: &str,
    ) -> Result<Option<crate::runs::RunSummary>, Error> {
        let id = run_id.to_owned();
        self.read_journal(move |journal| journal.run(&id)).await
    }

    /// The results document of an ended run, from the journal (`None`: it has not ended).
    pub async fn run_report(&self, run_id: &str) -> Result<Option<RunReport>, Error> {
        let id = run_id.to_owned();
        let bytes = self
            .read_journal(move |journal| journal.report(&id))
            .await?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| {
                    self.inner.journal.error(format!(
                        "the results of run `{run_id}` do not read back ({e})"
                    ))
                })
            })
            .transpose()
    }

    /// A journaled run's events with sequence numbers from `from` on, `limit` at most.
    pub async fn run_events(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Arc<crate::events::Event>>, Error> {
        let id = run_id.to_owned();
        self.read_journal(move |journal| journal.events(&id, from, limit))
            .await
    }

    /// Reads the journal on a blocking thread, once what this runtime sent it before the call
    /// is committed: a run's last records reach the writer without the run waiting for them.
    pub(super) async fn read_journal<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Journal) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let journal = Arc::clone(&self.inner.journal);
        blocking(move || {
            journal.flush();
            read(&journal)
        })
        .await
    }

    /// Deletes the runs that ended more than `older_than` ago (their events, blackboards,
    /// working directories, and the outputs nothing else references); the journal shrinks.
    pub async fn prune(&self, older_than: Duration) -> Result<crate::runs::Pruned, Error> {
        let journal = Arc::clone(&self.inner.journal);
        let (pruned, dirs) = blocking(move || journal.prune(older_than)).await?;
        for dir in dirs {
            // Only directories under the state directory are the journal's to remove.
            let climbs = dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
            if dir.starts_with(&self.inner.state_dir) && !climbs {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }
        }
        Ok(pruned)
    }

    /// Where runs keep their files and the journal (see [`RuntimeBuilder::state_dir`]).
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The operator's policy this runtime was built with.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// How long the policy keeps ended runs (`[defaults] retention`), if it says.
    pub fn retention(&self) -> Option<Duration> {
        self.inner.policy.defaults.retention
    }

    /// Everything tenant `tenant` has burned in this runtime so far.
    pub fn tenant_fuel_used(&self, tenant: &str) -> u64 {
        self.inner.governor.tenant(tenant).account.fuel_used()
    }
}

/// The component's world in WIT, and the version of the `wasm-orch:agent` package whose
/// `agent` interface it exports.
fn world_wit(bytes: &[u8]) -> Result<(String, Option<String>), String> {
    let decoded = wit_component::decode(bytes).map_err(|e| format!("not a component: {e:#}"))?;
    let mut printer = wit_component::WitPrinter::default();
    printer
        .print(decoded.resolve(), decoded.package(), &[])
        .map_err(|e| format!("cannot print its WIT: {e:#}"))?;
    let contract = match &decoded {
        wit_component::DecodedWasm::Component(resolve, world) => {
            resolve.worlds[*world].exports.keys().find_map(|key| {
                let wit_parser::WorldKey::Interface(id) = key else {
                    return None;
                };
                let iface = &resolve.interfaces[*id];
                let package = &resolve.packages[iface.package?].name;
                (package.namespace == "wasm-orch"
                    && package.name == "agent"
                    && iface.name.as_deref() == Some("agent"))
                .then(|| package.to_string())
            })
        }
        wit_component::DecodedWasm::WitPackage(..) => None,
    };
    Ok((printer.output.to_string(), contract))
}

fn load_problem(def: &AgentDef, e: LoadError) -> Diagnostic {
    let name = &def.name;
    let file = def.component.display();
    let (message, help) = match e {
        LoadError::Read(e) => (
            format!("cannot read component `{file}` of agent `{name}`: {e}"),
            "check the path and its permissions",
        ),
        LoadError::Compile(why) => (
            format!("component `{file}` of agent `{name}` is not a valid component: {why}"),
            "point at a WebAssembly component built for wasm32-wasip2",
        ),
        LoadError::Link(why) => (
            format!(
                "component `{file}` of agent `{name}` imports something the host does not provide: {why}"
            ),
            "a sub-agent may import only wasm-orch:agent and WASI 0.2 interfaces",
        ),
        LoadError::NotSubAgent(why) => (
            format!(
                "component `{file}` of agent `{name}` does not implement `wasm-orch:agent/sub-agent`: {why}"
            ),
            "build it with wasm-orch-sdk (`wasm_orch_sdk::export!`) so that it exports `wasm-orch:agent/agent`",
        ),
    };
    Workflow::component_error(def, message, help)
}
