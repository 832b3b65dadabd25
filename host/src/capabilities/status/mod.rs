//! The `status` capability: what a running guest tells the world. Progress, partial results
//! and logs (its `status` import, and its stdout and stderr) become events of its task at
//! once, within the budgets of the task's emitter (see `bus::TaskEmitter`): a guest that
//! floods cannot flood the bus. Every guest has it; there is nothing to grant.

mod host;
mod stdio;

pub(crate) use self::host::{StatusView, add_to_linker};
pub(crate) use self::stdio::LogPipe;
