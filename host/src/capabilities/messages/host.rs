//! Host side of `wasm-orch:agent/messages`: a task's sends and receives, through its run's
//! mailboxes, as its own node (never the guest's word for who it is).
//!
//! A send is checked in the order that keeps a hostile guest cheap: the address and the
//! body's size first, then JSON, then redaction, then the mailboxes' limits. A refusal is
//! denied and audited; a message is an `agent.message.sent` event and its receipt an
//! `agent.message.received` (sizes, never bodies). A `receive` waits without fuel; the
//! attempt's deadline and its cancellation drop the wait. A worker's attempt has no inbox:
//! its calls go to its coordinator's mailboxes (`relay`), answered by
//! [`MessagesView::answer`] with the same checks.

use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use super::mailbox::MessageScope;
use super::relay::{MessageCall, MessageReply, WireMessage};
use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};
use crate::model::text::truncate;
use crate::wit::v3::wasm_orch::agent::messages as wit;

/// The longest address kept: no node id is longer.
const MAX_ADDRESS: usize = 256;

/// What the `messages` import can reach: its run's mailboxes, as its task.
pub(crate) struct MessagesView<'a> {
    scope: &'a MessageScope,
    events: &'a SharedEmitter,
}

impl<'a> MessagesView<'a> {
    pub(crate) fn new(scope: &'a MessageScope, events: &'a SharedEmitter) -> Self {
        Self { scope, events }
    }
}

struct HasMessages;

impl HasData for HasMessages {
    type Data<'a> = MessagesView<'a>;
}

/// Links `messages` (0.3 only: 0.2 components cannot import it); `get` gives a store's view of
/// its task's scope and emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> MessagesView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasMessages>(linker, get)
}

impl MessagesView<'_> {
    fn deny(&self, to: &str, why: String) -> wit::MessageError {
        lock(self.events).audit(
            AuditResource::Message,
            &format!("send {}", truncate(to, MAX_ADDRESS)),
            Decision::Denied,
            &why,
        );
        wit::MessageError::Denied(why)
    }

    fn send(&self, to: &str, body: String) -> Result<u64, wit::MessageError> {
        let checked = self.check(to, &body);
        if checked.is_err() {
            self.scope.mailboxes.refused(&self.scope.node);
        }
        checked?;
        let redactor = lock(self.events).redactor().clone();
        let body = match redactor.json_text(&body) {
            std::borrow::Cow::Borrowed(_) => body,
            std::borrow::Cow::Owned(clean) => clean,
        };
        let bytes = body.len() as u64;
        match self.scope.mailboxes.send(&self.scope.node, to, body) {
            Ok(seq) => {
                lock(self.events).message_sent(to, seq, bytes);
                Ok(seq)
            }
            Err(why) => Err(self.deny(to, why)),
        }
    }

    /// The checks of a send that need no mailbox: the address's shape, the body's size, JSON.
    fn check(&self, to: &str, body: &str) -> Result<(), wit::MessageError> {
        if to.len() > MAX_ADDRESS || to.is_empty() || to.chars().any(char::is_control) {
            let shown = format!("{:?}", truncate(to, 64));
            return Err(self.deny(
                to,
                format!("{shown} is not a task of this run (a message reaches only the tasks of its own run, by node id)"),
            ));
        }
        let max = self.scope.mailboxes.limits().max_bytes;
        if body.len() > max {
            return Err(self.deny(
                to,
                format!(
                    "a message body may have at most {max} bytes, this one has {}",
                    body.len()
                ),
            ));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(body) {
            return Err(self.deny(to, format!("the body is not JSON: {e}")));
        }
        Ok(())
    }
}

impl MessagesView<'_> {
    /// Takes the next message of the task's inbox, waiting up to `timeout` for one.
    async fn take(&self, timeout: Duration) -> Option<wit::Message> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match self.scope.mailboxes.take(&self.scope.node) {
                Ok(message) => {
                    lock(self.events).message_received(
                        &message.sender,
                        message.seq,
                        message.body.len() as u64,
                    );
                    return Some(wit::Message {
                        sender: message.sender.to_string(),
                        body: message.body,
                        seq: message.seq,
                    });
                }
                Err(None) => return None,
                Err(Some(notify)) => {
                    // A send stores a permit when nobody waits: no message slips between the
                    // look above and this wait.
                    if tokio::time::timeout_at(until, notify.notified())
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
            }
        }
    }

    /// Makes `call` on these mailboxes, as the guest's own import would: a relayed attempt's
    /// call (checked, counted and audited here). A receive waits at most `longest`.
    pub(crate) async fn answer(&self, call: MessageCall, longest: Duration) -> MessageReply {
        match call {
            MessageCall::Send { to, body } => match self.send(&to, body) {
                Ok(seq) => MessageReply::Sent(seq),
                Err(wit::MessageError::Denied(why)) => MessageReply::Denied(why),
            },
            MessageCall::Receive { timeout_ms } => {
                let wait = Duration::from_millis(u64::from(timeout_ms)).min(longest);
                MessageReply::Received(self.take(wait).await.map(|m| WireMessage {
                    sender: m.sender,
                    body: m.body,
                    seq: m.seq,
                }))
            }
        }
    }
}

impl wit::Host for MessagesView<'_> {
    async fn send(
        &mut self,
        to: String,
        body: String,
    ) -> wasmtime::Result<Result<u64, wit::MessageError>> {
        let Some(relay) = &self.scope.relay else {
            return Ok(MessagesView::send(self, &to, body));
        };
        Ok(match relay.call(MessageCall::Send { to, body }).await {
            MessageReply::Sent(seq) => Ok(seq),
            MessageReply::Denied(why) => Err(wit::MessageError::Denied(why)),
            MessageReply::Received(_) => Err(wit::MessageError::Denied(
                "the coordinator answered another call".into(),
            )),
        })
    }

    async fn receive(
        &mut self,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Option<wit::Message>, wit::MessageError>> {
        let Some(relay) = &self.scope.relay else {
            let timeout = Duration::from_millis(u64::from(timeout_ms));
            return Ok(Ok(self.take(timeout).await));
        };
        Ok(
            match relay.call(MessageCall::Receive { timeout_ms }).await {
                MessageReply::Received(m) => Ok(m.map(|m| wit::Message {
                    sender: m.sender,
                    body: m.body,
                    seq: m.seq,
                })),
                MessageReply::Denied(why) => Err(wit::MessageError::Denied(why)),
                MessageReply::Sent(_) => Err(wit::MessageError::Denied(
                    "the coordinator answered another call".into(),
                )),
            },
        )
    }
}
