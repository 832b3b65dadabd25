//! Messages between the running tasks of one run: point to point, through the host.
//!
//! A task is addressed by its node id in the run. Each task has an inbox that takes messages
//! from the start of the run until the task ends (a message to a task that has not started
//! waits for it). A task declared `start = "on-message"` starts when its first message comes.
//! Bodies are JSON; the host bounds their size (64 KiB by default), how many a task sends
//! (1,000, at most 100 a second) and how many wait unread (256), as the workflow's
//! `[workflow.messages]` says, and refuses an address that is not a task of the run.
//!
//! ```no_run
//! # fn main() -> Result<(), wasm_orch_sdk::Error> {
//! use std::time::Duration;
//! use wasm_orch_sdk::messages;
//! messages::send("beta", &serde_json::json!({"offer": 42}))?;
//! if let Some(reply) = messages::receive::<serde_json::Value>(Duration::from_secs(5))? {
//!     println!("{} answered {}", reply.from, reply.body);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::wasm_orch::agent::messages::MessageError;
use crate::{Error, host};

/// A message from another task of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<T> {
    /// The node id of the task that sent it.
    pub from: String,
    /// What it sent.
    pub body: T,
    /// Its place in this task's inbox: 1 for the first message this task was sent.
    pub seq: u64,
}

/// Sends `body` to task `to` of this run; returns its place in `to`'s inbox. A refusal (no
/// such task, a task that has ended, a limit) is an error that says why.
pub fn send<T: Serialize + ?Sized>(to: &str, body: &T) -> Result<u64, Error> {
    let json = serde_json::to_string(body)?;
    host::send(to, &json).map_err(|MessageError::Denied(why)| {
        // The address as the guest gave it, cut and escaped: the host's reason names it too.
        let shown: String = to.chars().take(64).flat_map(char::escape_debug).collect();
        Error::failed(format!("message to `{shown}`: {why}"))
    })
}

/// The next message in this task's inbox, waiting at most `timeout` for one (`None` when
/// none came). Waiting uses no fuel, but counts against the task's time limit.
pub fn receive<T: DeserializeOwned>(timeout: Duration) -> Result<Option<Message<T>>, Error> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let Some(message) = host::receive(ms)
        .map_err(|MessageError::Denied(why)| Error::failed(format!("messages: {why}")))?
    else {
        return Ok(None);
    };
    let body = serde_json::from_str(&message.body).map_err(|e| {
        Error::invalid_input(format!(
            "the message from `{}` has an unexpected shape: {e}",
            message.sender
        ))
    })?;
    Ok(Some(Message {
        from: message.sender,
        body,
        seq: message.seq,
    }))
}
