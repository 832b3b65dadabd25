//! Helpers shared by the integration tests: where the guest components are, scratch
//! directories, workflows written on the fly, runs collected with all their events.
//!
//! The guests are built by `cargo xtask guests` (which `cargo xtask test` runs first).

pub mod nats;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use tempfile::TempDir;
use wasm_orch::events::{Event, EventKind};
use wasm_orch::report::RunReport;
use wasm_orch::{RunOptions, Runtime, TaskStatus, Workflow};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory of built guest components (`$WASM_ORCH_GUESTS`, else `target/guests`).
pub fn guests() -> PathBuf {
    let dir = std::env::var_os("WASM_ORCH_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/guests"));
    assert!(
        dir.join("add.wasm").is_file(),
        "guest components are missing from {}: run `cargo xtask guests` (`cargo xtask test` does)",
        dir.display()
    );
    dir
}

/// The path of one built guest, e.g. `guest("add")`.
pub fn guest(name: &str) -> PathBuf {
    guests().join(format!("{name}.wasm"))
}

/// The CLI under test, as a `std::process::Command` (a macro: Cargo gives the binary's path
/// to integration tests only).
#[macro_export]
macro_rules! cli {
    () => {
        ::std::process::Command::new(env!("CARGO_BIN_EXE_wasm-orch-cli"))
    };
}

/// A compile cache shared by every test, so components compile once per test session.
pub fn shared_cache() -> PathBuf {
    root().join("target/test-cache")
}

/// A scratch directory holding workflow files and run state, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where runs keep their files.
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes a workflow file; `{guests}` in the text becomes the guests directory.
    pub fn workflow(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.path().join(name);
        let text = toml.replace("{guests}", &guests().display().to_string());
        std::fs::write(&path, text).expect("write the workflow");
        path
    }

    /// Points a CLI command at this scratch directory's state and the shared compile cache.
    pub fn dirs<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--cache-dir")
            .arg(shared_cache())
    }

    /// A runtime whose runs live in this scratch directory.
    pub fn runtime(&self) -> Runtime {
        Runtime::builder()
            .state_dir(self.state_dir())
            .cache_dir(shared_cache())
            .max_instances(100)
            .build()
            .expect("a runtime")
    }

    /// Validates and runs a workflow text to the end, collecting every event.
    pub async fn run(&self, toml: &str) -> Finished {
        let path = self.workflow("workflow.toml", toml);
        let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        self.run_workflow(&self.runtime(), &workflow, RunOptions::new())
            .await
    }

    /// Runs `examples/<file>` as a newcomer would, to the end.
    pub async fn run_example(&self, file: &str) -> Finished {
        let path = root().join("examples").join(file);
        let workflow = Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        self.run_workflow(&self.runtime(), &workflow, RunOptions::new())
            .await
    }

    /// Every event of run `run_id`, as the journal gives it back (from outside a runtime).
    pub fn journal(&self, run_id: &str) -> Vec<Arc<Event>> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        tokio
            .block_on(self.runtime().run_events(run_id, 0, usize::MAX))
            .unwrap_or_else(|e| panic!("the journal reads back: {e}"))
    }

    pub async fn run_workflow(
        &self,
        runtime: &Runtime,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Finished {
        let run = runtime
            .start(workflow, options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = run.events();
        let report = run.wait().await.expect("the run ends");
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event);
        }
        Finished { report, events }
    }
}

/// A finished run: its report and every event it published.
#[derive(Debug)]
pub struct Finished {
    pub report: RunReport,
    pub events: Vec<Arc<Event>>,
}

impl Finished {
    /// The final status of a task.
    pub fn status(&self, node: &str) -> TaskStatus {
        self.report
            .task(node)
            .unwrap_or_else(|| panic!("no task `{node}`"))
            .status
    }

    /// The error message of a task, or "".
    pub fn error(&self, node: &str) -> String {
        self.report
            .task(node)
            .and_then(|t| t.error.as_ref())
            .map(|e| e.message.clone())
            .unwrap_or_default()
    }

