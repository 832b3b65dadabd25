//! What a task's store holds: its WASI context, its limiter and the host state its imports
//! see. One per task attempt, never reused.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::blackboard::BoardScope;
use super::disk::DiskQuota;
use super::limiter::MemoryLimiter;
use super::secrets::SecretAccess;
use super::tools::ToolAccess;
use crate::bus::TaskEmitter;
use crate::govern::FuelBucket;

/// The emitter of a task, shared by its `status` import and its stdout/stderr pipes.
pub(crate) type SharedEmitter = Arc<Mutex<TaskEmitter>>;

pub(crate) fn lock(emitter: &SharedEmitter) -> std::sync::MutexGuard<'_, TaskEmitter> {
    emitter.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// Bytes the attempt may still write into its sandbox.
    pub(crate) disk: Arc<DiskQuota>,
    pub(crate) events: SharedEmitter,
    pub(crate) board: BoardScope,
    pub(crate) tools: ToolAccess,
    pub(crate) secrets: SecretAccess,
    /// When the attempt runs out of wall-clock time.
    pub(crate) deadline: Instant,
    /// Fuel buckets to draw from (tenant, agent), and the fuel left at the last draw.
    pub(crate) buckets: Vec<Arc<FuelBucket>>,
    pub(crate) fuel_seen: u64,
}

impl TaskState {
    /// Draws the fuel burned since the last draw (the store now has `left`) from every
    /// bucket; returns how long to sleep off the largest debt, if any.
    pub(crate) fn draw(&mut self, left: u64) -> Option<std::time::Duration> {
        let burned = self.fuel_seen.saturating_sub(left);
        self.fuel_seen = left;
        if burned == 0 {
            return None;
        }
        self.buckets.iter().filter_map(|b| b.draw(burned)).max()
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
