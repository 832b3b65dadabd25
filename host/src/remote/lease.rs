//! Attempts leased over HTTP: the way a pool's work reaches its workers while NATS cannot.
//!
//! While no worker can be reached on NATS, a coordinator runs its attempts itself, a few at a
//! time (the pool's degraded concurrency). Each such attempt is also offered here, and a worker
//! that polls the coordinator's HTTP API (`wasm-orch serve`, `POST /v1/work/lease`) may lease
//! it first: whichever takes it first runs it, the other never does. A lease lasts the pool's
//! ack wait and is renewed by its worker while the attempt runs (as an in-progress ack is on
//! NATS); a lease that runs out (its worker died, or lost the coordinator) is offered again,
//! up to the pool's max-deliver count, after which the attempt ends `worker-lost`. A worker's
//! reports and its guest's calls come over HTTP too, and go where a NATS worker's go: only the
//! worker that holds the lease is answered.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

/// How long after its last poll a leasing worker still counts as live.
const LIVE: Duration = Duration::from_secs(3);

/// Attempts waiting for a leasing worker, and those leased.
#[derive(Default)]
pub(crate) struct Leases {
    state: Mutex<State>,
    /// An attempt was offered.
    offered: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    held: HashMap<String, Held>,
    /// Leasing workers, by id: when each last polled.
    workers: HashMap<String, Instant>,
    /// Lease requests waiting for an attempt now.
    polling: usize,
    /// What the attempts offered need, by digest: where the coordinator has each (their
    /// components, and their input files).
    blobs: HashMap<String, PathBuf>,
}

struct Queued {
    key: String,
    order: Arc<str>,
    /// Deliveries so far (the next lease is one more).
    delivered: u32,
    /// Told the worker's id when the attempt is first leased.
    taken: Option<oneshot::Sender<String>>,
}

struct Held {
    worker: String,
    order: Arc<str>,
    delivered: u32,
    expires: Instant,
    cancelled: bool,
}

/// An attempt a worker leased: its key, which delivery this is, and its work order (JSON).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Leased {
    pub key: String,
    pub delivered: u32,
    pub order: Arc<str>,
}

/// What a renewal learns about a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// Still the worker's, for another lease time.
    Held,
    /// The coordinator stopped the attempt: the worker stops it and reports its end.
    Cancelled,
    /// Not the worker's (it ran out and went to another, or the attempt ended).
    Gone,
}

/// A lease request waiting (counted while it lives, whichever way it ends).
struct Polling<'a>(&'a Leases);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.polling = state.polling.saturating_sub(1);
    }
}

/// A lease that ran out: offered again, or (past the max-deliver count) given up.
pub(crate) enum Expired {
    Again,
    Lost(String),
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a worker waits for a lease now, or asked for one lately.
    pub(crate) fn has_workers(&self) -> bool {
        let now = Instant::now();
        let state = self.lock();
        state.polling > 0
            || state
                .workers
                .values()
                .any(|seen| now.duration_since(*seen) < LIVE)
    }

    /// Offers attempt `key` (its work order, and the files it needs by digest: its component
    /// and its inputs); the answer tells which worker leased it first.
    pub(crate) fn offer(
        &self,
        key: &str,
        order: Arc<str>,
        blobs: impl IntoIterator<Item = (String, PathBuf)>,
    ) -> oneshot::Receiver<String> {
        let (taken, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            state.blobs.extend(blobs);
            state.queue.push_back(Queued {
                key: key.to_owned(),
                order,
                delivered: 0,
                taken: Some(taken),
            });
        }
        self.offered.notify_waiters();
        rx
    }

    /// Takes attempt `key` back if no worker has leased it: then it runs here.
    pub(crate) fn withdraw(&self, key: &str) -> bool {
        let mut state = self.lock();
        let before = state.queue.len();
        state.queue.retain(|q| q.key != key);
        state.queue.len() < before
    }

