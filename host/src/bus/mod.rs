//! The event bus of a run: typed events, numbered, held in order, read by every subscriber at
//! its own pace.
//!
//! Owns event numbering and delivery. Subscribers pull: each reads the run's events from its
//! own position in the bus's history, in batches, so a publisher never blocks, never runs
//! consumer code and never allocates per subscriber; a slow subscriber costs nothing but the
//! events it has not read yet. A subscriber that joins late first reads the history.
//!
//! What the bus holds is bounded: past [`BusLimits::max_bytes`] (an estimate of the events'
//! size), the oldest events are dropped from the history and counted; a subscriber that had
//! not read them learns how many it missed ([`EventStream::missed`]). What guests may publish
//! is bounded upstream, per attempt, by [`TaskEmitter`].

mod emitter;
mod lag;
mod stream;
mod weight;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub(crate) use self::emitter::{EmitterLimits, SharedEmitter, TaskEmitter, lock};
use self::lag::LagRecorder;
pub use self::stream::EventStream;
use crate::model::Name;
use crate::model::events::{Event, EventKind};
use crate::model::report::Lag;
use crate::model::time::Timestamp;

/// How much one run's bus may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusLimits {
    /// Estimated bytes of the events held for subscribers; past it the oldest are dropped.
    pub(crate) max_bytes: usize,
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
        }
    }
}

/// Where a run's events go besides its subscribers: the journal. Called under the bus's lock,
/// in sequence order, so it sees exactly the stream subscribers see; it must not block.
pub(crate) trait Sink: Send + Sync + std::fmt::Debug {
    fn append(&self, event: &Arc<Event>);
    /// How far the sink has made the events durable, when publishers should wait for it
    /// (`sync` durability); `None`: they never wait.
    fn durable(&self) -> Option<&DurableMark>;
}

/// How far a run's events are durable: the last sequence number the journal committed.
#[derive(Debug, Default)]
pub(crate) struct DurableMark {
    seq: std::sync::atomic::AtomicU64,
    notify: Notify,
}

