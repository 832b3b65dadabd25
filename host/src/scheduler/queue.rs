//! The ready queue: which ready task runs next.
//!
//! Higher `priority` first; among equals, the task with the longest chain of work still
//! behind it (critical path) first; then file order. A task that cannot start now (its mutex
//! group is full, its agents are busy, its tenant is at its limit) is set aside, without
//! blocking the tasks behind it, until something is released.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    priority: i64,
    critical_path: u32,
    order: Reverse<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    heap: BinaryHeap<Key>,
    waiting: Vec<Key>,
}

impl ReadyQueue {
    pub(crate) fn push(&mut self, task: usize, priority: i64, critical_path: u32) {
        self.heap.push(Key {
            priority,
            critical_path,
            order: Reverse(task),
        });
    }

    /// The best ready task for which `can_start` holds; the better ones that cannot start
    /// now wait until [`ReadyQueue::release`].
    pub(crate) fn pop(&mut self, mut can_start: impl FnMut(usize) -> bool) -> Option<usize> {
        while let Some(key) = self.heap.pop() {
            if can_start(key.order.0) {
                return Some(key.order.0);
            }
            self.waiting.push(key);
        }
        None
    }

    /// Puts a task back (it was popped but could not start after all).
    pub(crate) fn put_back(&mut self, task: usize, priority: i64, critical_path: u32) {
        self.waiting.push(Key {
            priority,
            critical_path,
            order: Reverse(task),
        });
    }

    /// Something was released: the waiting tasks compete again.
    pub(crate) fn release(&mut self) {
        self.heap.extend(self.waiting.drain(..));
    }

    /// Whether any task is ready (able to start now or not).
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.waiting.is_empty()
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
        let order: Vec<usize> = std::iter::from_fn(|| q.pop(|_| true)).collect();
        assert_eq!(order, [2, 1, 3, 0]);
    }

    #[test]
    fn tasks_that_cannot_start_wait_without_blocking_others() {
        let mut q = ReadyQueue::default();
        q.push(0, 5, 1);
        q.push(1, 0, 1);
        assert_eq!(q.pop(|t| t != 0), Some(1));
        assert_eq!(q.pop(|t| t != 0), None);
        assert!(!q.is_empty());
        q.release();
        assert_eq!(q.pop(|_| true), Some(0));
        assert!(q.is_empty());
    }
}
