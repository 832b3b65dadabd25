//! The `files` capability: a task's filesystem, and nothing beyond it.
//!
//! - policy: a task gets its own working directory (read-write), its declared inputs (staged,
//!   read-only) and the working directories of the tasks it depends on (read-only), or no
//!   filesystem at all (`workdir = false`); every write is charged to the attempt's disk quota
//!   before it reaches the disk;
//! - host implementation: wasmtime-wasi's `wasi:filesystem/types`, wrapped (`host`);
//! - audit: every path refused (climbing out, absolute, through a symlink, into a read-only
//!   directory) and every write over the quota is an audit record of the task.
//!
//! What a task leaves in its working directory are its artifacts (listed, and scrubbed of the
//! run's secrets, by `stage::artifacts`).

mod dirs;
mod disk;
mod host;
mod stage;

pub(crate) use self::dirs::{RunDir, TaskFiles};
pub(crate) use self::disk::DiskQuota;
pub(crate) use self::host::{AuditedFs, add_to_linker};
pub(crate) use self::stage::{artifacts, is_empty};
