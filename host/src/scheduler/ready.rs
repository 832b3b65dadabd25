//! The ready queue: which ready task runs next.
//!
//! Higher `priority` first; among equals, the task with the longest chain of work still
//! behind it (critical path) first; then file order. A task that cannot start now is not
//! kept here: it is parked on the resource it waits for (see `grants`), and comes back when
//! that resource is released.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    priority: i64,
    critical_path: u32,
    order: Reverse<usize>,
}

#[derive(Debug, Default)]
pub(super) struct ReadyQueue {
    heap: BinaryHeap<Key>,
}

impl ReadyQueue {
    pub(super) fn push(&mut self, task: usize, priority: i64, critical_path: u32) {
        self.heap.push(Key {
            priority,
            critical_path,
            order: Reverse(task),
        });
    }

    /// The best ready task.
    pub(super) fn pop(&mut self) -> Option<usize> {
        self.heap.pop().map(|k| k.order.0)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
        let order: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, [2, 1, 3, 0]);
        assert!(q.is_empty());
    }
}