    /// Every event about a task.
    pub fn events_of<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events
            .iter()
            .map(Arc::as_ref)
            .filter(move |e| match &e.kind {
                EventKind::TaskStatus(u) => u.task.node == node,
                EventKind::Progress(p) => p.task.node == node,
                EventKind::Partial(p) => p.task.node == node,
                EventKind::Log(l) => l.task.node == node,
                _ => false,
            })
    }

    /// When a task's status event `status` was published.
    pub fn when(&self, node: &str, status: TaskStatus) -> SystemTime {
        self.events_of(node)
            .find_map(|e| match &e.kind {
                EventKind::TaskStatus(u) if u.status == status => Some(e.at.0),
                _ => None,
            })
            .unwrap_or_else(|| panic!("task `{node}` has no `{status}` event"))
    }

    /// The statuses a task went through, in order.
    pub fn statuses(&self, node: &str) -> Vec<TaskStatus> {
        self.events_of(node)
            .filter_map(|e| match &e.kind {
                EventKind::TaskStatus(u) => Some(u.status),
                _ => None,
            })
            .collect()
    }
}

/// A benchmark DAG: `n` tasks of guest `agent`, task `i` depending on task `i - 1` when
/// `chain`, each given `with` (a TOML inline table); `workdir`: whether each task gets its own
/// working directory. Written into `dir` and validated.
pub fn bench_workflow(
    dir: &Path,
    agent: &str,
    n: usize,
    chain: bool,
    with: &str,
    workdir: bool,
    max_concurrency: usize,
) -> Workflow {
    use std::fmt::Write as _;
    let mut toml = format!(
        "[workflow]\nname = \"bench\"\nmax_concurrency = {max_concurrency}\n\
         [agents.{agent}]\ncomponent = \"{}\"\ntools = [\"sleep\"]\nworkdir = {workdir}\n\
         timeout = \"10m\"\n",
        guest(agent).display()
    );
    for i in 0..n {
        let _ = write!(
            toml,
            "[[tasks]]\nid = \"t{i}\"\nagent = \"{agent}\"\nwith = {with}\n"
        );
        if chain && i > 0 {
            let _ = writeln!(toml, "depends_on = [\"t{}\"]", i - 1);
        }
    }
    let path = dir.join(format!("{agent}-{n}-{chain}-{workdir}.toml"));
    std::fs::write(&path, toml).expect("write");
    Workflow::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a benchmark `workflow` at `max_concurrency`: its report (every task succeeded), when
/// each task started running (in order), and the run's wall time.
pub async fn timed_run(
    runtime: &Runtime,
    workflow: &Workflow,
    max_concurrency: usize,
) -> (RunReport, Vec<SystemTime>, std::time::Duration) {
    let started = std::time::Instant::now();
    let run = runtime
        .start(workflow, RunOptions::new().max_concurrency(max_concurrency))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut events = run.events();
    let report = run.wait().await.expect("the run ends");
    let wall = started.elapsed();
    let mut starts = Vec::new();
    while let Some(event) = events.next().await {
        if let EventKind::TaskStatus(u) = &event.kind
            && u.status == TaskStatus::Running
        {
            starts.push(event.at.0);
        }
    }
    let failed = report
        .tasks
        .iter()
        .filter(|t| t.status != TaskStatus::Succeeded)
        .count();
    assert_eq!(
        failed,
        0,
        "benchmark tasks failed, the first: {:?}",
        report
            .tasks
            .iter()
            .find(|t| t.status != TaskStatus::Succeeded)
    );
    (report, starts, wall)
}

/// Asserts that a command exited 0, showing its stderr if it did not.
#[track_caller]
pub fn exited_0(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `p` quantile (0 to 1) of `sorted` (NaN if empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// A tenant's `kv` store, read straight from the journal's database of `state_dir`:
/// (key, value as JSON text, version), by key.
pub fn kv_store(state_dir: &Path, tenant: &str) -> Vec<(String, String, i64)> {
    let Ok(db) = rusqlite::Connection::open(state_dir.join("journal.db")) else {
        return Vec::new();
    };
    let Ok(mut stmt) =
        db.prepare("SELECT key, value, version FROM kv WHERE tenant = ?1 ORDER BY key")
    else {
        return Vec::new();
    };
    stmt.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// The peak resident set of this process since the last reset, from `/proc/self/status`.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak resident set to what is resident now (Linux: `clear_refs` 5).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
