//! The recycler: one thread that takes the engine's bookkeeping off the attempts' critical
//! path.
//!
//! - **Retiring** a finished attempt's store: dropping it resets its instance's memory in the
//!   pool (scanning for and zeroing the pages the guest dirtied) and returns its pool slot;
//!   that is a good part of an attempt's cost, and nothing that follows the attempt needs to
//!   wait for it. The instance permit goes back with the store, so the pool is never
//!   oversubscribed.
//! - **Warming**: instantiating a component ahead of the attempt that will need it, in a store
//!   of its own that no attempt has used. An attempt that finds one takes it, gives it its own
//!   sandbox, limits, emitter and capabilities, and calls `run` at once; each store still
//!   serves exactly one attempt. An agent keeps at most [`WARM_PER_AGENT`] warm instances,
//!   each holding a slot of the pool (only when one is free: warming never takes a slot an
//!   attempt waits for).
//!
//! The recycler helps only where there is a core to spare: while at least as many attempts
//! run as the machine has cores, or when it is behind (a queue of work waiting), attempts do
//! the work themselves, so a busy machine is never slower than without it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use super::cache::LoadedAgent;
use super::state::TaskState;
use crate::wit::SubAgent;

/// Warm instances an agent keeps at most.
pub(crate) const WARM_PER_AGENT: usize = 2;
/// Work items queued beyond which attempts do their own.
const BACKLOG: usize = 4;

/// A store instantiated ahead of its attempt.
pub(crate) struct Warm {
    pub(crate) store: Store<TaskState>,
    pub(crate) instance: SubAgent,
    pub(crate) permit: OwnedSemaphorePermit,
    /// Fuel its instantiation used (start functions): charged to the attempt that takes it,
    /// as an attempt that instantiates its own is charged.
    pub(crate) init_fuel: u64,
}

/// The warm instances of one component.
#[derive(Default)]
pub(crate) struct WarmPool {
    ready: Mutex<Vec<Warm>>,
    /// Warm instances asked for and not made yet.
    asked: AtomicUsize,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool").finish_non_exhaustive()
    }
}

impl WarmPool {
    /// A warm instance whose instantiation fits in `memory` bytes and `fuel`, if one is
    /// ready.
    pub(crate) fn take(&self, memory: u64, fuel: u64) -> Option<Warm> {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        let i = ready
            .iter()
            .position(|w| w.store.data().limiter.held() <= memory && w.init_fuel < fuel)?;
        Some(ready.swap_remove(i))
    }

    fn put(&self, warm: Warm) {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(warm);
    }

    fn len(&self) -> usize {
        self.ready.lock().map_or(0, |r| r.len())
    }
}

enum Work {
    Retire(Store<TaskState>, Option<OwnedSemaphorePermit>),
    Warm(Arc<LoadedAgent>),
    Stop,
}

/// The recycler thread and its queue.
pub(crate) struct Recycler {
    tx: Mutex<Sender<Work>>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    /// Attempts running now, engine-wide.
    active: AtomicUsize,
    cores: usize,
}

impl std::fmt::Debug for Recycler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recycler")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Recycler {
    pub(crate) fn start(engine: wasmtime::Engine, instances: Arc<Semaphore>) -> Self {
        let (tx, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new()
            .name("wasm-orch-recycler".into())
            .spawn({
                let queued = Arc::clone(&queued);
                move || work(&rx, &queued, &engine, &instances)
            })
            .map_err(|e| tracing::warn!("no recycler thread ({e}); attempts recycle their own"))
            .ok();
        Self {
            tx: Mutex::new(tx),
            queued,
            thread,
            active: AtomicUsize::new(0),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// An attempt begins (until the guard is dropped): with every core busy with attempts,
    /// the recycler stands aside.
    pub(crate) fn attempt(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }

    fn spare_core(&self) -> bool {
        self.active.load(Ordering::Relaxed) < self.cores
    }

    fn send(&self, work: Work) -> Result<(), Work> {
        if self.thread.is_none()
            || !self.spare_core()
            || self.queued.load(Ordering::Relaxed) >= BACKLOG
        {
            return Err(work);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(work).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            e.0
        })
    }

    /// Drops a finished attempt's store (and its instance permit) off the caller's path, or
    /// here when the recycler is behind.
    pub(crate) fn retire(&self, store: Store<TaskState>, permit: Option<OwnedSemaphorePermit>) {
        if let Err(work) = self.send(Work::Retire(store, permit)) {
            drop(work);
        }
    }

    /// Asks for a warm instance of `agent`, unless it has enough (or some are on the way).
    pub(crate) fn warm(&self, agent: &Arc<LoadedAgent>) {
        let pool = &agent.warm;
        if pool.len() + pool.asked.load(Ordering::Relaxed) >= WARM_PER_AGENT {
            return;
        }
        pool.asked.fetch_add(1, Ordering::Relaxed);
        if self.send(Work::Warm(Arc::clone(agent))).is_err() {
            pool.asked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A running attempt, counted while it lives.
pub(crate) struct Active<'a>(&'a Recycler);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Recycler {
    fn drop(&mut self) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Work::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn work(
    rx: &Receiver<Work>,
    queued: &AtomicUsize,
    engine: &wasmtime::Engine,
    instances: &Arc<Semaphore>,
) {
    while let Ok(work) = rx.recv() {
        queued.fetch_sub(1, Ordering::Relaxed);
        match work {
            Work::Retire(store, permit) => drop((store, permit)),
            Work::Warm(agent) => {
                agent.warm.asked.fetch_sub(1, Ordering::Relaxed);
                // Only a free slot: an attempt waiting for one goes first.
                let Ok(permit) = Arc::clone(instances).try_acquire_owned() else {
                    continue;
                };
                match instantiate(engine, &agent) {
                    Ok((store, instance, init_fuel)) => agent.warm.put(Warm {
                        store,
                        instance,
                        permit,
                        init_fuel,
                    }),
                    // The attempt that needs it instantiates it, and reports why it fails.
                    Err(e) => tracing::debug!("warming an instance failed: {e:#}"),
                }
            }
            Work::Stop => return,
        }
    }
}

/// Fuel a warm instantiation may use; a component that needs more is instantiated by its
/// attempts, under their own limits.
const INIT_FUEL: u64 = 100_000_000;

/// Instantiates `agent` in an idle store (see [`TaskState::idle`]); returns the fuel it used.
fn instantiate(
    engine: &wasmtime::Engine,
    agent: &LoadedAgent,
) -> wasmtime::Result<(Store<TaskState>, SubAgent, u64)> {
    let mut store = Store::new(engine, TaskState::idle());
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(INIT_FUEL)?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Continue(1)));
    let instance = block_on(agent.pre.instantiate_async(&mut store))?;
    let used = INIT_FUEL.saturating_sub(store.get_fuel()?);
    Ok((store, instance, used))
}

/// Polls a future to completion on this thread (instantiation never waits on I/O).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
