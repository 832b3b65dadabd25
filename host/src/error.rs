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
    /// The workflow has problems (each with its file, line and fix); nothing ran.
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
    /// The runtime could not be set up (engine, directories, ...).
    #[error("the runtime could not be set up: {0}")]
    Setup(String),
    /// The run's background task ended abnormally (a bug in wasm-orch).
    #[error("the run ended abnormally: {0}")]
    Internal(String),
}
