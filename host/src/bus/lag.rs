//! `agent.statebus.lag_ms`: the delay from an event's publication to its receipt by a
//! subscriber, over every event every subscriber reads, kept in bounded memory.

use std::sync::Mutex;
use std::time::Duration;

use crate::model::report::Lag;

/// Samples kept for the percentiles; past it, every other one is dropped and only every
/// other new one kept (so the kept samples stay spread over the whole run).
const KEEP: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct LagRecorder {
    inner: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    kept: Vec<f64>,
    seen: u64,
    /// Keep one sample in `stride`.
    stride: u64,
    max: f64,
}

impl LagRecorder {
    pub(super) fn record(&self, lags: impl Iterator<Item = Duration>) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for lag in lags {
            let ms = lag.as_secs_f64() * 1000.0;
            s.max = s.max.max(ms);
            s.seen += 1;
            let stride = s.stride.max(1);
            if s.seen.is_multiple_of(stride) {
                s.kept.push(ms);
                if s.kept.len() >= KEEP {
                    let mut i = 0;
                    s.kept.retain(|_| {
                        i += 1;
                        i % 2 == 0
                    });
                    s.stride = stride * 2;
                }
            }
        }
    }

    pub(super) fn summary(&self) -> Lag {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut lag = Lag::from_samples(s.kept.clone());
        lag.samples = usize::try_from(s.seen).unwrap_or(usize::MAX);
        lag.max = s.max;
        lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_stay_representative_in_bounded_memory() {
        let r = LagRecorder::default();
        r.record((0..100_000).map(|i| Duration::from_micros(i % 1000)));
        let lag = r.summary();
        assert_eq!(lag.samples, 100_000);
        assert!(r.inner.lock().map(|s| s.kept.len()).unwrap_or(0) < KEEP);
        assert!((lag.p50 - 0.5).abs() < 0.05, "{lag:?}");
        assert!(lag.p99 > 0.95 && lag.max >= 0.999, "{lag:?}");
    }
}
