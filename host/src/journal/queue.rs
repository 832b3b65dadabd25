//! The queue from the runtime to the journal's writer.
//!
//! Bounded in how many records may wait (past [`LIMIT`], a publisher waits for the writer to
//! catch up), but its memory grows only as records queue up. A channel with a preallocated
//! ring (`std::sync::mpsc::sync_channel`) would touch the whole ring in every process that
//! opens a journal: 65,536 slots are 6.8 MB of fresh pages, a few milliseconds of page
//! faults in `wasm-orch runs` or a one-task `wasm-orch run`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::writer::Record;

/// How many records may wait for the writer before publishers wait for it.
pub(crate) const LIMIT: usize = 1 << 16;

/// The sending end: cheap to clone, one per run and one for the journal itself.
#[derive(Debug, Clone)]
pub(crate) struct QueueSender {
    tx: Sender<Record>,
    backlog: Arc<Backlog>,
}

/// The writer's end.
pub(crate) struct QueueReceiver {
    pub(crate) rx: Receiver<Record>,
    backlog: Arc<Backlog>,
}

/// How many records wait, and a way to wait for room.
#[derive(Debug, Default)]
struct Backlog {
    waiting: AtomicUsize,
    /// The writer has stopped: nobody waits for room any more.
    closed: AtomicBool,
    lock: Mutex<()>,
    room: Condvar,
}

pub(crate) fn queue() -> (QueueSender, QueueReceiver) {
    let (tx, rx) = channel();
    let backlog = Arc::new(Backlog::default());
    (
        QueueSender {
            tx,
            backlog: Arc::clone(&backlog),
        },
        QueueReceiver { rx, backlog },
    )
}

impl QueueSender {
    /// Queues a record; waits while [`LIMIT`] records are already waiting. Gives the record
    /// back if the writer has stopped.
    pub(crate) fn send(&self, record: Record) -> Result<(), Record> {
        let backlog = &*self.backlog;
        // Counted before it is sent, so that the writer never takes a record it has not
        // counted (the count would wrap below zero meanwhile).
        let before = backlog.waiting.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.tx.send(record) {
            backlog.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(e.0);
        }
        if before >= LIMIT {
            let mut guard = backlog.lock.lock().unwrap_or_else(|e| e.into_inner());
            while backlog.waiting.load(Ordering::Acquire) > LIMIT
                && !backlog.closed.load(Ordering::Acquire)
            {
                // The writer wakes us when it takes a batch; the timeout only guards
                // against a wake-up lost to a writer that ended meanwhile.
                guard = backlog
                    .room
                    .wait_timeout(guard, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        Ok(())
    }
}

impl QueueReceiver {
    /// The writer has taken `n` records off the queue.
    pub(crate) fn taken(&self, n: usize) {
        let backlog = &*self.backlog;
        if backlog.waiting.fetch_sub(n, Ordering::AcqRel) > LIMIT {
            let _guard = backlog.lock.lock().unwrap_or_else(|e| e.into_inner());
            backlog.room.notify_all();
        }
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        // Also when the writer panicked: no publisher may wait for it forever.
        self.backlog.closed.store(true, Ordering::Release);
        let _guard = self.backlog.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.backlog.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_holds_its_publisher_until_the_writer_takes_a_batch() {
        let (tx, rx) = queue();
        for _ in 0..LIMIT {
            tx.send(Record::Stop).map_err(|_| "sent").expect("room");
        }
        let sent = Arc::new(AtomicBool::new(false));
        let publisher = std::thread::spawn({
            let (tx, sent) = (tx.clone(), Arc::clone(&sent));
            move || {
                tx.send(Record::Stop).map_err(|_| "sent").expect("queued");
                sent.store(true, Ordering::Release);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !sent.load(Ordering::Acquire),
            "a publisher went on past the limit"
        );
        let batch: Vec<Record> = rx.rx.try_iter().take(1000).collect();
        rx.taken(batch.len());
        publisher.join().expect("the publisher ends");
        assert!(sent.load(Ordering::Acquire));
    }

    #[test]
    fn the_count_of_waiting_records_never_runs_below_zero_while_the_writer_drains() {
        const SENDERS: usize = 4;
        const EACH: usize = 250_000;
        let (tx, rx) = queue();
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        tx.send(Record::Stop).map_err(|_| "sent").expect("queued");
                    }
                })
            })
            .collect();
        drop(tx);
        let mut taken = 0;
        let mut highest = 0;
        while taken < SENDERS * EACH {
            let batch: Vec<Record> = rx.rx.try_iter().take(64).collect();
            rx.taken(batch.len());
            taken += batch.len();
            // A record taken before it was counted would wrap the count to near usize::MAX.
            highest = highest.max(rx.backlog.waiting.load(Ordering::Acquire));
        }
        for sender in senders {
            sender.join().expect("a sender ends");
        }
        assert!(
            highest <= LIMIT + SENDERS,
            "the count wrapped: {highest} records waiting"
        );
        assert_eq!(rx.backlog.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_publisher_waiting_for_room_is_let_go_when_the_writer_ends() {
        let (tx, rx) = queue();
        for _ in 0..LIMIT {
            tx.send(Record::Stop).map_err(|_| "sent").expect("room");
        }
        let publisher = std::thread::spawn({
            let tx = tx.clone();
            move || tx.send(Record::Stop).is_ok()
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(rx);
        // Its record was queued before the writer ended (the send succeeded); what matters
        // is that it returns.
        publisher.join().expect("the publisher ends");
        assert!(tx.send(Record::Stop).is_err(), "the writer has gone");
    }
}
