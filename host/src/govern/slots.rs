//! Slots: how many attempts may hold a resource at once (a run's concurrency, a mutex group,
//! a tenant's or an agent's concurrency), taken as RAII guards and waited for on wait lists.
//!
//! A [`SlotGuard`] gives its slot back when it is dropped, on every exit path (an attempt that
//! ends, fails to start, panics or is cancelled). Whoever finds a pool full registers a
//! [`Waiter`] in the same critical section, so no release can slip between the look and the
//! registration (no lost wake-up, no polling); a release signals the waiters of that pool
//! only, each with the tag it registered under, so a woken run knows exactly which of its
//! parked tasks may go on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A run's wake-up: the tags of the resources released since it last looked, and a notify.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: Mutex<Vec<u32>>,
    notify: Notify,
}

impl Signal {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn fire(&self, tag: u32) {
        let mut fired = self.fired.lock().unwrap_or_else(|e| e.into_inner());
        if !fired.contains(&tag) {
            fired.push(tag);
        }
        drop(fired);
        self.notify.notify_one();
    }

    /// The tags fired since the last call.
    pub(crate) fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.fired.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Completes once a tag is fired (at once if one was fired since the last wait).
    pub(crate) async fn fired(&self) {
        self.notify.notified().await;
    }
}

/// Who waits for a pool, and under which tag.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    pub(crate) signal: Arc<Signal>,
    pub(crate) tag: u32,
}

impl Waiter {
    /// Whether both are the same run's waiter for the same resource.
    pub(crate) fn same(&self, other: &Waiter) -> bool {
        Arc::ptr_eq(&self.signal, &other.signal) && self.tag == other.tag
    }

    /// Tells the waiter its resource was released.
    pub(crate) fn wake(&self) {
        self.signal.fire(self.tag);
    }
}

/// A number of slots, shared by whoever holds the pool.
#[derive(Debug)]
pub(crate) struct SlotPool {
    capacity: AtomicUsize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    used: usize,
    waiters: Vec<Waiter>,
}

impl SlotPool {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: AtomicUsize::new(capacity),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the capacity (a registry may declare an agent's again); waiters look again.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        if self.capacity.swap(capacity, Ordering::Relaxed) != capacity {
            let waiters = std::mem::take(&mut self.lock().waiters);
            for w in waiters {
                w.wake();
            }
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Slots taken now.
    pub(crate) fn used(&self) -> usize {
        self.lock().used
    }

    /// A slot, if one is free.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        let mut state = self.lock();
        self.take(&mut state)
    }

    /// A slot, if one is free; otherwise `waiter` is signalled when one is released.
    pub(crate) fn acquire_or_wait(self: &Arc<Self>, waiter: &Waiter) -> Option<SlotGuard> {
        let mut state = self.lock();
        let slot = self.take(&mut state);
        if slot.is_none() && !state.waiters.iter().any(|w| w.same(waiter)) {
            state.waiters.push(waiter.clone());
        }
        slot
    }

    fn take(self: &Arc<Self>, state: &mut PoolState) -> Option<SlotGuard> {
        (state.used < self.capacity()).then(|| {
            state.used += 1;
            SlotGuard {
                pool: Arc::clone(self),
            }
        })
    }

    fn release(&self) {
        let waiters = {
            let mut state = self.lock();
            state.used = state.used.saturating_sub(1);
            std::mem::take(&mut state.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

/// One slot of a pool, given back when dropped.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    pool: Arc<SlotPool>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.pool.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_come_back_when_dropped() {
        let pool = SlotPool::new(2);
        let a = pool.try_acquire().expect("first");
        let b = pool.try_acquire().expect("second");
        assert!(pool.try_acquire().is_none());
        assert_eq!(pool.used(), 2);
        drop(a);
        let c = pool.try_acquire().expect("freed by the drop");
        drop((b, c));
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn a_release_signals_only_the_waiters_of_its_pool_with_their_tags() {
        let busy = SlotPool::new(1);
        let other = SlotPool::new(1);
        let held = busy.try_acquire().expect("a slot");
        let _other_held = other.try_acquire().expect("a slot");
        let run = Signal::new();
        let waiter = Waiter {
            signal: Arc::clone(&run),
            tag: 7,
        };
        assert!(busy.acquire_or_wait(&waiter).is_none());
        assert!(busy.acquire_or_wait(&waiter).is_none(), "registered once");
        assert!(
            other
                .acquire_or_wait(&Waiter {
                    signal: Arc::clone(&run),
                    tag: 9,
                })
                .is_none()
        );
        assert!(run.take().is_empty(), "nothing released yet");
        drop(held);
        assert_eq!(run.take(), [7], "only the released pool's tag");
        assert!(busy.acquire_or_wait(&waiter).is_some());
    }

    #[tokio::test]
    async fn a_release_between_look_and_wait_is_not_lost() {
        let pool = SlotPool::new(1);
        let held = pool.try_acquire().expect("a slot");
        let run = Signal::new();
        let waiter = Waiter {
            signal: Arc::clone(&run),
            tag: 1,
        };
        assert!(pool.acquire_or_wait(&waiter).is_none());
        drop(held); // before anyone awaits the signal
        tokio::time::timeout(std::time::Duration::from_secs(5), run.fired())
            .await
            .expect("the permit was kept");
        assert_eq!(run.take(), [1]);
    }
}
