//! Live status: progress, partial results and logs, streamed by the host as events while the
//! task runs.
//!
//! These calls are cheap and never fail. The host bounds them: rapid progress updates are
//! coalesced, and logs and partial results beyond the task's budget are dropped (and counted).

use serde::Serialize;

use crate::host;
pub use crate::wit::wasm_orch::agent::types::Level;

/// Report progress: `fraction` between 0.0 and 1.0, with a short message.
pub fn progress(fraction: f32, message: impl AsRef<str>) {
    host::progress(fraction, message.as_ref());
}

/// Publish a partial result before the task finishes.
///
/// A value that cannot be serialized is reported as a warning log instead.
pub fn partial<T: Serialize + ?Sized>(data: &T) {
    match serde_json::to_string(data) {
        Ok(json) => host::partial(&json),
        Err(e) => warn(format!("partial result not sent: {e}")),
    }
}

/// Write a log line at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    host::log(level, message.as_ref());
}

/// Write a `debug` log line.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Write an `info` log line.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Write a `warn` log line.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Write an `error` log line.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}
