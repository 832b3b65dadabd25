//! The library's error type: the cases a caller branches on.
//!
//! A failing *task* is never an `Err`: it is an outcome in the run's report. These errors mean
//! the run could not start (or a file could not be read or written).

use std::path::PathBuf;

use crate::config::Diagnostics;

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The workflow (or policy, or registry) has problems, each with its file, line and fix;
    /// nothing ran.
    #[error("{0}")]
    InvalidWorkflow(Diagnostics),
    /// A file could not be read or written.
    #[error("cannot access `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A component could not be loaded, or does not implement `wasm-orch:agent/sub-agent`.
    #[error("component `{}`: {message}", path.display())]
    Component { path: PathBuf, message: String },
    /// The workflow belongs to another tenant than the one the run was bound to
    /// ([`RunOptions::tenant`](crate::RunOptions::tenant)); nothing ran.
    #[error(
        "{}: workflow `{workflow}` belongs to tenant `{owner}`, not to `{tenant}`: run it as its \
         own tenant, or set `tenant = \"{tenant}\"` in its [workflow]",
        path.display()
    )]
    WrongTenant {
        path: PathBuf,
        workflow: String,
        /// The tenant the workflow names.
        owner: String,
        /// The tenant the run was bound to.
        tenant: String,
    },
    /// A run id given in [`RunOptions::run_id`](crate::RunOptions::run_id) is not a name
    /// (letters, digits, `_`, `-`, `.`).
    #[error("`{0}` is not a valid run id: use letters, digits, `_`, `-` and `.`")]
    InvalidRunId(String),
    /// A tenant name that is not a name (letters, digits, `_`, `-`, `.`).
    #[error("`{0}` is not a valid tenant name: use letters, digits, `_`, `-` and `.`")]
    InvalidTenant(String),
    /// A run with this id is running already in this runtime.
    #[error("a run with id `{0}` is running already: give this one another id")]
    RunIdInUse(String),
    /// The engine could not be built or its host imports linked (the machine, not the input).
    #[error("the WebAssembly engine could not be set up: {0}")]
    Engine(String),
    /// The journal (`<state dir>/journal.db`) cannot be used: damaged, written by a newer
    /// wasm-orch, missing a record a run needs; the message says what to do.
    #[error("journal `{}`: {message}", path.display())]
    Journal { path: PathBuf, message: String },
    /// No run with this id is in the journal (or the caller's tenant has none).
    #[error("no run `{0}`: see `wasm-orch runs`")]
    UnknownRun(String),
    /// The run cannot be resumed: it is still running elsewhere, or it has nothing left to do.
    #[error("run `{run}` cannot be resumed: {why}")]
    NotResumable { run: String, why: String },
    /// The run's background task ended abnormally (a bug in wasm-orch).
    #[error("the run ended abnormally: {0}")]
    Internal(String),
}
