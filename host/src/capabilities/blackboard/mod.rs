//! The `blackboard` capability: versioned key-value state shared by the tasks of one run.
//!
//! - data: one [`Blackboard`] per run (`board`), so a guest can never name another run's or
//!   tenant's keys: scoping is structural, not a prefix a guest could forge;
//! - policy: which keys a task may read and write, and where they live (`scope`);
//! - host implementation of `wasm-orch:agent/blackboard`, with every refusal audited (`host`);
//! - the calls of a worker's attempt, relayed to its coordinator's board (`relay`).

mod board;
mod host;
mod relay;
mod scope;

pub(crate) use self::board::{Blackboard, BlackboardLimits, OnWrite};
pub(crate) use self::host::{BlackboardView, add_to_linker};
pub(crate) use self::relay::{BoardCall, BoardRelay, BoardReply};
pub(crate) use self::scope::BoardScope;
#[cfg(feature = "fuzzing")]
pub(crate) use self::scope::resolve;
