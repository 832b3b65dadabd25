//! The inboxes of one run's tasks, and the limits on what goes into them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::relay::MessageRelay;
use crate::model::Name;
use crate::model::limits::MessageLimits;
use crate::model::report::MessageCounts;

/// A message as its receiver gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) sender: Name,
    pub(crate) body: String,
    pub(crate) seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Takes messages; its task is pending or running.
    Open,
    /// Its task starts on its first message, which has not come yet.
    Dormant,
    /// Its task has ended.
    Closed,
}

#[derive(Debug)]
struct Inbox {
    state: State,
    unread: VecDeque<Delivered>,
    /// Messages it was sent so far (the next one's place is one more).
    delivered: u64,
    notify: Arc<Notify>,
    counts: MessageCounts,
    /// The start of the current second of sending, and how many were sent in it.
    window: (Instant, u32),
}

impl Inbox {
    fn new(state: State) -> Self {
        Self {
            state,
            unread: VecDeque::new(),
            delivered: 0,
            notify: Arc::new(Notify::new()),
            counts: MessageCounts::default(),
            window: (Instant::now(), 0),
        }
    }
}

/// A task's inbox as a resumed run's journal left it: the messages no attempt that ended had
/// taken (oldest first), the place of the last message it was sent, and its counts so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriorInbox {
    pub(crate) unread: Vec<Delivered>,
    pub(crate) last_seq: u64,
    pub(crate) counts: MessageCounts,
}

/// Told of every message that reaches an inbox, in order: `(receiver, place, sender, body)`
/// (the journal keeps them, so a resumed run's inboxes are as they were).
pub(crate) type OnSend = Box<dyn Fn(&str, u64, &str, &str) + Send + Sync>;

/// The inboxes of every task of one run. A task's inbox lives as long as the task: its
/// unread messages wait for its next attempt, and it closes when the task ends.
pub(crate) struct Mailboxes {
    boxes: Mutex<Boxes>,
    limits: MessageLimits,
    /// Dormant tasks that got their first message, for the scheduler.
    woken: mpsc::UnboundedSender<Name>,
    on_send: Option<OnSend>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The inboxes, and the bytes of all their unread messages, under one lock.
#[derive(Debug, Default)]
struct Boxes {
    inboxes: HashMap<Name, Inbox>,
    unread_bytes: usize,
    /// A resumed run's inboxes of tasks that have none yet (a plan adds them again).
    prior: HashMap<Name, PriorInbox>,
}

impl Boxes {
    /// Opens `node`'s inbox (dormant if it starts on a message), as the journal left it if
    /// the run was resumed; a dormant inbox that already holds messages is awake.
    fn open(
        &mut self,
        node: Name,
        dormant: bool,
        limits: &MessageLimits,
        woken: &mpsc::UnboundedSender<Name>,
    ) {
        if self.inboxes.contains_key(&node) {
            return;
        }
        let mut inbox = Inbox::new(if dormant { State::Dormant } else { State::Open });
        if let Some(prior) = self.prior.remove(&node) {
            inbox.delivered = prior.last_seq;
            inbox.counts = prior.counts;
            let mut dropped = 0usize;
            for message in prior.unread {
                let fits = inbox.unread.len() < limits.inbox
                    && self.unread_bytes + message.body.len() <= limits.max_unread_bytes;
                if fits {
                    self.unread_bytes += message.body.len();
                    inbox.unread.push_back(message);
                } else {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                tracing::warn!(
                    node = %node,
                    dropped,
                    "a resumed task's inbox is past the run's message limits: its newest messages were left out"
                );
            }
            if !inbox.unread.is_empty() && inbox.state == State::Dormant {
                inbox.state = State::Open;
                let _ = woken.send(node.clone());
            }
        }
        self.inboxes.insert(node, inbox);
    }
}

/// What an attempt's `messages` import reaches: its run's mailboxes, as its task.
#[derive(Debug, Clone)]
pub(crate) struct MessageScope {
    pub(crate) mailboxes: Arc<Mailboxes>,
    pub(crate) node: Name,
    /// Where the calls go instead, when the mailboxes are another process's (a worker's
    /// attempt: its coordinator's).
    pub(crate) relay: Option<Arc<dyn MessageRelay>>,
}

impl MessageScope {
    /// A scope that reaches no task (an instance made ahead of its attempt, a diagnosis).
    pub(crate) fn alone() -> Self {
        // One for every store that speaks for no task: a warm instance is made ahead of
        // each attempt, and needs no mailboxes of its own.
        static NONE: std::sync::OnceLock<Arc<Mailboxes>> = std::sync::OnceLock::new();
        let mailboxes =
            NONE.get_or_init(|| Mailboxes::new(MessageLimits::default(), std::iter::empty()).0);
        Self {
            mailboxes: Arc::clone(mailboxes),
            node: Name::from(""),
            relay: None,
        }
    }

