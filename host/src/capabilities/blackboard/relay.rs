//! A blackboard reached through another process: a worker's attempts use their coordinator's,
//! which checks, keeps and audits each call exactly as it does its own attempts' (the worker
//! holds no board and decides nothing).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// One call of a guest's `blackboard` import, as the guest made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BoardCall {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    CompareAndSwap {
        key: String,
        expected: Option<u64>,
        value: String,
    },
    ListKeys {
        prefix: String,
    },
}

/// A versioned value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireEntry {
    pub(crate) value: String,
    pub(crate) version: u64,
}

/// How a [`BoardCall`] went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BoardReply {
    /// `get`: the entry, if the key has one.
    Entry(Option<WireEntry>),
    /// `put`, `compare-and-swap`: the new version.
    Version(u64),
    /// `list-keys`.
    Keys(Vec<String>),
    /// `compare-and-swap` lost: the current entry.
    Conflict(Option<WireEntry>),
    /// Refused (and audited where the board is).
    Denied(String),
}

/// Where a relayed blackboard's calls go. The answer is the board's, or a `denied` naming
/// why the call did not reach it.
pub(crate) trait BoardRelay: Send + Sync + Debug {
    fn call(&self, call: BoardCall) -> Pin<Box<dyn Future<Output = BoardReply> + Send + '_>>;
}
