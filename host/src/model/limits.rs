//! What an attempt may use: per-attempt limits, budgets that only shrink (tenant, workflow,
//! task), and fuel rates.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Per-task resource limits of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limits {
    /// Fuel (roughly, WebAssembly instructions) one attempt may use.
    pub fuel: u64,
    /// Bytes of linear memory, summed over the instance's memories.
    pub memory: u64,
    /// Wall-clock time of one attempt, host calls included.
    #[serde(with = "super::time::millis_serde")]
    pub timeout: Duration,
    /// Bytes of the output.
    pub max_output: u64,
    /// Bytes one attempt may write into its sandbox (files, directories and links created
    /// count a block each).
    pub disk: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory: 256 << 20,
            timeout: Duration::from_secs(60),
            max_output: 1 << 20,
            disk: 256 << 20,
        }
    }
}

/// A budget. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Budget {
    /// Fuel, over all attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock time: a tenant's is the total running time of its tasks; a workflow's is a
    /// deadline from the start of the run.
    #[serde(
        default,
        with = "super::time::millis_opt_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_time: Option<Duration>,
    /// Linear memory held by running tasks at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

impl Budget {
    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    /// This budget, never more than `parent`.
    pub fn within(self, parent: Budget) -> Budget {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Budget {
            fuel: min(self.fuel, parent.fuel),
            wall_time: min(self.wall_time, parent.wall_time),
            memory: min(self.memory, parent.memory),
        }
    }
}

/// A fuel rate: sustained fuel per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuelRate {
    pub per_second: u64,
    pub burst: u64,
}

/// What a run's messages may be (`[workflow.messages]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageLimits {
    /// The largest body, in bytes.
    pub max_bytes: usize,
    /// Messages a task may send over all its attempts.
    pub max_sent: u64,
    /// Messages a task may send in any second.
    pub per_second: u32,
    /// Unread messages an inbox holds; a message to a full inbox is refused.
    pub inbox: usize,
    /// Bytes of unread messages all the run's inboxes hold together (what a run's messages
    /// may take of the host's memory).
    pub max_unread_bytes: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 10,
            max_sent: 1_000,
            per_second: 100,
            inbox: 256,
            max_unread_bytes: 64 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_shrink_toward_the_parent() {
        let parent = Budget {
            fuel: Some(10),
            wall_time: None,
            memory: Some(5),
        };
        let child = Budget {
            fuel: Some(20),
            wall_time: Some(Duration::from_secs(1)),
            memory: None,
        };
        assert_eq!(
            child.within(parent),
            Budget {
                fuel: Some(10),
                wall_time: Some(Duration::from_secs(1)),
                memory: Some(5)
            }
        );
    }
}
