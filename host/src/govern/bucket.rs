//! A fuel token bucket: a tenant's (or an agent's) fuel rate.
//!
//! Running guests draw from it on every epoch tick (by the fuel they burned since the last
//! one); when it is empty they sleep, as an async yield, until it has refilled. So busy tenants
//! share CPU in the ratio of their rates, and a tenant that spins forever cannot take more
//! than its rate from anyone else.

use crate::model::limits::FuelRate;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a running guest draws its fuel from: a bucket here, or one another process keeps (a
/// worker's attempt draws from its coordinator's).
pub(crate) trait FuelDraw: Send + Sync + std::fmt::Debug {
    /// Takes `fuel`; how long the guest must wait now, if the account is in debt.
    fn draw(&self, fuel: u64) -> Option<Duration>;

    /// How long until the account is out of debt, if it is in debt now: a guest about to
    /// start waits this long first, so that short tasks (which may never see an epoch tick)
    /// cannot run past the rate either.
    fn debt(&self) -> Option<Duration> {
        self.draw(0)
    }
}

impl FuelDraw for FuelBucket {
    fn draw(&self, fuel: u64) -> Option<Duration> {
        FuelBucket::draw(self, fuel)
    }
}

/// A token bucket: refills at a steady rate, up to a burst; draws may put it in debt.
#[derive(Debug)]
pub(crate) struct FuelBucket {
    rate: FuelRate,
    per_second: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Fuel available now; negative when guests have drawn more than was there (they then
    /// wait until it is back to zero).
    level: f64,
    refilled: Instant,
}

impl FuelBucket {
    pub(crate) fn new(rate: FuelRate) -> Self {
        Self::with_rate(rate.per_second as f64, rate.burst as f64, rate)
    }

    /// A bucket of calls (tool rate limits): `per_second` may be fractional.
    pub(crate) fn calls(per_second: f64) -> Self {
        let burst = per_second.max(1.0);
        let rate = FuelRate {
            per_second: per_second.ceil() as u64,
            burst: burst as u64,
        };
        Self::with_rate(per_second, burst, rate)
    }

    fn with_rate(per_second: f64, burst: f64, rate: FuelRate) -> Self {
        Self {
            rate,
            per_second,
            burst,
            state: Mutex::new(State {
                level: burst,
                refilled: Instant::now(),
            }),
        }
    }

    pub(crate) fn rate(&self) -> FuelRate {
        self.rate
    }

    /// Takes `fuel` from the bucket; returns how long the guest must wait for the bucket to be
    /// back to zero, if it is now in debt.
    pub(crate) fn draw(&self, fuel: u64) -> Option<Duration> {
        self.draw_at(fuel, Instant::now())
    }

    fn draw_at(&self, fuel: u64, now: Instant) -> Option<Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.refilled = now;
        // Draws pay for fuel already burned, during the time that refilled the bucket: the
        // refill pays for it first, and only what is left over is capped at the burst.
        let refill = elapsed * self.per_second;
        s.level = (s.level + refill - fuel as f64).min(self.burst);
        if s.level >= 0.0 || self.per_second <= 0.0 {
            return None;
        }
        let wait = Duration::try_from_secs_f64(-s.level / self.per_second).unwrap_or(MAX_WAIT);
        Some(wait.min(MAX_WAIT))
    }
}

/// The longest a single draw makes anyone wait (however deep the debt, however slow the rate);
/// the next draw asks again.
const MAX_WAIT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_past_the_burst_means_waiting_for_the_refill() {
        let rate = FuelRate {
            per_second: 1_000,
            burst: 500,
        };
        let bucket = FuelBucket::new(rate);
        let t0 = bucket.state.lock().expect("lock").refilled;
        assert_eq!(bucket.draw_at(400, t0), None);
        // 100 left; drawing 350 leaves a debt of 250: a quarter of a second.
        assert_eq!(bucket.draw_at(350, t0), Some(Duration::from_millis(250)));
        // After waiting that long the debt is paid; idle for a second, it refills only up to
        // the burst.
        assert_eq!(bucket.draw_at(0, t0 + Duration::from_millis(250)), None);
        assert_eq!(bucket.draw_at(0, t0 + Duration::from_millis(1250)), None);
        assert_eq!(
            bucket.draw_at(501, t0 + Duration::from_millis(1250)),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn a_huge_debt_at_a_tiny_rate_is_a_long_wait_not_a_panic() {
        let bucket = FuelBucket::calls(1e-300);
        assert_eq!(bucket.draw(1), None, "the burst");
        assert_eq!(bucket.draw(u64::MAX), Some(MAX_WAIT));
    }

    #[test]
    fn a_busy_guest_gets_the_rate_on_average() {
        // A guest burning 10 fuel per ms, drawing every 10 ms and sleeping as told.
        let bucket = FuelBucket::new(FuelRate {
            per_second: 2_000,
            burst: 0,
        });
        let mut now = bucket.state.lock().expect("lock").refilled;
        let mut burned = 0u64;
        let end = now + Duration::from_secs(10);
        while now < end {
            now += Duration::from_millis(10);
            burned += 100;
            if let Some(wait) = bucket.draw_at(100, now) {
                now += wait;
            }
        }
        let rate = burned as f64 / 10.0;
        assert!((1_900.0..=2_100.0).contains(&rate), "{rate} fuel/s");
    }
}