    /// The scope of a task whose calls go through `relay` (`node` is only named).
    pub(crate) fn relayed(node: Name, relay: Arc<dyn MessageRelay>) -> Self {
        Self {
            node,
            relay: Some(relay),
            ..Self::alone()
        }
    }
}

impl Mailboxes {
    /// The mailboxes of a run's tasks (`(node, starts on a message)`), and where the dormant
    /// ones are announced when their first message comes.
    pub(crate) fn new(
        limits: MessageLimits,
        tasks: impl IntoIterator<Item = (Name, bool)>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Name>) {
        Self::restored(limits, tasks, HashMap::new(), None)
    }

    /// Like [`Mailboxes::new`], for a resumed run: each inbox starts as the journal left it
    /// (`prior`, by node; within the run's limits), and `on_send` is told of every message.
    pub(crate) fn restored(
        limits: MessageLimits,
        tasks: impl IntoIterator<Item = (Name, bool)>,
        prior: HashMap<Name, PriorInbox>,
        on_send: Option<OnSend>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Name>) {
        let (woken, rx) = mpsc::unbounded_channel();
        let mut boxes = Boxes {
            prior,
            ..Boxes::default()
        };
        for (node, dormant) in tasks {
            boxes.open(node, dormant, &limits, &woken);
        }
        let mailboxes = Self {
            boxes: Mutex::new(boxes),
            limits,
            woken,
            on_send,
        };
        (Arc::new(mailboxes), rx)
    }

    fn lock(&self) -> MutexGuard<'_, Boxes> {
        self.boxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn limits(&self) -> MessageLimits {
        self.limits
    }

    /// A task a plan added: its inbox opens (dormant if it starts on a message).
    pub(crate) fn open(&self, node: Name, dormant: bool) {
        self.lock().open(node, dormant, &self.limits, &self.woken);
    }

    /// `node` has ended: a message to it is refused from now on. Its unread messages are
    /// dropped and counted.
    pub(crate) fn close(&self, node: &str) {
        let mut boxes = self.lock();
        let Boxes {
            inboxes,
            unread_bytes,
            ..
        } = &mut *boxes;
        if let Some(inbox) = inboxes.get_mut(node) {
            inbox.state = State::Closed;
            inbox.counts.unread = inbox.unread.len() as u64;
            let bytes: usize = inbox.unread.drain(..).map(|m| m.body.len()).sum();
            *unread_bytes -= bytes;
            inbox.notify.notify_waiters();
        }
    }

    /// Counts a send of `node`'s refused before it reached the mailboxes (a bad address or
    /// body).
    pub(crate) fn refused(&self, node: &str) {
        if let Some(inbox) = self.lock().inboxes.get_mut(node) {
            inbox.counts.refused += 1;
        }
    }

    /// Puts `body` (JSON, already checked and redacted) from `from` into `to`'s inbox;
    /// returns its place there, or why it is refused.
    pub(crate) fn send(&self, from: &str, to: &str, body: String) -> Result<u64, String> {
        let mut boxes = self.lock();
        if let Some(why) = self.refusal(&mut boxes, from, to, body.len()) {
            if let Some(sender) = boxes.inboxes.get_mut(from) {
                sender.counts.refused += 1;
            }
            return Err(why);
        }
        boxes.unread_bytes += body.len();
        let Some(inbox) = boxes.inboxes.get_mut(to) else {
            return Err(format!("`{to}` is not a task of this run"));
        };
        inbox.delivered += 1;
        let seq = inbox.delivered;
        // Under the lock: the journal sees each inbox's messages in their order.
        if let Some(on_send) = &self.on_send {
            on_send(to, seq, from, &body);
        }
        inbox.unread.push_back(Delivered {
            sender: Name::from(from),
            body,
            seq,
        });
        inbox.notify.notify_one();
        if inbox.state == State::Dormant {
            inbox.state = State::Open;
            let _ = self.woken.send(Name::from(to));
        }
        if let Some(sender) = boxes.inboxes.get_mut(from) {
            sender.counts.sent += 1;
            sender.window.1 += 1;
        }
        Ok(seq)
    }

