//! The memory limit of one task: the sum over every linear memory of its instance.
//!
//! Wasmtime asks before each growth (and before creating each memory); growth past the limit
//! is denied, which the guest sees as a failed `memory.grow`. The denial is remembered so
//! that a trap which follows (a Rust guest aborts when an allocation fails) is reported as
//! `memory-exceeded`, not as a mysterious trap.

/// Most elements a table may hold.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    total: u64,
    peak: u64,
    last_growth: u64,
    denied: Option<u64>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            last_growth: 0,
            denied: None,
        }
    }

    /// The most memory the instance held, in bytes.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// The total the guest asked for when it was first denied.
    pub(crate) fn denied(&self) -> Option<u64> {
        self.denied
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes the instance holds now.
    pub(crate) fn held(&self) -> u64 {
        self.total
    }

    /// A new limit, for a store instantiated ahead of its attempt (what it holds already
    /// stays counted).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let wanted = self.total.saturating_add(growth);
        if wanted > self.limit {
            self.denied.get_or_insert(wanted);
            return Ok(false);
        }
        self.total = wanted;
        self.last_growth = growth;
        self.peak = self.peak.max(self.total);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The growth we counted did not happen.
        self.total = self.total.saturating_sub(self.last_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn growth_is_summed_over_memories_and_denied_past_the_limit() {
        let mut l = MemoryLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 6 << 20, None).unwrap_or(false));
        // A second memory of the same instance counts against the same limit.
        assert!(!l.memory_growing(0, 6 << 20, None).unwrap_or(true));
        assert_eq!(l.denied(), Some(12 << 20));
        assert!(l.memory_growing(6 << 20, 10 << 20, None).unwrap_or(false));
        assert_eq!(l.peak(), 10 << 20);
    }
}
