//! The `wasm-orch` command line: argument parsing and one module per command.
//!
//! Only this module prints. Exit codes: 0 every task succeeded, 1 a task failed, 2 usage or
//! invalid input (nothing ran), 130 cancelled.

mod format;
mod graph;
mod inspect;
mod new;
mod run;
mod runs;
#[cfg(feature = "serve")]
mod serve;
mod summary;
mod telemetry;
mod validate;
mod view;
#[cfg(feature = "nats")]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::policy::Policy;
use crate::{Error, Runtime, RuntimeBuilder};

/// Run workflows of sandboxed WebAssembly sub-agents.
#[derive(Debug, Parser)]
#[command(name = "wasm-orch", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// More diagnostics from the host on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: live view on a terminal, plain lines in a pipe, a summary at the end.
    Run(RunArgs),
    /// Check a workflow without running it (components are compiled and checked too).
    Validate(ValidateArgs),
    /// Print a workflow's task graph.
    Graph(GraphArgs),
    /// Show a component's WIT world and whether it implements `sub-agent`.
    Inspect(InspectArgs),
    /// Resume a run from the journal: a killed run goes on; tasks that succeeded do not run
    /// again.
    Resume(ResumeArgs),
    /// List the journaled runs (newest first); `runs show ID`, `runs prune --older-than 7d`.
    Runs(RunsArgs),
    /// Start a new agent project: the agent with its tests, its build file, a workflow.
    New(NewArgs),
    /// Serve the HTTP API, live event streams, Prometheus metrics and the dashboard.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
    /// API tokens for `serve`: `token new --tenant NAME --policy FILE`.
    #[cfg(feature = "serve")]
    Token(TokenArgs),
    /// Take attempts from a pool's queue on NATS JetStream and run them here, sandboxed as
    /// `run` would.
    #[cfg(feature = "nats")]
    Worker(WorkerArgs),
    /// List a pool's live workers (slots, load, tenants, last heartbeat).
    #[cfg(feature = "nats")]
    Workers(WorkersArgs),
}

/// Where `run` and `serve` send attempts: a pool of workers.
#[cfg(feature = "nats")]
#[derive(Debug, clap::Args)]
struct PoolArgs {
    /// Run attempts on this pool's workers (`wasm-orch worker --pool NAME`), through --nats.
    /// Attempts that need the blackboard, tools, secrets or input files run here.
    #[arg(long, value_name = "NAME")]
    pool: Option<String>,

    /// How long a worker may go silent on an attempt before it goes to another (for a pool
    /// whose queue does not exist yet).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    ack_wait: String,

    /// How often an attempt is delivered before it ends `worker-lost`.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_deliver: i64,

    /// Attempts run here at once while no worker can be reached.
    #[arg(long, value_name = "N", default_value_t = 2)]
    degraded_concurrency: usize,
}

#[cfg(feature = "nats")]
#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// The NATS server.
    #[arg(
        long,
        value_name = "nats://[USER:PASSWORD@]HOST:PORT",
        env = "WASM_ORCH_NATS"
    )]
    nats: String,

    /// Attempts run at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    slots: u32,

    /// The pool whose attempts it takes.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pool: String,

    /// Its id in heartbeats and `wasm-orch workers`. [default: host name and process id]
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// Where compiled components and scratch directories are kept.
    #[arg(long, value_name = "DIR", default_value = ".wasm-orch/worker")]
    state_dir: Option<PathBuf>,

    /// The pool's ack wait, if this worker creates its queue.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    ack_wait: String,

    /// The pool's max deliveries, if this worker creates its queue.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_deliver: i64,

    /// After SIGTERM: how long running attempts may go on; those that do not end are handed
    /// back to the queue.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    grace: String,

    /// The coordinator's HTTP API (`wasm-orch serve`): while NATS cannot be reached, the
    /// worker leases the coordinator's attempts there.
    #[arg(long, value_name = "http://HOST:PORT", requires = "token_file")]
    coordinator: Option<String>,

    /// A file holding a worker's token for `--coordinator` (`wasm-orch token new --worker`).
    #[arg(
        long,
        value_name = "FILE",
        env = "WASM_ORCH_WORKER_TOKEN_FILE",
        requires = "coordinator"
    )]
    token_file: Option<PathBuf>,
}

