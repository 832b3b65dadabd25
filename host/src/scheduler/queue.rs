//! The ready queue: which ready task runs next.
//!
//! Higher `priority` first; among equals, the task with the longest chain of work still
//! behind it (critical path) first; then file order. A task whose mutex is held waits,
//! parked, until the mutex is released — without blocking other ready tasks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    priority: i64,
    critical_path: u32,
    order: Reverse<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    heap: BinaryHeap<Key>,
    parked: HashMap<String, Vec<Key>>,
}

impl ReadyQueue {
    pub(crate) fn push(&mut self, task: usize, priority: i64, critical_path: u32) {
        self.heap.push(Key {
            priority,
            critical_path,
            order: Reverse(task),
        });
    }

    /// The best ready task whose mutex (`mutex_of`) is not in `held`.
    pub(crate) fn pop<'a>(
        &mut self,
        mutex_of: impl Fn(usize) -> Option<&'a str>,
        held: &HashSet<String>,
    ) -> Option<usize> {
        while let Some(key) = self.heap.pop() {
            let task = key.order.0;
            match mutex_of(task) {
                Some(m) if held.contains(m) => {
                    self.parked.entry(m.to_owned()).or_default().push(key)
                }
                _ => return Some(task),
            }
        }
        None
    }

    /// `mutex` was released: the tasks waiting for it compete again.
    pub(crate) fn release(&mut self, mutex: &str) {
        if let Some(keys) = self.parked.remove(mutex) {
            self.heap.extend(keys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_critical_path_then_file_order() {
        let mut q = ReadyQueue::default();
        q.push(0, 0, 1);
        q.push(1, 0, 5);
        q.push(2, 10, 1);
        q.push(3, 0, 5);
        let held = HashSet::new();
        let order: Vec<usize> = std::iter::from_fn(|| q.pop(|_| None, &held)).collect();
        assert_eq!(order, [2, 1, 3, 0]);
    }

    #[test]
    fn tasks_behind_a_held_mutex_wait_without_blocking_others() {
        let mut q = ReadyQueue::default();
        q.push(0, 5, 1);
        q.push(1, 0, 1);
        let mutex = |t: usize| (t == 0).then_some("db");
        let mut held = HashSet::from(["db".to_owned()]);
        assert_eq!(q.pop(mutex, &held), Some(1));
        assert_eq!(q.pop(mutex, &held), None);
        held.clear();
        q.release("db");
        assert_eq!(q.pop(mutex, &held), Some(0));
    }
}
