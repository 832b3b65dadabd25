//! Choosing the agent of an attempt.
//!
//! A task that names an agent always gets it. A task that names a capability gets, among the
//! agents that have it (and that its tenant may use): one with a free slot, the least loaded,
//! then the best learned score (success rate discounted by latency), then the one given the
//! fewest tasks of this run so far; a retry avoids the agents that already failed the task
//! while another one remains.

use std::sync::Arc;

use crate::govern::SlotPool;

/// The chosen agent, or `None` when every candidate is busy. `slots[a]`: agent `a`'s
/// runtime-wide concurrency (`None`: unlimited); `score(a)`: its learned score.
pub(super) fn choose(
    candidates: &[usize],
    failed: &[usize],
    slots: &[Option<Arc<SlotPool>>],
    assigned: &[u64],
    score: &dyn Fn(usize) -> f64,
) -> Option<usize> {
    if let [only] = candidates {
        // The common case: a task that names its agent.
        let busy = slots
            .get(*only)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.used() >= p.capacity());
        return (!busy).then_some(*only);
    }
    let fresh = candidates.iter().any(|a| !failed.contains(a));
    candidates
        .iter()
        .copied()
        .filter(|a| !fresh || !failed.contains(a))
        .filter_map(|a| {
            let load = match slots.get(a).and_then(Option::as_ref) {
                Some(pool) => {
                    let (used, capacity) = (pool.used(), pool.capacity());
                    if used >= capacity {
                        return None;
                    }
                    used as f64 / capacity.max(1) as f64
                }
                None => 0.0,
            };
            // Scores are compared coarsely so that noise in latency does not beat an even
            // spread of work.
            let score = (score(a) * 20.0).round();
            Some((a, load, score))
        })
        .min_by(|x, y| {
            x.1.total_cmp(&y.1)
                .then(y.2.total_cmp(&x.2))
                .then(assigned.get(x.0).cmp(&assigned.get(y.0)))
                .then(x.0.cmp(&y.0))
        })
        .map(|(a, _, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(caps: &[Option<usize>]) -> Vec<Option<Arc<SlotPool>>> {
        caps.iter().map(|c| c.map(SlotPool::new)).collect()
    }

    #[test]
    fn free_then_least_loaded_then_best_score_then_fewest_assigned() {
        let slots = pools(&[Some(1), Some(2), Some(2)]);
        let all = [0, 1, 2];
        let even = |_| 1.0;
        // Nothing known: fewest assigned, then file order.
        assert_eq!(choose(&all, &[], &slots, &[1, 0, 0], &even), Some(1));
        // `a` is busy; `b` half loaded, `c` idle.
        let _a = slots[0].as_ref().and_then(|p| p.try_acquire());
        let _b = slots[1].as_ref().and_then(|p| p.try_acquire());
        assert_eq!(choose(&all, &[], &slots, &[0, 0, 0], &even), Some(2));
        // Equally loaded: the better score wins over fewer assignments.
        let _c = slots[2].as_ref().and_then(|p| p.try_acquire());
        let scores = |a| if a == 1 { 1.0 } else { 0.1 };
        assert_eq!(choose(&all, &[], &slots, &[0, 9, 0], &scores), Some(1));
    }

    #[test]
    fn a_retry_avoids_agents_that_failed_unless_none_is_left() {
        let slots = pools(&[None, None]);
        let even = |_| 1.0;
        assert_eq!(choose(&[0, 1], &[0], &slots, &[0, 5], &even), Some(1));
        assert_eq!(choose(&[0, 1], &[0, 1], &slots, &[0, 5], &even), Some(0));
        let busy = pools(&[None, Some(1)]);
        let _held = busy[1].as_ref().and_then(|p| p.try_acquire());
        assert_eq!(choose(&[1], &[], &busy, &[0, 0], &even), None);
    }
}