    /// Why a body of `bytes` from `from` may not go into `to`'s inbox now, if it may not
    /// (a new second of `from`'s sending starts here).
    fn refusal(&self, boxes: &mut Boxes, from: &str, to: &str, bytes: usize) -> Option<String> {
        let limits = self.limits;
        let Some(sender) = boxes.inboxes.get_mut(from) else {
            return Some("this task has no inbox in the run".to_owned());
        };
        if sender.counts.sent >= limits.max_sent {
            return Some(format!(
                "this task has sent the {} messages a task may send",
                limits.max_sent
            ));
        }
        let now = Instant::now();
        if now.duration_since(sender.window.0) >= Duration::from_secs(1) {
            sender.window = (now, 0);
        }
        if sender.window.1 >= limits.per_second {
            return Some(format!(
                "this task sent {} messages in the last second, the most a task may",
                limits.per_second
            ));
        }
        match boxes.inboxes.get(to) {
            None => Some(format!(
                "`{to}` is not a task of this run (a message reaches only the tasks of its own run, by node id)"
            )),
            Some(inbox) if inbox.state == State::Closed => {
                Some(format!("task `{to}` has ended; it takes no more messages"))
            }
            Some(inbox) if inbox.unread.len() >= limits.inbox => Some(format!(
                "the inbox of `{to}` is full ({} unread messages)",
                limits.inbox
            )),
            Some(_) if boxes.unread_bytes + bytes > limits.max_unread_bytes => Some(format!(
                "the run's inboxes hold {} bytes unread, and may hold at most {}",
                boxes.unread_bytes, limits.max_unread_bytes
            )),
            Some(_) => None,
        }
    }

    /// The next unread message of `node`, and what to wait on for one when there is none
    /// (`None`: the inbox is closed, or there is none).
    pub(crate) fn take(&self, node: &str) -> Result<Delivered, Option<Arc<Notify>>> {
        let mut boxes = self.lock();
        let Boxes {
            inboxes,
            unread_bytes,
            ..
        } = &mut *boxes;
        let Some(inbox) = inboxes.get_mut(node) else {
            return Err(None);
        };
        match inbox.unread.pop_front() {
            Some(message) => {
                inbox.counts.received += 1;
                *unread_bytes -= message.body.len();
                Ok(message)
            }
            None if inbox.state == State::Closed => Err(None),
            None => Err(Some(Arc::clone(&inbox.notify))),
        }
    }

    /// What each task sent and received, for those that did either (or had a refusal).
    pub(crate) fn counts(&self) -> BTreeMap<String, MessageCounts> {
        self.lock()
            .inboxes
            .iter()
            .filter(|(_, i)| i.counts != MessageCounts::default())
            .map(|(node, i)| (node.to_string(), i.counts))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(seqs: &[u64], last_seq: u64) -> PriorInbox {
        PriorInbox {
            unread: seqs
                .iter()
                .map(|&seq| Delivered {
                    sender: Name::from("alpha"),
                    body: format!("[{seq}]"),
                    seq,
                })
                .collect(),
            last_seq,
            counts: MessageCounts {
                received: 2,
                ..MessageCounts::default()
            },
        }
    }

    #[test]
    fn a_resumed_inbox_is_as_the_journal_left_it_within_the_limits() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let on_send: OnSend = Box::new({
            let sent = Arc::clone(&sent);
            move |to, seq, from, body| {
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{from}->{to}#{seq}:{body}"));
            }
        });
        let limits = MessageLimits {
            inbox: 2,
            ..MessageLimits::default()
        };
        let (boxes, mut woken) = Mailboxes::restored(
            limits,
            [(Name::from("alpha"), false), (Name::from("gamma"), true)],
            HashMap::from([
                (Name::from("gamma"), prior(&[2, 3, 4], 4)),
                (Name::from("planned"), prior(&[1], 1)),
            ]),
            Some(on_send),
        );
        // Gamma was dormant, and its inbox holds messages: it is woken at once.
        assert_eq!(woken.try_recv().ok(), Some(Name::from("gamma")));
        let took: Vec<u64> = std::iter::from_fn(|| boxes.take("gamma").ok())
            .map(|m| m.seq)
            .collect();
        assert_eq!(took, [2, 3], "oldest first, at most `inbox` of them");
        // A new message takes the next place, and the journal is told of it.
        assert_eq!(boxes.send("alpha", "gamma", "{}".into()), Ok(5));
        assert_eq!(
            *sent.lock().unwrap_or_else(|e| e.into_inner()),
            ["alpha->gamma#5:{}"]
        );
        // The counts go on from the journal's.
        assert_eq!(boxes.counts()["gamma"].received, 4);
        // A planned task's inbox is restored when its plan joins again.
        assert!(boxes.take("planned").is_err());
        boxes.open(Name::from("planned"), false);
        assert_eq!(boxes.take("planned").ok().map(|m| m.seq), Some(1));
    }

