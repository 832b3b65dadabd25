//! Messages of a task that runs in another process: a worker's attempts send and receive
//! through their coordinator, which holds the run's mailboxes and checks, counts and audits
//! each call exactly as it does its own attempts' (the worker holds no inbox).

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// One call of a guest's `messages` import, as the guest made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum MessageCall {
    Send { to: String, body: String },
    Receive { timeout_ms: u32 },
}

/// A message taken from the task's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    pub(crate) sender: String,
    pub(crate) body: String,
    pub(crate) seq: u64,
}

/// How a [`MessageCall`] went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum MessageReply {
    /// A send's place in the inbox it reached.
    Sent(u64),
    /// A receive: the next message, or none in time.
    Received(Option<WireMessage>),
    /// Refused (and audited where the mailboxes are).
    Denied(String),
}

/// Where a relayed task's message calls go. The answer is the mailboxes', or a `denied`
/// naming why the call did not reach them.
pub(crate) trait MessageRelay: Send + Sync + Debug {
    fn call(&self, call: MessageCall) -> Pin<Box<dyn Future<Output = MessageReply> + Send + '_>>;
}
