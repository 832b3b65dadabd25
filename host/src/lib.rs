//! # wasm-orch
//!
//! Run workflows of sandboxed WebAssembly sub-agents: a DAG of tasks, each executed by a
//! component that speaks the `wasm-orch:agent/sub-agent` WIT world, in parallel, with fuel,
//! memory and time limits, live status events and one aggregated result.
//!
//! ```no_run
//! use wasm_orch::events::EventKind;
//! use wasm_orch::{RunOptions, Runtime, Workflow};
//!
//! # async fn demo() -> Result<(), wasm_orch::Error> {
//! let runtime = Runtime::builder().build()?;
//! let workflow = Workflow::from_file("examples/calc.toml")?;
//! let run = runtime.start(&workflow, RunOptions::new()).await?;
//!
//! // Events stream while guests run: state changes, progress, partial results, logs.
//! let mut events = run.events();
//! tokio::spawn(async move {
//!     while let Some(event) = events.next().await {
//!         if let EventKind::Progress(p) = &event.kind {
//!             println!("{} {:>3.0}% {}", p.task.node, p.fraction * 100.0, p.message);
//!         }
//!     }
//! });
//!
//! let report = run.wait().await?;
//! println!("{}: {:?}", report.status, report.output("product"));
//! # Ok(()) }
//! ```
//!
//! A task that fails (an error, a trap, out of fuel, too much memory, a timeout, an output too
//! large) is an outcome in the [`RunReport`](report::RunReport), never an `Err`: its dependents are skipped and
//! the rest of the workflow runs on.
//!
//! The crate's face: [`Runtime`] (built with [`Runtime::builder`]) runs [`Workflow`]s; each
//! [`Run`] streams [`events`] and ends with a [`report`]. An operator's [`policy`] governs
//! tenants; hosts add [`tools`] and choose where [`secrets`] come from. Dropping a [`Run`]
//! cancels it, unless it was [detached](Run::detach).
//!
//! The guest side is the `wasm-orch-sdk` crate; the `wasm-orch` binary is a thin CLI over
//! this library.

mod aggregate;
mod bus;
mod capabilities;
mod claims;
mod config;
mod engine;
mod error;
mod govern;
mod journal;
mod model;
pub mod policy;
mod redact;
#[cfg(feature = "nats")]
mod remote;
mod runtime;
mod scheduler;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "nats")]
pub mod statebus;
mod wit;
mod workflow;

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use crate::claims::ClaimError;
pub use crate::config::{Diagnostic, Diagnostics};
pub use crate::error::Error;
pub use crate::model::Name;
pub use crate::model::status::{ErrorKind, RunStatus, TaskError, TaskStatus};
pub use crate::runtime::{
    AgentInfo, CancelHandle, ComponentInfo, Run, RunOptions, Runtime, RuntimeBuilder,
};
pub use crate::workflow::{GraphFormat, Workflow};

/// What happens in a run, as it happens: the typed events of [`Run::events`].
pub mod events {
    pub use crate::bus::EventStream;
    pub use crate::model::events::{
        Artifact, AuditRecord, AuditResource, CredentialAction, CredentialEvent, Decision,
        DispatchChanged, Event, EventKind, LastProgress, LogLevel, LogStream, LoopIteration,
        PlanCreated, PlannedTask, RunCompleted, RunPaused, RunResumed, TaskBlocked, TaskGrants,
        TaskHandoff, TaskLog, TaskPartial, TaskProgress, TaskRef, TaskStatusUpdated,
    };
    pub use crate::model::text::inert;
    pub use crate::model::time::Timestamp;
    pub use crate::runtime::EventFeed;
}

/// What a run produced: the results document and what the run measured.
pub mod report {
    pub use crate::model::report::{
        AgentReport, AgentScore, AgentUsage, AttemptReport, CacheSource, DiagnosisReport, FuelUse,
        Lag, Parallelism, RunMetrics, RunReport, TaskReport,
    };
}

/// The journal's view of runs: listing, filtering, retention, durability.
pub mod runs {
    pub use crate::journal::{Durability, Pruned, RunFilter, RunState, RunSummary};
}

/// Attempts on other machines: a coordinator's pool of `wasm-orch worker`s on NATS
/// JetStream, and the worker itself.
#[cfg(feature = "nats")]
pub mod workers {
    pub use crate::remote::pool::PoolCounts;
    pub use crate::remote::worker::WorkerSummary;
    pub use crate::remote::{
        LeaseState, Leased, NatsError, PoolOptions, WorkerOptions, WorkerPool, WorkerStatus,
        run_worker,
    };
}

/// Tools the host offers guests, and how a host adds its own.
pub mod tools {
    pub use crate::capabilities::tools::{Tool, ToolCall, ToolError, ToolFuture};
}

/// Where guests' secrets come from, and the run's credential they are read under.
pub mod secrets {
    pub use crate::capabilities::secrets::{
        Credential, EnvSecrets, FileSecrets, SecretBackend, SecretFuture,
    };
}
