//! Choosing the agent of an attempt.
//!
//! A task that names an agent always gets it. A task that names a capability gets, among the
//! agents that have it (and that its tenant may use): one with a free slot, the least loaded,
//! then the best learned score (success rate discounted by latency), then the one given the
//! fewest tasks of this run so far; a retry avoids the agents that already failed the task
//! while another one remains.

use super::AgentPlan;
use crate::govern::Governor;

/// The chosen agent, or `None` when every candidate is busy.
pub(crate) fn choose(
    candidates: &[usize],
    failed: &[usize],
    agents: &[AgentPlan],
    assigned: &[u64],
    governor: &Governor,
) -> Option<usize> {
    let fresh: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|a| !failed.contains(a))
        .collect();
    let pool = if fresh.is_empty() { candidates } else { &fresh };
    pool.iter()
        .copied()
        .filter_map(|a| {
            let plan = &agents[a];
            let used = governor.slots_used(&plan.slot_key());
            let capacity = plan.max_concurrency.unwrap_or(usize::MAX);
            if used >= capacity {
                return None;
            }
            let load = if capacity == usize::MAX {
                0.0
            } else {
                used as f64 / capacity as f64
            };
            // Scores are compared coarsely so that noise in latency does not beat an even
            // spread of work.
            let score = (governor.score(&plan.key).value() * 20.0).round();
            Some((a, load, score))
        })
        .min_by(|x, y| {
            x.1.total_cmp(&y.1)
                .then(y.2.total_cmp(&x.2))
                .then(assigned[x.0].cmp(&assigned[y.0]))
                .then(x.0.cmp(&y.0))
        })
        .map(|(a, _, _)| a)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::workflow::Limits;

    fn plan(name: &str, max: Option<usize>) -> AgentPlan {
        AgentPlan {
            name: name.into(),
            key: format!("{name}@test"),
            limits: Limits::default(),
            max_concurrency: max,
        }
    }

    #[test]
    fn free_then_least_loaded_then_best_score_then_fewest_assigned() {
        let g = Governor::new(HashMap::new());
        let agents = [plan("a", Some(1)), plan("b", Some(2)), plan("c", Some(2))];
        let all = [0, 1, 2];
        // Nothing known: fewest assigned, then file order.
        assert_eq!(choose(&all, &[], &agents, &[1, 0, 0], &g), Some(1));
        // `a` is busy; `b` half loaded, `c` idle.
        assert!(g.try_slot(&agents[0].slot_key(), 1));
        assert!(g.try_slot(&agents[1].slot_key(), 2));
        assert_eq!(choose(&all, &[], &agents, &[0, 0, 0], &g), Some(2));
        // Equally loaded: the better score wins over fewer assignments.
        assert!(g.try_slot(&agents[2].slot_key(), 2));
        for _ in 0..5 {
            g.record(&agents[1].key, Duration::from_millis(5), true);
            g.record(&agents[2].key, Duration::from_millis(5), false);
        }
        assert_eq!(choose(&all, &[], &agents, &[0, 9, 0], &g), Some(1));
    }

    #[test]
    fn a_retry_avoids_agents_that_failed_unless_none_is_left() {
        let g = Governor::new(HashMap::new());
        let agents = [plan("a", None), plan("b", None)];
        assert_eq!(choose(&[0, 1], &[0], &agents, &[0, 5], &g), Some(1));
        assert_eq!(choose(&[0, 1], &[0, 1], &agents, &[0, 5], &g), Some(0));
        assert!(g.try_slot(&agents[1].slot_key(), 1));
        let busy = [
            plan("a", None),
            AgentPlan {
                max_concurrency: Some(1),
                ..plan("b", None)
            },
        ];
        assert_eq!(choose(&[1], &[], &busy, &[0, 0], &g), None);
    }
}
