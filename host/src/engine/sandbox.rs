//! The WASI sandbox of one task: its own working directory, what it is given to read, and
//! nothing else.
//!
//! - its directories, from the files capability: its working directory read-write as `.`, its
//!   inputs and upstream directories read-only (wasmtime-wasi resolves every guest path inside
//!   one of these, so `..`, absolute paths and symlinks cannot leave them, and each refusal is
//!   audited);
//! - no network (TCP, UDP and name lookup off, every address refused);
//! - no host environment variables and no arguments;
//! - stdin empty; stdout and stderr turned into log events (the status capability).

use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::bus::SharedEmitter;
use crate::capabilities::files::TaskFiles;
use crate::capabilities::status::LogPipe;
use crate::model::events::LogStream;

/// Builds the WASI context of a task.
pub(crate) fn wasi_ctx(files: &TaskFiles, events: &SharedEmitter) -> wasmtime::Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(LogPipe::new(events.clone(), LogStream::Stdout))
        .stderr(LogPipe::new(events.clone(), LogStream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    files.preopen(&mut builder)?;
    Ok(builder.build())
}
