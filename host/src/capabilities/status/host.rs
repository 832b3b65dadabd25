//! Host side of `wasm-orch:agent/status`: progress, partial results and logs become events
//! at once, through the task's budgeted emitter.

use wasmtime::component::{HasData, Linker};

use crate::bus::{SharedEmitter, lock};
use crate::model::events::{LogLevel, LogStream};
use crate::wit::v2::wasm_orch::agent as v2;
use crate::wit::v3::wasm_orch::agent::status;
use crate::wit::v3::wasm_orch::agent::types::{self, Level};

/// What the `status` import can reach: the task's emitter, nothing else.
pub(crate) struct StatusView<'a>(pub(crate) &'a SharedEmitter);

struct HasStatus;

impl HasData for HasStatus {
    type Data<'a> = StatusView<'a>;
}

/// Links `status` (and the `types` it uses), in both versions of the contract; `get` gives a
/// store's view of its emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> StatusView<'_>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasStatus>(linker, get)?;
    status::add_to_linker::<T, HasStatus>(linker, get)?;
    v2::types::add_to_linker::<T, HasStatus>(linker, get)?;
    v2::status::add_to_linker::<T, HasStatus>(linker, get)
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

// `wasm-orch:agent@0.2.0`: the same calls, with the old package's types.

impl v2::types::Host for StatusView<'_> {}

impl v2::status::Host for StatusView<'_> {
    fn progress(&mut self, fraction: f32, message: String) -> wasmtime::Result<()> {
        status::Host::progress(self, fraction, message)
    }

    fn partial(&mut self, data: String) -> wasmtime::Result<()> {
        status::Host::partial(self, data)
    }

    fn log(&mut self, level: v2::types::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            v2::types::Level::Trace => Level::Trace,
            v2::types::Level::Debug => Level::Debug,
            v2::types::Level::Info => Level::Info,
            v2::types::Level::Warn => Level::Warn,
            v2::types::Level::Error => Level::Error,
        };
        status::Host::log(self, level, message)
    }
}