#[cfg(feature = "nats")]
#[derive(Debug, clap::Args)]
struct WorkersArgs {
    /// The NATS server.
    #[arg(
        long,
        value_name = "nats://[USER:PASSWORD@]HOST:PORT",
        env = "WASM_ORCH_NATS"
    )]
    nats: String,

    /// The pool.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pool: String,

    /// How long to listen for heartbeats (workers answer this command's ping at once, and
    /// send one a second anyway).
    #[arg(long, value_name = "DURATION", default_value = "1500ms")]
    listen: String,

    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "serve")]
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Where to listen (port 0: any free port; the address is printed on stdout's first line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,

    /// Registered DAGs' relative paths (components, inputs) resolve against this directory,
    /// as if each DAG were a file `<dag id>.toml` in it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    workflows_dir: PathBuf,

    /// Registered DAGs' components must be files in this directory. [default: the workflows
    /// directory]
    #[arg(long, value_name = "DIR")]
    components_dir: Option<PathBuf>,

    /// After SIGTERM: how long running attempts may go on (no new one starts) before the
    /// server stops; runs are left resumable, and resumed when it starts again.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    grace: String,

    /// The largest request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body: usize,

    /// Publish every run's events on NATS, on `wasm-orch.events.<tenant>.<run>` (the state
    /// bus).
    #[cfg(feature = "nats")]
    #[arg(
        long,
        value_name = "nats://[USER:PASSWORD@]HOST:PORT",
        env = "WASM_ORCH_NATS"
    )]
    nats: Option<String>,

    #[cfg(feature = "nats")]
    #[command(flatten)]
    pool: PoolArgs,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[cfg(feature = "serve")]
#[derive(Debug, clap::Args)]
struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

#[cfg(feature = "serve")]
#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Make a new API token for a tenant (or a worker): printed on the first line, its hash
    /// added to the policy file (or, without `--policy`, the lines to add printed).
    New {
        /// The tenant the token acts for.
        #[arg(long, value_name = "NAME", required_unless_present = "worker")]
        tenant: Option<String>,
        /// A worker's token instead: it leases attempts over HTTP (`worker --coordinator`)
        /// and reaches nothing else.
        #[arg(long, conflicts_with = "tenant")]
        worker: bool,
        /// With `--worker`: the one pool it may lease from (default: any).
        #[arg(long, value_name = "NAME", requires = "worker")]
        pool: Option<String>,
        /// The policy file to add the token's hash to.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// A label for people: who holds it, what for.
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The agent's name (lowercase letters, digits, `-`, `_`): the crate and the directory.
    name: String,

    /// The agent's language.
    #[arg(long, value_name = "LANG", default_value = "rust")]
    lang: String,

    /// Where to create it [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// The wasm-orch-sdk crate to depend on, by path [default: the SDK of this CLI's
    /// checkout, if there is one, else version 0.1 from the registry].
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The run's id (see `wasm-orch runs`).
    run_id: String,

    /// Also write the results JSON here (`-`: stdout).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Also write the events from here on as JSON lines (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// Resume only a run of this tenant.
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,

    /// Print plain lines even on a terminal.
    #[arg(long)]
    plain: bool,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, clap::Args)]
struct RunsArgs {
    #[command(subcommand)]
    action: Option<RunsAction>,

    /// Only runs of this tenant.
    #[arg(long, value_name = "NAME", global = true)]
    tenant: Option<String>,

    /// Only runs in this state: running, interrupted, succeeded, failed, cancelled.
    #[arg(long, value_name = "STATE")]
    status: Option<String>,

    /// At most this many (default 50).
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,

    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Subcommand)]
enum RunsAction {
    /// One run's results table (from the journal alone).
    Show {
        /// The run's id.
        run_id: String,
    },
    /// Delete runs that ended before a cut-off, with their files and unreferenced outputs.
    Prune {
        /// How old, e.g. `7d`, `12h` [default: the policy's `retention`, else 30d].
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
    },
}

/// Where the runtime keeps things.
#[derive(Debug, clap::Args)]
struct RuntimeArgs {
    /// Directory for run files (tasks' working directories). [default: $WASM_ORCH_STATE_DIR or .wasm-orch]
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,

    /// Directory for compiled components. [default: $WASM_ORCH_CACHE_DIR or ~/.cache/wasm-orch]
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,

    /// Do not cache compiled components on disk.
    #[arg(long, conflicts_with = "cache_dir", global = true)]
    no_cache: bool,

    /// The operator's policy file: defaults (retries, blocked tasks, error budgets) and
    /// tenants' fuel rates, concurrency and budgets. [default: $WASM_ORCH_POLICY, if set]
    #[arg(long, value_name = "FILE", global = true)]
    policy: Option<PathBuf>,
    /// Read guests' secrets from files in DIR (`DIR/<tenant>/<name>`) instead of environment
    /// variables (`$WASM_ORCH_SECRET_<TENANT>__<NAME>`). [default: $WASM_ORCH_SECRETS_DIR, if set]
    #[arg(long, value_name = "DIR", global = true)]
    secrets_dir: Option<PathBuf>,
    /// How durable the journal is: `async` survives a killed process, `sync` a power failure
    /// too (each task's outcome is on disk before the run goes on). [default: async]
    #[arg(long, value_name = "MODE", global = true, env = "WASM_ORCH_DURABILITY")]
    durability: Option<DurabilityArg>,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DurabilityArg {
    Async,
    Sync,
}

impl RuntimeArgs {
    fn build(&self) -> Result<Runtime, Error> {
        self.builder()?.build()
    }

