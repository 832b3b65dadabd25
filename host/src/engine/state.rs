//! What a task's store holds: its WASI context, its limiter and each capability's state for
//! this attempt, with the views the capabilities' host implementations see. One per task
//! attempt, never reused.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limiter::MemoryLimiter;
use crate::bus::{Bus, EmitterLimits, SharedEmitter, TaskEmitter};
use crate::capabilities::blackboard::{self, BlackboardView, BoardScope};
use crate::capabilities::files::{self, AuditedFs, DiskQuota};
use crate::capabilities::messages::{self, MessageScope, MessagesView};
use crate::capabilities::secrets::{self, SecretAccess, SecretsView};
use crate::capabilities::status::{self, StatusView};
use crate::capabilities::tools::{self, ToolAccess, ToolsView};
use crate::govern::FuelDraw;
use crate::model::Name;
use crate::model::events::TaskRef;

pub(crate) struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// Bytes the attempt may still write into its sandbox.
    pub(crate) disk: Arc<DiskQuota>,
    pub(crate) events: SharedEmitter,
    pub(crate) board: BoardScope,
    pub(crate) messages: MessageScope,
    pub(crate) tools: ToolAccess,
    pub(crate) secrets: SecretAccess,
    /// When the attempt runs out of wall-clock time.
    pub(crate) deadline: Instant,
    /// Fuel buckets to draw from (tenant, agent), and the fuel left at the last draw.
    pub(crate) buckets: Vec<Arc<dyn FuelDraw>>,
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

impl TaskState {
    /// The state of a store instantiated ahead of its attempt: no filesystem, tools, secrets or
    /// buckets, an emitter that keeps nothing, no memory limit yet. The attempt that takes it
    /// gives it all of its own before the guest's `run` is called.
    pub(crate) fn idle() -> Self {
        let task = TaskRef {
            node: Name::from("warm"),
            branch: Name::from("warm"),
            agent: Name::from("warm"),
            attempt: 0,
        };
        let limits = EmitterLimits {
            max_logs: 0,
            max_partials: 0,
            max_audits: 0,
            ..EmitterLimits::default()
        };
        let emitter = TaskEmitter::new(Bus::new("warm"), task, limits);
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(u64::MAX),
            disk: DiskQuota::new(0),
            events: Arc::new(std::sync::Mutex::new(emitter)),
            board: BoardScope::alone(),
            messages: MessageScope::alone(),
            tools: ToolAccess::none(),
            secrets: SecretAccess::none(),
            deadline: Instant::now() + std::time::Duration::from_secs(3600),
            buckets: Vec::new(),
            fuel_seen: 0,
        }
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

/// Links WASI and every capability's host implementation, each given its view of the store.
pub(crate) fn link(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    files::add_to_linker(linker, |s| AuditedFs {
        fs: WasiFilesystemCtxView {
            ctx: s.wasi.filesystem(),
            table: &mut s.table,
        },
        events: &s.events,
        disk: &s.disk,
    })?;
    status::add_to_linker(linker, |s| StatusView(&s.events))?;
    blackboard::add_to_linker(linker, |s| BlackboardView::new(&s.board, &s.events))?;
    messages::add_to_linker(linker, |s| MessagesView::new(&s.messages, &s.events))?;
    secrets::add_to_linker(linker, |s| SecretsView::new(&s.secrets, &s.events))?;
    tools::add_to_linker(linker, |s| ToolsView::new(&s.tools, &s.events))
}
