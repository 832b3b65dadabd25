//! Host side of `wasm-orch:agent/status`: progress, partial results and logs become events
//! at once, through the task's budgeted emitter.

use wasmtime::component::{HasData, Linker};

use crate::bus::{SharedEmitter, lock};
use crate::model::events::{LogLevel, LogStream};
use crate::wit::wasm_orch::agent::status;
use crate::wit::wasm_orch::agent::types::{self, Level};

/// What the `status` import can reach: the task's emitter, nothing else.
pub(crate) struct StatusView<'a>(pub(crate) &'a SharedEmitter);

struct HasStatus;

impl HasData for HasStatus {
    type Data<'a> = StatusView<'a>;
}

/// Links `status` (and the `types` it uses); `get` gives a store's view of its emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> StatusView<'_>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasStatus>(linker, get)?;
    status::add_to_linker::<T, HasStatus>(linker, get)
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