    /// Gives worker `worker` the oldest attempt offered, waiting up to `wait` for one.
    pub(crate) async fn lease(
        &self,
        worker: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Option<Leased> {
        let until = tokio::time::Instant::now() + wait;
        self.lock().polling += 1;
        let _polling = Polling(self);
        loop {
            // Registered before the look, so an offer between the two is not missed.
            let offered = self.offered.notified();
            tokio::pin!(offered);
            offered.as_mut().enable();
            {
                let mut state = self.lock();
                state.workers.insert(worker.to_owned(), Instant::now());
                if let Some(mut queued) = state.queue.pop_front() {
                    queued.delivered += 1;
                    if let Some(taken) = queued.taken.take() {
                        let _ = taken.send(worker.to_owned());
                    }
                    state.held.insert(
                        queued.key.clone(),
                        Held {
                            worker: worker.to_owned(),
                            order: Arc::clone(&queued.order),
                            delivered: queued.delivered,
                            expires: Instant::now() + ttl,
                            cancelled: false,
                        },
                    );
                    return Some(Leased {
                        key: queued.key,
                        delivered: queued.delivered,
                        order: queued.order,
                    });
                }
            }
            if tokio::time::timeout_at(until, offered).await.is_err() {
                return None;
            }
        }
    }

    /// Worker `worker` still runs attempt `key`: its lease goes on (or the attempt was
    /// cancelled, or the lease is not its).
    pub(crate) fn renew(&self, worker: &str, key: &str, ttl: Duration) -> LeaseState {
        let mut state = self.lock();
        state.workers.insert(worker.to_owned(), Instant::now());
        match state.held.get_mut(key) {
            Some(held) if held.worker == worker => {
                if held.cancelled {
                    return LeaseState::Cancelled;
                }
                held.expires = Instant::now() + ttl;
                LeaseState::Held
            }
            _ => LeaseState::Gone,
        }
    }

    /// Which worker holds attempt `key`'s lease, if any.
    pub(crate) fn holder(&self, key: &str) -> Option<String> {
        self.lock().held.get(key).map(|h| h.worker.clone())
    }

    /// Stops attempt `key`: not offered any more; its worker learns it at its next renewal.
    pub(crate) fn cancel(&self, key: &str) {
        let mut state = self.lock();
        state.queue.retain(|q| q.key != key);
        if let Some(held) = state.held.get_mut(key) {
            held.cancelled = true;
        }
    }

    /// Attempt `key` ended: nothing of it is kept.
    pub(crate) fn release(&self, key: &str) {
        let mut state = self.lock();
        state.queue.retain(|q| q.key != key);
        state.held.remove(key);
    }

    /// The leases that ran out by `now`: each offered again, or past `max_deliver`
    /// deliveries given up; by key.
    pub(crate) fn expire(&self, now: Instant, max_deliver: u32) -> Vec<(String, Expired)> {
        let mut state = self.lock();
        let gone: Vec<String> = state
            .held
            .iter()
            .filter(|(_, h)| h.expires <= now && !h.cancelled)
            .map(|(key, _)| key.clone())
            .collect();
        let mut out = Vec::new();
        for key in gone {
            let Some(held) = state.held.remove(&key) else {
                continue;
            };
            if held.delivered >= max_deliver {
                out.push((
                    key,
                    Expired::Lost(format!(
                        "its lease went unrenewed {} times (worker `{}` last): its workers stopped",
                        held.delivered,
                        crate::model::text::truncate(&held.worker, 80)
                    )),
                ));
            } else {
                state.queue.push_front(Queued {
                    key: key.clone(),
                    order: held.order,
                    delivered: held.delivered,
                    taken: None,
                });
                out.push((key, Expired::Again));
            }
        }
        if out.iter().any(|(_, e)| matches!(e, Expired::Again)) {
            drop(state);
            self.offered.notify_waiters();
        }
        out
    }

    /// Where the file of digest `digest` is, if an attempt offered here needs it.
    pub(crate) fn blob(&self, digest: &str) -> Option<PathBuf> {
        self.lock().blobs.get(digest).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn an_offer_goes_to_one_worker_or_back_here_never_both() {
        let leases = Leases::default();
        let taken = leases.offer("r/a/1", Arc::from("{}"), []);
        let leased = leases
            .lease("w1", TTL, Duration::from_millis(10))
            .await
            .expect("leased");
        assert_eq!((leased.key.as_str(), leased.delivered), ("r/a/1", 1));
        assert_eq!(taken.await.ok().as_deref(), Some("w1"));
        assert!(!leases.withdraw("r/a/1"), "leased: it no longer runs here");
        assert!(leases.has_workers());

        let _taken = leases.offer("r/b/1", Arc::from("{}"), []);
        assert!(leases.withdraw("r/b/1"), "not leased yet: it runs here");
        assert!(
            leases
                .lease("w2", TTL, Duration::from_millis(10))
                .await
                .is_none(),
            "nothing is left to lease"
        );
    }

    #[tokio::test]
    async fn a_waiting_worker_gets_an_attempt_offered_while_it_waits() {
        let leases = Arc::new(Leases::default());
        let poll = tokio::spawn({
            let leases = Arc::clone(&leases);
            async move { leases.lease("w1", TTL, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _taken = leases.offer("r/a/1", Arc::from("{\"n\":1}"), []);
        let leased = poll.await.expect("joins").expect("leased");
        assert_eq!(&*leased.order, "{\"n\":1}");
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_is_offered_again_until_the_deliveries_are_spent() {
        let leases = Leases::default();
        let _taken = leases.offer("r/a/1", Arc::from("{}"), []);
        let short = Duration::from_millis(1);
        leases
            .lease("w1", short, Duration::ZERO)
            .await
            .expect("first");
        assert_eq!(
            leases.renew("w2", "r/a/1", TTL),
            LeaseState::Gone,
            "not w2's"
        );
        let later = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            leases.expire(later, 2).as_slice(),
            [(_, Expired::Again)]
        ));
        assert_eq!(
            leases.renew("w1", "r/a/1", TTL),
            LeaseState::Gone,
            "w1 lost it"
        );
        let again = leases
            .lease("w2", short, Duration::ZERO)
            .await
            .expect("again");
        assert_eq!(again.delivered, 2);
        match leases.expire(later, 2).as_slice() {
            [(key, Expired::Lost(why))] => {
                assert_eq!(key, "r/a/1");
                assert!(why.contains("2 times"), "{why}");
            }
            _ => panic!("the second delivery was the last"),
        }
        assert!(leases.lease("w3", TTL, Duration::ZERO).await.is_none());
    }

    #[tokio::test]
    async fn a_cancelled_lease_is_told_at_its_next_renewal() {
        let leases = Leases::default();
        let _taken = leases.offer("r/a/1", Arc::from("{}"), []);
        leases
            .lease("w1", TTL, Duration::ZERO)
            .await
            .expect("leased");
        assert_eq!(leases.renew("w1", "r/a/1", TTL), LeaseState::Held);
        leases.cancel("r/a/1");
        assert_eq!(leases.renew("w1", "r/a/1", TTL), LeaseState::Cancelled);
        leases.release("r/a/1");
        assert_eq!(leases.renew("w1", "r/a/1", TTL), LeaseState::Gone);
    }
}