    fn boxes(limits: MessageLimits) -> (Arc<Mailboxes>, mpsc::UnboundedReceiver<Name>) {
        Mailboxes::new(
            limits,
            [
                (Name::from("alpha"), false),
                (Name::from("beta"), false),
                (Name::from("gamma"), true),
            ],
        )
    }

    #[test]
    fn messages_arrive_in_order_and_only_at_tasks_of_the_run() {
        let (boxes, _) = boxes(MessageLimits::default());
        assert_eq!(boxes.send("alpha", "beta", "1".into()), Ok(1));
        assert_eq!(boxes.send("alpha", "beta", "2".into()), Ok(2));
        let first = boxes.take("beta").expect("a message");
        assert_eq!((first.sender.as_str(), first.body.as_str()), ("alpha", "1"));
        assert_eq!(boxes.take("beta").ok().map(|m| m.seq), Some(2));
        assert!(matches!(boxes.take("beta"), Err(Some(_))));
        for elsewhere in ["run-2/beta", "tenants/acme/beta", "", "beta/"] {
            let why = boxes
                .send("alpha", elsewhere, "1".into())
                .expect_err(elsewhere);
            assert!(why.contains("not a task of this run"), "{why}");
        }
        let counts = boxes.counts();
        assert_eq!((counts["alpha"].sent, counts["alpha"].refused), (2, 4));
        assert_eq!(counts["beta"].received, 2);
    }

    #[test]
    fn a_dormant_task_is_woken_by_its_first_message_only() {
        let (boxes, mut woken) = boxes(MessageLimits::default());
        boxes.send("alpha", "gamma", "{}".into()).expect("sent");
        boxes.send("beta", "gamma", "{}".into()).expect("sent");
        assert_eq!(woken.try_recv().map(|n| n.to_string()), Ok("gamma".into()));
        assert!(woken.try_recv().is_err(), "woken once");
    }

    #[test]
    fn an_ended_task_takes_nothing_and_its_unread_messages_are_counted() {
        let (boxes, _) = boxes(MessageLimits::default());
        boxes.send("alpha", "beta", "1".into()).expect("sent");
        boxes.close("beta");
        let why = boxes.send("alpha", "beta", "2".into()).expect_err("closed");
        assert!(why.contains("has ended"), "{why}");
        assert!(matches!(boxes.take("beta"), Err(None)));
        assert_eq!(boxes.counts()["beta"].unread, 1);
    }

    #[test]
    fn counts_rates_and_full_inboxes_are_refused() {
        let limits = MessageLimits {
            max_sent: 5,
            per_second: 3,
            inbox: 2,
            ..MessageLimits::default()
        };
        let (boxes, _) = boxes(limits);
        boxes.send("alpha", "beta", "1".into()).expect("sent");
        boxes.send("alpha", "beta", "2".into()).expect("sent");
        let full = boxes.send("alpha", "beta", "3".into()).expect_err("full");
        assert!(full.contains("full"), "{full}");
        boxes.send("alpha", "gamma", "3".into()).expect("sent");
        let rate = boxes.send("alpha", "gamma", "4".into()).expect_err("rate");
        assert!(rate.contains("in the last second"), "{rate}");
        let (boxes, _) = Mailboxes::new(
            MessageLimits {
                max_sent: 2,
                ..limits
            },
            [(Name::from("a"), false), (Name::from("b"), false)],
        );
        boxes.send("a", "b", "1".into()).expect("sent");
        let _ = boxes.take("b");
        boxes.send("a", "b", "1".into()).expect("sent");
        let spent = boxes.send("a", "b", "1".into()).expect_err("count");
        assert!(spent.contains("2 messages"), "{spent}");
    }

    #[test]
    fn the_runs_inboxes_together_hold_at_most_their_bytes() {
        let (boxes, _) = boxes(MessageLimits {
            max_unread_bytes: 10,
            ..MessageLimits::default()
        });
        boxes
            .send("alpha", "beta", "\"123456\"".into())
            .expect("8 bytes");
        let why = boxes
            .send("alpha", "gamma", "\"12\"".into())
            .expect_err("over");
        assert!(why.contains("at most 10"), "{why}");
        let _ = boxes.take("beta");
        boxes
            .send("alpha", "gamma", "\"12\"".into())
            .expect("read: room again");
        boxes.close("gamma");
        boxes
            .send("alpha", "beta", "\"123456\"".into())
            .expect("closed: room again");
    }
}
