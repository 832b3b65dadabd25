//! The `messages` capability: point-to-point messages between the running tasks of one run.
//!
//! - data and policy: one [`Mailboxes`] per run (`mailbox`), holding an inbox per task of the
//!   run and nothing else, so an address can only name a task of the same run and tenant:
//!   scoping is structural, as for the blackboard. Its limits (body size, messages per task,
//!   per second, unread per inbox) are checked before a body is parsed or kept;
//! - host implementation of `wasm-orch:agent/messages`, with every refusal audited and every
//!   message and receipt an event (`host`);
//! - the calls of a worker's attempt, relayed to its coordinator's mailboxes (`relay`).
//!
//! Every message that reaches an inbox is told, in order, to the run's `OnSend` (the journal
//! keeps it); a resumed run's mailboxes start from the journal's [`PriorInbox`]es.
//!
//! A task declared `start = "on-message"` is dormant: the scheduler starts it when its first
//! message arrives (the mailboxes tell it, through the channel [`Mailboxes::new`] returns).

mod host;
mod mailbox;
mod relay;

pub(crate) use self::host::{MessagesView, add_to_linker};
pub(crate) use self::mailbox::{Delivered, Mailboxes, MessageScope, OnSend, PriorInbox};
pub(crate) use self::relay::{MessageCall, MessageRelay, MessageReply};
