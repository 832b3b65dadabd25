//! The directories of a run and of its tasks: each task's own working directory (its name
//! a validated branch, never a path from a guest, created through cap-std), its staged inputs
//! and the working directories of the tasks it depends on, and how they are preopened.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::Dir;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

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
    ///
    /// `fresh`: an earlier attempt's files are removed first, so that an attempt never sees
    /// what another left (a retry whose policy keeps them passes `false`).
    pub(crate) fn work_dir(self: &Arc<Self>, branch: &str, fresh: bool) -> io::Result<WorkDir> {
        match self.dir.create_dir(branch) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fresh {
                    self.dir.remove_dir_all(branch)?;
                    self.dir.create_dir(branch)?;
                }
            }
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
            super::stage::stage(&dir, sources)?;
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

impl TaskFiles {
    /// Preopens the task's directories in its WASI context: its working directory read-write
    /// as `.`, its inputs read-only as `inputs`, upstream directories read-only as
    /// `upstream/<node>`. Without a working directory, nothing at all.
    pub(crate) fn preopen(&self, builder: &mut WasiCtxBuilder) -> wasmtime::Result<()> {
        if let Some(dir) = &self.work {
            builder.preopened_dir(dir.path(), ".", FsPerms::ReadWrite)?;
            if let Some(inputs) = &self.inputs {
                builder.preopened_dir(inputs, "inputs", FsPerms::ReadOnly)?;
            }
            for (node, dir) in &self.upstream {
                builder.preopened_dir(dir, format!("upstream/{node}"), FsPerms::ReadOnly)?;
            }
        }
        Ok(())
    }
}
