//! The model: the plain data every part of the runtime shares and that crosses its boundaries
//! (to subscribers, files, the journal, the HTTP API, workers).
//!
//! - [`events`]: what happened in a run, as a typed stream;
//! - [`status`]: how tasks and runs end, and typed errors;
//! - [`limits`]: per-attempt limits, budgets, fuel rates;
//! - [`policy`]: failure handling, resolved (retries, blocked tasks, error budgets);
//! - [`report`]: the results document and the run's metrics;
//! - [`port`]: the attempt port between the scheduler and an executor;
//! - [`time`], [`text`], [`Name`]: timestamps and durations, guest text made inert, shared
//!   strings.
//!
//! It imports nothing else of the crate and no engine: it is the leaf every layer stands on.
//! It holds data and the rules that are the data's own (a budget within its parent, a retry's
//! delay); it never does I/O and never decides what runs.

pub mod digest;
pub mod events;
pub mod limits;
mod name;
pub mod policy;
pub(crate) mod port;
pub mod report;
pub mod status;
pub mod text;
pub mod time;

pub use self::name::Name;
