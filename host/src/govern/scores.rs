//! What the runtime learns about each agent: moving averages of its latency and success rate,
//! kept across runs, used to choose among agents that provide the same capability.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::report::AgentScore;

/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.3;

#[derive(Debug, Default)]
pub(crate) struct Scores {
    agents: Mutex<HashMap<String, AgentScore>>,
}

impl Scores {
    pub(crate) fn get(&self, agent: &str) -> AgentScore {
        self.lock().get(agent).copied().unwrap_or_default()
    }

    pub(crate) fn record(&self, agent: &str, latency: Duration, succeeded: bool) {
        let mut agents = self.lock();
        let score = agents.entry(agent.to_owned()).or_default();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let success = if succeeded { 1.0 } else { 0.0 };
        if score.attempts == 0 {
            score.latency_ms = latency_ms;
            score.success_rate = success;
        } else {
            score.latency_ms += ALPHA * (latency_ms - score.latency_ms);
            score.success_rate += ALPHA * (success - score.success_rate);
        }
        score.attempts += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentScore>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_slowness_lower_the_score() {
        let scores = Scores::default();
        for _ in 0..5 {
            scores.record("good", Duration::from_millis(10), true);
            scores.record("slow", Duration::from_millis(900), true);
            scores.record("flaky", Duration::from_millis(10), false);
        }
        let (good, slow, flaky) = (scores.get("good"), scores.get("slow"), scores.get("flaky"));
        assert!(good.value() > slow.value() && slow.value() > flaky.value());
        assert_eq!(good.attempts, 5);
        assert!(flaky.success_rate < 0.01);
        assert!(
            scores.get("new").value() >= good.value(),
            "untried agents get tried"
        );
    }
}
