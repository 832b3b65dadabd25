//! What a run measures while it schedules: parallelism over time, attempts, retries, blocked
//! tasks, and how busy each agent was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::report::{AgentUsage, Parallelism};

/// The most points kept of the parallelism timeline (older ones are merged).
const MAX_POINTS: usize = 512;

#[derive(Debug)]
pub(crate) struct Meter {
    start: Instant,
    running: usize,
    /// (milliseconds since start, tasks running from then on).
    timeline: Vec<(f64, usize)>,
    max: usize,
    /// Time-weighted sum of `running`, for the mean.
    area: f64,
    last_change: Instant,
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    pub(crate) blocked: u64,
    pub(crate) failures: u64,
    agents: BTreeMap<String, AgentUsage>,
}

impl Meter {
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            running: 0,
            timeline: vec![(0.0, 0)],
            max: 0,
            area: 0.0,
            last_change: start,
            attempts: 0,
            retries: 0,
            blocked: 0,
            failures: 0,
            agents: BTreeMap::new(),
        }
    }

    fn set_running(&mut self, running: usize) {
        let now = Instant::now();
        self.area += self.running as f64 * now.duration_since(self.last_change).as_secs_f64();
        self.last_change = now;
        self.running = running;
        self.max = self.max.max(running);
        let t = now.duration_since(self.start).as_secs_f64() * 1000.0;
        self.timeline.push((t, running));
        if self.timeline.len() > MAX_POINTS {
            // Keep the first point and every other one after it.
            let mut i = 0;
            self.timeline.retain(|_| {
                i += 1;
                i == 1 || i % 2 == 0
            });
        }
    }

    /// An attempt started: `retry`, after a failed one (not a loop's next iteration).
    pub(crate) fn started(&mut self, retry: bool) {
        self.attempts += 1;
        if retry {
            self.retries += 1;
        }
        self.set_running(self.running + 1);
    }

    pub(crate) fn ended(&mut self, agent: &str, latency: Duration, succeeded: bool) {
        self.set_running(self.running.saturating_sub(1));
        if !succeeded {
            self.failures += 1;
        }
        let usage = self.agents.entry(agent.to_owned()).or_default();
        usage.attempts += 1;
        if succeeded {
            usage.succeeded += 1;
        }
        usage.busy_ms += latency.as_secs_f64() * 1000.0;
    }

    /// Parallelism, and each agent's usage with its utilisation over `duration` given its
    /// capacity (`capacity(name)`: how many of its tasks may run at once in this run).
    pub(crate) fn finish(
        mut self,
        duration: Duration,
        capacity: impl Fn(&str) -> usize,
    ) -> (Parallelism, BTreeMap<String, AgentUsage>) {
        self.set_running(self.running);
        let secs = duration.as_secs_f64();
        let parallelism = Parallelism {
            max: self.max,
            mean: if secs > 0.0 { self.area / secs } else { 0.0 },
            timeline: self.timeline,
        };
        let ms = secs * 1000.0;
        for (name, usage) in &mut self.agents {
            let slots = capacity(name).max(1) as f64;
            usage.utilisation = if ms > 0.0 {
                (usage.busy_ms / (ms * slots)).min(1.0)
            } else {
                0.0
            };
        }
        (parallelism, self.agents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_and_usage_are_counted() {
        let mut m = Meter::new(Instant::now());
        m.started(false);
        m.started(false);
        m.started(true);
        m.ended("a", Duration::from_millis(100), true);
        m.ended("a", Duration::from_millis(100), false);
        m.ended("b", Duration::from_millis(50), true);
        assert_eq!((m.attempts, m.retries, m.failures), (3, 1, 1));
        let (p, agents) = m.finish(Duration::from_millis(200), |_| 1);
        assert_eq!(p.max, 3);
        assert_eq!(agents["a"].attempts, 2);
        assert_eq!(agents["a"].succeeded, 1);
        assert!((agents["a"].utilisation - 1.0).abs() < 1e-9);
        assert!((agents["b"].utilisation - 0.25).abs() < 1e-9);
    }
}