    fn builder(&self) -> Result<RuntimeBuilder, Error> {
        let mut builder: RuntimeBuilder = Runtime::builder();
        if let Some(dir) = &self.state_dir {
            builder = builder.state_dir(dir);
        }
        if let Some(dir) = &self.cache_dir {
            builder = builder.cache_dir(dir);
        }
        if self.no_cache {
            builder = builder.without_disk_cache();
        }
        builder = builder.durability(match self.durability {
            Some(DurabilityArg::Sync) => crate::runs::Durability::Sync,
            Some(DurabilityArg::Async) | None => crate::runs::Durability::Async,
        });
        let policy = self
            .policy
            .clone()
            .or_else(|| std::env::var_os("WASM_ORCH_POLICY").map(PathBuf::from));
        if let Some(path) = policy {
            builder = builder.policy(Policy::from_file(path)?);
        }
        let secrets = self
            .secrets_dir
            .clone()
            .or_else(|| std::env::var_os("WASM_ORCH_SECRETS_DIR").map(PathBuf::from));
        if let Some(dir) = secrets {
            builder = builder.secrets(crate::secrets::FileSecrets::new(dir));
        }
        Ok(builder)
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The workflow file (TOML).
    file: PathBuf,

    /// Also write the results JSON here (`-`: stdout). It is always written to the run's
    /// directory.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Also write every event as JSON lines here (`-`: stdout). They are always written to the
    /// run's directory.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// Set a workflow parameter (declared in its [params]); repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,

    /// Override the workflow's max_concurrency.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: Option<u32>,

    /// Run only if the workflow belongs to this tenant (for wrappers that run files on a
    /// tenant's behalf: a file names its own tenant).
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,

    /// Print plain lines even on a terminal.
    #[arg(long)]
    plain: bool,

    /// The run's id (letters, digits, `_`, `-`, `.`) [default: a new, time-ordered one].
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,

    /// Publish every event on NATS, on `wasm-orch.events.<tenant>.<run>` (the state bus).
    #[cfg(feature = "nats")]
    #[arg(
        long,
        value_name = "nats://[USER:PASSWORD@]HOST:PORT",
        env = "WASM_ORCH_NATS"
    )]
    nats: Option<String>,

    #[cfg(feature = "nats")]
    #[command(flatten)]
    pool: PoolArgs,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// The workflow file (TOML).
    file: PathBuf,

    /// Set a workflow parameter (declared in its [params]); repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, clap::Args)]
struct GraphArgs {
    /// The workflow file (TOML).
    file: PathBuf,

    /// Graph syntax.
    #[arg(long, short, value_enum, default_value = "dot")]
    format: Format,

    /// Set a workflow parameter (declared in its [params]); repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// The component file (.wasm).
    component: PathBuf,

    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Exit code: every task succeeded.
const SUCCESS: u8 = 0;
/// Exit code: a task failed.
const TASK_FAILED: u8 = 1;
/// Exit code: usage or invalid input; nothing ran.
const INVALID: u8 = 2;
/// Exit code: cancelled (Ctrl-C).
const CANCELLED: u8 = 130;

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Dropped after the async runtime, so that exported spans are flushed on every exit.
    let telemetry = telemetry::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wasm-orch")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(INVALID);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args, cli.verbose > 0).await,
            Command::Validate(args) => validate::validate(args).await,
            Command::Graph(args) => graph::graph(args),
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Resume(args) => runs::resume(args, cli.verbose > 0).await,
            Command::Runs(args) => runs::runs(args).await,
            Command::New(args) => new::new(args),
            #[cfg(feature = "serve")]
            Command::Serve(args) => serve::run(args).await,
            #[cfg(feature = "serve")]
            Command::Token(args) => serve::token(args),
            #[cfg(feature = "nats")]
            Command::Worker(args) => worker::worker(args).await,
            #[cfg(feature = "nats")]
            Command::Workers(args) => worker::workers(args).await,
        }
    });
    drop(runtime);
    drop(telemetry);
    ExitCode::from(code)
}

/// Prints an error with its causes; returns the exit code for it (nothing ran).
fn report_error(error: &Error) -> u8 {
    match error {
        Error::InvalidWorkflow(diagnostics) => eprintln!("{diagnostics}"),
        other => {
            eprintln!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
        }
    }
    INVALID
}