impl DurableMark {
    pub(crate) fn advance(&self, seq: u64) {
        self.seq.fetch_max(seq, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn get(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Completes once event `seq` is durable.
    pub(crate) async fn reach(&self, seq: u64) {
        loop {
            let mut notified = std::pin::pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.get() >= seq {
                return;
            }
            notified.await;
        }
    }
}

/// The event stream of one run.
#[derive(Debug)]
pub(crate) struct Bus {
    run_id: Name,
    limits: BusLimits,
    sink: Option<Box<dyn Sink>>,
    /// The first sequence number this bus gives (after a resumed run's journaled events).
    origin: u64,
    inner: Mutex<Inner>,
    /// Wakes subscribers waiting for the next event.
    notify: Notify,
    /// Events were published without waking subscribers (see [`Bus::publish_quiet`]).
    unwoken: AtomicBool,
    lag: LagRecorder,
}

#[derive(Debug, Default)]
struct Inner {
    /// The last sequence number given.
    seq: u64,
    /// The events held, oldest first; `history[0]` has sequence number `first`.
    history: VecDeque<Arc<Event>>,
    first: u64,
    /// Estimated bytes held.
    bytes: usize,
    /// Events dropped from the history to stay within the limit.
    evicted: u64,
    closed: bool,
}

/// What a bus has held and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BusStats {
    pub(crate) published: u64,
    pub(crate) evicted: u64,
}

impl Bus {
    pub(crate) fn new(run_id: impl Into<Name>) -> Arc<Self> {
        Self::with_limits(run_id, BusLimits::default())
    }

    pub(crate) fn with_limits(run_id: impl Into<Name>, limits: BusLimits) -> Arc<Self> {
        Self::journaled(run_id, limits, 0, None)
    }

    /// A bus whose events also go to `sink`, numbered on from `after` (a resumed run goes on
    /// from its last journaled event).
    pub(crate) fn journaled(
        run_id: impl Into<Name>,
        limits: BusLimits,
        after: u64,
        sink: Option<Box<dyn Sink>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            run_id: run_id.into(),
            limits,
            sink,
            origin: after + 1,
            inner: Mutex::new(Inner {
                seq: after,
                first: after + 1,
                ..Inner::default()
            }),
            notify: Notify::new(),
            unwoken: AtomicBool::new(false),
            lag: LagRecorder::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock is held cannot leave `Inner` half-updated in a way that
        // matters to readers, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, timestamps and delivers an event; returns its sequence number (0 after
    /// [`Bus::close`], when events are dropped).
    pub(crate) fn publish(&self, kind: EventKind) -> u64 {
        let seq = self.append(kind);
        self.unwoken.store(false, Ordering::Relaxed);
        self.notify.notify_waiters();
        seq
    }

    /// Like [`Bus::publish`], without waking subscribers yet: for a publisher that emits
    /// several events in one step (the scheduler) and then calls [`Bus::wake`] once.
    pub(crate) fn publish_quiet(&self, kind: EventKind) -> u64 {
        let seq = self.append(kind);
        self.unwoken.store(true, Ordering::Relaxed);
        seq
    }

    /// Wakes subscribers if events were published quietly since they were last woken.
    pub(crate) fn wake(&self) {
        if self.unwoken.swap(false, Ordering::Relaxed) {
            self.notify.notify_waiters();
        }
    }

    fn append(&self, kind: EventKind) -> u64 {
        let weight = weight::of(&kind);
        let mut inner = self.lock();
        if inner.closed {
            return 0;
        }
        inner.seq += 1;
        let event = Arc::new(Event {
            seq: inner.seq,
            run_id: self.run_id.clone(),
            at: Timestamp::now(),
            kind,
        });
        if let Some(sink) = &self.sink {
            sink.append(&event);
        }
        inner.history.push_back(event);
        inner.bytes += weight;
        while inner.bytes > self.limits.max_bytes && inner.history.len() > 1 {
            if let Some(old) = inner.history.pop_front() {
                inner.bytes = inner.bytes.saturating_sub(weight::of(&old.kind));
                inner.first += 1;
                inner.evicted += 1;
            }
        }
        inner.seq
    }

    /// Completes once event `seq` is durable, when the run's sink asks publishers to wait
    /// (`sync` durability); at once otherwise.
    pub(crate) async fn durable(&self, seq: u64) {
        if let Some(mark) = self.sink.as_ref().and_then(|s| s.durable()) {
            mark.reach(seq).await;
        }
    }

    /// Whether publishers should wait for durability (see [`Bus::durable`]).
    pub(crate) fn waits_for_durability(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.durable().is_some())
    }

    /// A stream of every event of the run still held: the history so far, then live events
    /// until the run ends.
    pub(crate) fn subscribe(self: &Arc<Self>) -> EventStream {
        EventStream::new(Arc::clone(self), self.origin)
    }

    /// A stream from sequence number `seq` on: events before the history's first are
    /// [missed](EventStream::missed) (a resumed run's bus starts after its journaled events).
    pub(crate) fn subscribe_from(self: &Arc<Self>, seq: u64) -> EventStream {
        EventStream::new(Arc::clone(self), seq.max(1))
    }

    /// Ends every stream after the events published so far.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.unwoken.store(false, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    /// How many events have been published.
    pub(crate) fn len(&self) -> u64 {
        self.lock().seq
    }

    /// What the bus published and dropped.
    pub(crate) fn stats(&self) -> BusStats {
        let inner = self.lock();
        BusStats {
            published: inner.seq,
            evicted: inner.evicted,
        }
    }

    /// The delay from publication to receipt, over every event every subscriber has read.
    pub(crate) fn lag(&self) -> Lag {
        self.lag.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::{LogLevel, LogStream, TaskLog, TaskRef};

    fn log(message: &str) -> EventKind {
        EventKind::Log(TaskLog {
            task: TaskRef {
                node: "n".into(),
                branch: "w.n".into(),
                agent: "a".into(),
                attempt: 1,
            },
            level: LogLevel::Info,
            stream: LogStream::Host,
            message: message.into(),
        })
    }

    #[test]
    fn late_subscribers_get_the_history_then_live_events_then_the_end() {
        let bus = Bus::new("run");
        bus.publish(log("one"));
        let mut early = bus.subscribe();
        bus.publish_quiet(log("two"));
        let mut late = bus.subscribe();
        bus.publish(log("three"));
        bus.close();
        assert_eq!(bus.publish(log("after close")), 0);
        for stream in [&mut early, &mut late] {
            let seqs: Vec<u64> = std::iter::from_fn(|| stream.blocking_next())
                .map(|e| e.seq)
                .collect();
            assert_eq!(seqs, [1, 2, 3]);
            assert_eq!(stream.missed(), 0);
        }
        assert_eq!(bus.len(), 3);
        assert!(bus.lag().samples >= 6, "every read is a lag sample");
    }

    #[test]
    fn the_history_is_bounded_and_a_subscriber_learns_what_it_missed() {
        let bus = Bus::with_limits(
            "run",
            BusLimits {
                max_bytes: 64 << 10,
            },
        );
        let mut slow = bus.subscribe();
        let line = "x".repeat(1000);
        for _ in 0..1_000 {
            bus.publish(log(&line));
        }
        bus.close();
        let stats = bus.stats();
        assert_eq!(stats.published, 1_000);
        assert!(stats.evicted > 900, "{stats:?}");
        let read: Vec<u64> = std::iter::from_fn(|| slow.blocking_next())
            .map(|e| e.seq)
            .collect();
        assert_eq!(read.len() as u64 + slow.missed(), 1_000);
        assert_eq!(read.last(), Some(&1_000), "the newest events are kept");
        assert!(
            read.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gaps after the first"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_subscriber_is_woken_by_publish_and_by_wake() {
        let bus = Bus::new("run");
        let mut stream = EventStream::new(Arc::clone(&bus), 2);
        let reader = tokio::spawn(async move {
            let mut seqs = Vec::new();
            while let Some(e) = stream.next().await {
                seqs.push(e.seq);
            }
            seqs
        });
        bus.publish(log("one"));
        tokio::task::yield_now().await;
        bus.publish_quiet(log("two"));
        bus.publish_quiet(log("three"));
        bus.wake();
        tokio::task::yield_now().await;
        bus.publish(log("four"));
        bus.close();
        let seqs = reader.await.expect("the reader ends");
        assert_eq!(seqs, [2, 3, 4]);
    }
}
