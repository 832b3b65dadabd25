//! A subscriber's view of a run's events: it reads from its own position in the bus's
//! history, a batch at a time, and waits (without polling) when it has read everything.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::SystemTime;

use super::Bus;
use crate::model::events::Event;

/// The most events a subscriber takes from the history at once.
const BATCH: usize = 256;

/// The events of one run, in order. Ends after the run's `agent.run.completed` event.
#[derive(Debug)]
pub struct EventStream {
    bus: Arc<Bus>,
    /// The sequence number of the next event to take from the bus.
    next: u64,
    batch: VecDeque<Arc<Event>>,
    missed: u64,
}

enum Fill {
    Some,
    Nothing,
    Ended,
}

impl EventStream {
    pub(super) fn new(bus: Arc<Bus>, from: u64) -> Self {
        Self {
            bus,
            next: from,
            batch: VecDeque::new(),
            missed: 0,
        }
    }

    /// The next event, or `None` when the run has ended and every event was received.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(event) = self.batch.pop_front() {
                return Some(event);
            }
            // Registered before looking, so that an event published in between wakes it.
            let bus = Arc::clone(&self.bus);
            let mut notified = pin!(bus.notify.notified());
            notified.as_mut().enable();
            match self.fill() {
                Fill::Some => {}
                Fill::Ended => return None,
                Fill::Nothing => notified.await,
            }
        }
    }

    /// Like [`EventStream::next`], for code outside an async runtime (it parks the thread).
    pub fn blocking_next(&mut self) -> Option<Arc<Event>> {
        block_on(self.next())
    }

    /// How many events this stream never received because the bus had dropped them (it holds
    /// a bounded history) before the stream read them.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    fn fill(&mut self) -> Fill {
        let inner = self.bus.lock();
        if self.next < inner.first {
            self.missed += inner.first - self.next;
            self.next = inner.first;
        }
        let start = usize::try_from(self.next - inner.first).unwrap_or(usize::MAX);
        let end = inner.history.len().min(start.saturating_add(BATCH));
        if start >= end {
            return if inner.closed {
                Fill::Ended
            } else {
                Fill::Nothing
            };
        }
        self.batch.extend(inner.history.range(start..end).cloned());
        drop(inner);
        self.next += (end - start) as u64;
        let now = SystemTime::now();
        self.bus.lag.record(
            self.batch
                .iter()
                .map(|e| now.duration_since(e.at.0).unwrap_or_default()),
        );
        Fill::Some
    }
}

/// Runs a future to completion on this thread, parking it while the future waits.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
