//! Memoized tasks (`cache = true`): an executor in front of the real one that reuses an
//! earlier run's output when everything the output depends on is the same.
//!
//! The key is the SHA-256 of: the component's digest, the task's parameters (canonical JSON),
//! its upstream outputs' digests (or failures), its input files' digests, and its grants
//! (tools and secrets). A hit is an outcome of its own, `cached`, naming the run whose output
//! it took; a miss runs the task and remembers its output. A task whose agent calls tools or
//! reads secrets is memoized only when its agent says so (`cache = true` on the agent): what
//! such a task returns may depend on the world, not only on its inputs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::journal::Journal;
use crate::model::Name;
use crate::model::digest::sha256_hex;
use crate::model::port::{Attempt, Executor, Job, UpstreamResult};
use crate::model::status::TaskStatus;
use crate::model::time::Timestamp;

/// An agent, as memo keys see it.
#[derive(Debug, Clone)]
pub(crate) struct MemoAgent {
    pub(crate) digest: String,
    /// Its tools and secrets.
    pub(crate) grants: Value,
}

/// A memoized task.
#[derive(Debug)]
pub(crate) struct MemoTask {
    pub(crate) inputs: Vec<PathBuf>,
    /// The digest of its input files, computed once per run.
    inputs_digest: OnceLock<String>,
}

impl MemoTask {
    pub(crate) fn new(inputs: Vec<PathBuf>) -> Self {
        Self {
            inputs,
            inputs_digest: OnceLock::new(),
        }
    }
}

pub(crate) struct Memoized<E> {
    pub(crate) inner: E,
    pub(crate) journal: Arc<Journal>,
    pub(crate) run_id: Name,
    pub(crate) agents: Vec<MemoAgent>,
    /// By task index: `None` for a task that is not memoized (the tasks a run grows by join
    /// as it grows: see [`Memoized::grew`]).
    pub(crate) tasks: RwLock<Vec<Option<Arc<MemoTask>>>>,
}

impl<E> Memoized<E> {
    /// Takes in the tasks a run grew by (a plan's, a loop's next iteration), after the `from`
    /// it had.
    pub(crate) fn grew(&self, from: usize, tasks: impl IntoIterator<Item = Option<Arc<MemoTask>>>) {
        let mut all = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        all.truncate(from);
        all.extend(tasks);
    }
}

impl<E: Executor> Executor for Memoized<E> {
    async fn execute(&self, job: Job) -> Attempt {
        let memo = job.task.and_then(|t| {
            let tasks = self.tasks.read().unwrap_or_else(|e| e.into_inner());
            tasks.get(t).cloned().flatten()
        });
        let (Some(memo), Some(agent)) = (memo, self.agents.get(job.agent)) else {
            return self.inner.execute(job).await;
        };
        // Boxed: a memoized attempt's future holds the inner one as well as the lookups; every
        // other attempt keeps a small future (it is moved as it is spawned).
        Box::pin(self.memoized(job, memo, agent)).await
    }
}

impl<E: Executor> Memoized<E> {
    async fn memoized(&self, job: Job, memo: Arc<MemoTask>, agent: &MemoAgent) -> Attempt {
        let key = match key(agent, &memo, &job).await {
            Some(key) => key,
            None => return self.inner.execute(job).await,
        };
        let journal = Arc::clone(&self.journal);
        let found = {
            let key = key.clone();
            tokio::task::spawn_blocking(move || {
                let memo = journal.memo(&key).ok()??;
                let output = journal.raw_output(&memo.run_id, &memo.digest).ok()?;
                Some((memo, output))
            })
            .await
            .ok()
            .flatten()
        };
        if let Some((memo, output)) = found {
            let now = Timestamp::now();
            return Attempt {
                status: TaskStatus::Cached,
                output: Some(output),
                output_digest: Some(Name::from(memo.digest)),
                cached_from: Some(Name::from(memo.run_id)),
                worker: None,
                error: None,
                started_at: now,
                finished_at: now,
                latency: Duration::ZERO,
                fuel_used: 0,
                memory_peak: 0,
                artifacts: Vec::new(),
            };
        }
        let node = job.task_ref.node.clone();
        let attempt = self.inner.execute(job).await;
        if attempt.status == TaskStatus::Succeeded
            && let (Some(digest), Some(output)) =
                (attempt.output_digest.clone(), attempt.output.clone())
        {
            let journal = Arc::clone(&self.journal);
            let run = self.run_id.clone();
            let stored = tokio::task::spawn_blocking(move || {
                journal.remember(&key, &digest, output.get(), &run, &node)
            })
            .await;
            if let Ok(Err(e)) = stored {
                tracing::warn!("a memoized output was not remembered: {e}");
            }
        }
        attempt
    }
}

/// The memo key of `job`; `None` when its inputs cannot be read (then it just runs).
async fn key(agent: &MemoAgent, memo: &Arc<MemoTask>, job: &Job) -> Option<String> {
    let params: Value = serde_json::from_str(&job.params).ok()?;
    let upstream: Vec<Value> = job
        .upstream
        .iter()
        .map(|(node, result)| match result {
            UpstreamResult::Output(out) => json!([node.as_str(), sha256_hex(out.get().as_bytes())]),
            UpstreamResult::Failed { status, error } => {
                json!([
                    node.as_str(),
                    status.as_str(),
                    error.kind.as_str(),
                    error.message
                ])
            }
        })
        .collect();
    let inputs = match memo.inputs_digest.get() {
        Some(d) => d.clone(),
        None => {
            let task = Arc::clone(memo);
            let digest = tokio::task::spawn_blocking(move || inputs_digest(&task.inputs))
                .await
                .ok()??;
            memo.inputs_digest.get_or_init(|| digest).clone()
        }
    };
    // serde_json's maps are sorted: this text is canonical.
    let text = json!({
        "version": 1,
        "component": agent.digest,
        "params": params,
        "upstream": upstream,
        "inputs": inputs,
        "grants": agent.grants,
    })
    .to_string();
    Some(sha256_hex(text.as_bytes()))
}

/// The digest of the files under `paths` (names and contents, in a fixed order).
fn inputs_digest(paths: &[PathBuf]) -> Option<String> {
    fn walk(path: &Path, name: &str, out: &mut Vec<(String, String)>, depth: usize) -> Option<()> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.is_dir() && depth < 32 {
            let mut entries: Vec<_> = std::fs::read_dir(path).ok()?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let child = format!("{name}/{}", e.file_name().to_string_lossy());
                walk(&e.path(), &child, out, depth + 1)?;
            }
        } else if meta.is_file() {
            out.push((name.to_owned(), sha256_hex(&std::fs::read(path).ok()?)));
        }
        Some(())
    }
    let mut files = Vec::new();
    for path in paths {
        let name = path.file_name()?.to_string_lossy().into_owned();
        walk(path, &name, &mut files, 0)?;
    }
    Some(sha256_hex(json!(files).to_string().as_bytes()))
}
