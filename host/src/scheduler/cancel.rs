//! Cancellation: once the run is cancelled nothing more starts, pending retries are dropped,
//! and running attempts end promptly through their cancellation tokens (children of the
//! run's), as `cancelled`. What never ran is settled as cancelled when the run finishes.
//! A cancelled attempt is not a failure: it is not retried, not counted against the error
//! budget, and says nothing about its agent's learned score.

use super::Scheduler;
use super::retry::Timer;

impl Scheduler<'_> {
    pub(super) fn cancel(&mut self) {
        self.cancelled = true;
        self.timers
            .retain(|std::cmp::Reverse((_, t))| !matches!(t, Timer::Retry(_)));
        self.pending_diagnoses.clear();
    }
}
