//! Host side of `wasm-orch:agent/status`: progress, partial results and logs become events
//! at once, through the task's budgeted emitter.

use wasmtime::component::{HasData, Linker};

use super::bindings::wasm_orch::agent::status;
use super::bindings::wasm_orch::agent::types::{self, Level};
use super::state::{SharedEmitter, TaskState, lock};
use crate::bus::{LogLevel, LogStream};

/// What the `status` import can reach: the task's emitter, nothing else.
pub(crate) struct StatusView<'a>(&'a SharedEmitter);

struct HasStatus;

impl HasData for HasStatus {
    type Data<'a> = StatusView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    types::add_to_linker::<TaskState, HasStatus>(linker, |s| StatusView(&s.events))?;
    status::add_to_linker::<TaskState, HasStatus>(linker, |s| StatusView(&s.events))
}

impl types::Host for StatusView<'_> {}

impl status::Host for StatusView<'_> {
    fn progress(&mut self, fraction: f32, message: String) -> wasmtime::Result<()> {
        lock(self.0).progress(fraction, &message);
        Ok(())
    }

    fn partial(&mut self, data: String) -> wasmtime::Result<()> {
        lock(self.0).partial(&data);
        Ok(())
    }

    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        lock(self.0).log(level, LogStream::Guest, &message);
        Ok(())
    }
}
