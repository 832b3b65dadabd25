//! The WASI sandbox of one task: its own working directory, what it is given to read, and
//! nothing else.
//!
//! - its working directory, `<run dir>/<branch>`, created through cap-std (its name is a
//!   validated branch, never a path from a guest), preopened read-write as `.`;
//! - its inputs, staged in `<run dir>/.inputs/<branch>`, preopened read-only as `inputs`;
//! - the working directories of the tasks it depends on, read-only as `upstream/<node>`;
//! - wasmtime-wasi resolves every guest path inside one of these, so `..`, absolute paths and
//!   symlinks cannot leave them (and each refusal is audited: see `fs_audit`);
//! - no network (TCP, UDP and name lookup off, every address refused);
//! - no host environment variables and no arguments;
//! - stdin empty; stdout and stderr turned into log events.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cap_std::fs::Dir;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use super::state::{SharedEmitter, lock};
use crate::bus::LogStream;

/// The directory of one run, under which each task gets its own working directory.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
    dir: Dir,
}

impl RunDir {
    /// Creates `path` (and its parents) and opens it. Inputs staged by an earlier run of the
    /// same id are removed: each run stages its own.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        match std::fs::remove_dir_all(path.join(".inputs")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Self {
            path: path.to_path_buf(),
            dir,
        })
    }

    /// A fresh working directory for a task. `branch` is a validated name (no `/`, no `..`).
    pub(crate) fn work_dir(self: &Arc<Self>, branch: &str) -> io::Result<WorkDir> {
        match self.dir.create_dir(branch) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(WorkDir {
            run: Arc::clone(self),
            name: branch.to_owned(),
        })
    }
}

impl RunDir {
    /// Removes the working directories that tasks left empty. Called once, when the run
    /// ends: removing each as its task ends would put an `rmdir` (which locks the parent
    /// directory against the next task's `mkdir`) on every task's path.
    pub(crate) fn remove_empty_dirs(&self) {
        let Ok(entries) = self.dir.entries() else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                // Fails, and keeps the directory, when a task wrote files there.
                let _ = self.dir.remove_dir(entry.file_name());
            }
        }
    }
}

impl RunDir {
    /// The staged inputs of the task on `branch`: staged on its first attempt.
    pub(crate) fn inputs(&self, branch: &str, sources: &[PathBuf]) -> io::Result<PathBuf> {
        let dir = self.path.join(".inputs").join(branch);
        if !dir.is_dir() {
            super::files::stage(&dir, sources)?;
        }
        Ok(dir)
    }

    /// The working directory of the task on `branch`, if it has one.
    pub(crate) fn existing(&self, branch: &str) -> Option<PathBuf> {
        let dir = self.path.join(branch);
        dir.is_dir().then_some(dir)
    }
}

/// A task's working directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    run: Arc<RunDir>,
    name: String,
}

impl WorkDir {
    pub(crate) fn path(&self) -> PathBuf {
        self.run.path.join(&self.name)
    }
}

/// What a task's sandbox holds. Without a working directory it has no filesystem at all.
#[derive(Debug, Default)]
pub(crate) struct TaskFiles {
    pub(crate) work: Option<WorkDir>,
    /// Staged inputs, read-only at `inputs`.
    pub(crate) inputs: Option<PathBuf>,
    /// The working directories of upstream tasks, read-only at `upstream/<node>`.
    pub(crate) upstream: Vec<(String, PathBuf)>,
}

impl TaskFiles {
    /// The read-only directories, as the guest sees them.
    pub(crate) fn read_only(&self) -> Vec<String> {
        self.inputs
            .iter()
            .map(|_| "inputs".to_owned())
            .chain(
                self.upstream
                    .iter()
                    .map(|(node, _)| format!("upstream/{node}")),
            )
            .collect()
    }
}

/// Builds the WASI context of a task.
pub(crate) fn wasi_ctx(files: &TaskFiles, events: &SharedEmitter) -> wasmtime::Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(LogPipe::new(events.clone(), LogStream::Stdout))
        .stderr(LogPipe::new(events.clone(), LogStream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if let Some(dir) = &files.work {
        builder.preopened_dir(dir.path(), ".", FsPerms::ReadWrite)?;
        if let Some(inputs) = &files.inputs {
            builder.preopened_dir(inputs, "inputs", FsPerms::ReadOnly)?;
        }
        for (node, dir) in &files.upstream {
            builder.preopened_dir(dir, format!("upstream/{node}"), FsPerms::ReadOnly)?;
        }
    }
    Ok(builder.build())
}

/// A guest's stdout or stderr: bytes written become log events, line by line.
#[derive(Clone)]
struct LogPipe {
    events: SharedEmitter,
    stream: LogStream,
}

impl LogPipe {
    fn new(events: SharedEmitter, stream: LogStream) -> Self {
        Self { events, stream }
    }

    fn write(&self, bytes: &[u8]) {
        lock(&self.events).write_stream(self.stream, bytes);
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much a guest may write in one call; the emitter bounds what becomes events.
const WRITE_BUDGET: usize = 64 << 10;

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LogPipe::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
