//! The disk quota of one task attempt: how many bytes it may write into its sandbox.
//!
//! Fuel does not bound disk use (one `write` of a large buffer costs a handful of
//! instructions), so the audited filesystem (`fs_audit`) charges every write against this
//! quota before it reaches the disk: `write` at an offset, the output streams of
//! `write-via-stream` and `append-via-stream`, the growth of `set-size`, and a block for every
//! file, directory or link created. What is refused is refused as a full disk would be
//! (`insufficient-space`, `ENOSPC` to the guest), and audited. The quota counts bytes written,
//! not bytes kept: rewriting a file counts again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};

/// What creating a file, a directory or a link costs: one block.
pub(crate) const ENTRY_COST: u64 = 4096;

/// Bytes an attempt may still write. Shared by its filesystem and its open output streams.
#[derive(Debug)]
pub(crate) struct DiskQuota {
    limit: u64,
    used: AtomicU64,
}

impl DiskQuota {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Takes `bytes` from the quota, or nothing when they do not fit.
    pub(crate) fn charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&u| u <= self.limit)
            })
            .is_ok()
    }

    /// Bytes written so far.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Records a refusal of `what` (`bytes` more than the quota allows).
    pub(crate) fn refuse(&self, events: &SharedEmitter, what: &str, bytes: u64) {
        lock(events).audit(
            AuditResource::Quota,
            &format!("disk {what}"),
            Decision::Denied,
            &format!(
                "{bytes} more bytes would pass the attempt's disk quota of {} ({} written)",
                crate::config::format_size(self.limit),
                self.used()
            ),
        );
    }
}

/// The error a guest sees when its disk quota is spent: a full disk.
pub(crate) fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

/// An output stream onto a file whose writes are charged to the attempt's quota.
pub(crate) struct QuotaStream {
    inner: Box<dyn OutputStream>,
    quota: Arc<DiskQuota>,
    events: SharedEmitter,
}

impl QuotaStream {
    pub(crate) fn new(
        inner: Box<dyn OutputStream>,
        quota: Arc<DiskQuota>,
        events: SharedEmitter,
    ) -> Self {
        Self {
            inner,
            quota,
            events,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let n = bytes.len() as u64;
        if !self.quota.charge(n) {
            self.quota.refuse(&self.events, "write (stream)", n);
            return Err(StreamError::LastOperationFailed(no_space().into()));
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_that_does_not_fit_takes_nothing() {
        let quota = DiskQuota::new(10);
        assert!(quota.charge(6));
        assert!(!quota.charge(5));
        assert_eq!(quota.used(), 6);
        assert!(quota.charge(4));
        assert!(!quota.charge(1));
        assert!(!quota.charge(u64::MAX));
        assert_eq!(quota.used(), 10);
    }
}
