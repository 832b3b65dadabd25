//! The event bus of a run: typed events, fanned out to every subscriber, in order, losslessly.
//!
//! Owns event numbering and delivery. A subscriber that joins late first receives the run's
//! history, so no consumer (the live view, a JSON-lines file, a test) misses an event.
//! It never blocks a publisher and never runs consumer code: each subscriber drains its own
//! queue. What guests may publish is bounded upstream, by [`TaskEmitter`].

mod emitter;
mod event;
mod redact;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

pub(crate) use self::emitter::{EmitterLimits, Heartbeat, TaskEmitter};
pub use self::event::{
    Artifact, AuditRecord, AuditResource, CredentialAction, CredentialEvent, Decision, ErrorKind,
    Event, EventKind, LastProgress, LogLevel, LogStream, PlanCreated, PlannedTask, RunCompleted,
    RunPaused, RunResumed, RunStatus, TaskBlocked, TaskError, TaskGrants, TaskHandoff, TaskLog,
    TaskPartial, TaskProgress, TaskRef, TaskStatus, TaskStatusUpdated, Timestamp,
};
pub(crate) use self::redact::Redactor;

/// The event stream of one run.
#[derive(Debug)]
pub(crate) struct Bus {
    run_id: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    history: Vec<Arc<Event>>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
    closed: bool,
}

impl Bus {
    pub(crate) fn new(run_id: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            run_id: run_id.into(),
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock is held cannot leave `Inner` half-updated in a way that
        // matters to readers, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, timestamps and delivers an event. Events after [`Bus::close`] are dropped.
    pub(crate) fn publish(&self, kind: EventKind) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.seq += 1;
        let event = Arc::new(Event {
            seq: inner.seq,
            run_id: self.run_id.clone(),
            at: Timestamp::now(),
            kind,
        });
        inner
            .subscribers
            .retain(|s| s.send(Arc::clone(&event)).is_ok());
        inner.history.push(event);
    }

    /// A stream of every event of the run: the history so far, then live events until the run
    /// ends.
    pub(crate) fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        for event in &inner.history {
            let _ = tx.send(Arc::clone(event));
        }
        if !inner.closed {
            inner.subscribers.push(tx);
        }
        EventStream { rx }
    }

    /// Ends every stream after the events published so far.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.subscribers.clear();
    }

    /// How many events have been published.
    pub(crate) fn len(&self) -> u64 {
        self.lock().seq
    }
}

/// The events of one run, in order. Ends after the run's `agent.run.completed` event.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Arc<Event>>,
}

impl EventStream {
    /// The next event, or `None` when the run has ended and every event was received.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        self.rx.recv().await
    }

    /// Like [`EventStream::next`], for code outside an async runtime. Must not be called from
    /// within one.
    pub fn blocking_next(&mut self) -> Option<Arc<Event>> {
        self.rx.blocking_recv()
    }
}

/// (De)serializes a [`std::time::Duration`] as whole milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// (De)serializes an optional [`std::time::Duration`] as whole milliseconds.
pub(crate) mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        bus.publish(log("two"));
        let mut late = bus.subscribe();
        bus.publish(log("three"));
        bus.close();
        bus.publish(log("after close"));
        for stream in [&mut early, &mut late] {
            let seqs: Vec<u64> = std::iter::from_fn(|| stream.blocking_next())
                .map(|e| e.seq)
                .collect();
            assert_eq!(seqs, [1, 2, 3]);
        }
        assert_eq!(bus.len(), 3);
    }
}
