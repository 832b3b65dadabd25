//! Folding a run's journal into what resuming it needs: per task, its attempts so far (with
//! their outputs) and whether it succeeded; the run's blackboard; the fuel it has spent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::Journal;
use super::read::StoredRun;
use crate::error::Error;
use crate::model::Name;
use crate::model::events::{Artifact, EventKind};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::model::time::Timestamp;

/// One attempt of a task, as the journal recorded it.
#[derive(Debug, Clone)]
pub(crate) struct PriorAttempt {
    pub(crate) agent: String,
    pub(crate) status: TaskStatus,
    pub(crate) error: Option<TaskError>,
    pub(crate) started_at: Timestamp,
    pub(crate) finished_at: Timestamp,
    pub(crate) latency_ms: f64,
    pub(crate) fuel_used: u64,
    pub(crate) memory_peak: u64,
    pub(crate) artifacts: Vec<Artifact>,
    pub(crate) output: Option<Arc<RawValue>>,
    pub(crate) output_digest: Option<Name>,
    pub(crate) cached_from: Option<Name>,
    pub(crate) worker: Option<Name>,
}

/// A task of a journaled run.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriorTask {
    pub(crate) attempts: Vec<PriorAttempt>,
    /// Its last attempt succeeded (or was cached): it does not run again.
    pub(crate) succeeded: bool,
}

/// What resuming a run starts from.
#[derive(Debug)]
pub(crate) struct Folded {
    pub(crate) run: StoredRun,
    /// The workflow file as it was when the run started.
    pub(crate) source_text: String,
    pub(crate) tasks: HashMap<String, PriorTask>,
    pub(crate) blackboard: Vec<(String, String, u64)>,
    pub(crate) fuel_used: u64,
}

impl Journal {
    pub(crate) fn fold(&self, run_id: &str) -> Result<Folded, Error> {
        let run = self
            .stored_run(run_id)?
            .ok_or_else(|| self.error(format!("it has no run `{run_id}`: see `wasm-orch runs`")))?;
        let mut tasks: HashMap<String, PriorTask> = HashMap::new();
        let mut fuel_used = 0u64;
        let mut seen = 0u64;
        // Per task, an attempt that started and has not ended (yet): its number, agent, start.
        let mut open: HashMap<String, (u32, String, Timestamp)> = HashMap::new();
        let mut last_time = run.summary.created_at;
        let mut from = 1;
        loop {
            let events = self.events(run_id, from, 10_000)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for event in &events {
                // Events are numbered 1, 2, 3, ...: a gap is a lost part of the journal.
                if event.seq != seen + 1 {
                    return Err(self.error(format!(
                        "run `{run_id}` is missing events {} to {}: it cannot be resumed as it was",
                        seen + 1,
                        event.seq.saturating_sub(1)
                    )));
                }
                seen = event.seq;
                last_time = last_time.max(event.at);
                let EventKind::TaskStatus(u) = &event.kind else {
                    continue;
                };
                if u.status == TaskStatus::Running {
                    let started = u.started_at.unwrap_or(event.at);
                    open.insert(
                        u.task.node.to_string(),
                        (u.task.attempt, u.task.agent.to_string(), started),
                    );
                    continue;
                }
                // An attempt that ended: a final status or a retry, with when it ran.
                let ended = u.status.is_final()
                    || matches!(u.status, TaskStatus::Retrying | TaskStatus::Iterated);
                let (Some(started_at), Some(finished_at), true) =
                    (u.started_at, u.finished_at, ended)
                else {
                    continue;
                };
                let fuel = u.fuel_used.unwrap_or(0);
                fuel_used = fuel_used.saturating_add(fuel);
                let status = if u.status == TaskStatus::Retrying {
                    // The attempt's own end is in its error's kind; for history, a failure.
                    TaskStatus::Failed
                } else {
                    u.status
                };
                open.remove(u.task.node.as_ref());
                let task = tasks.entry(u.task.node.to_string()).or_default();
                task.succeeded = status.is_success();
                task.attempts.push(PriorAttempt {
                    agent: u.task.agent.to_string(),
                    status,
                    error: u.error.clone(),
                    started_at,
                    finished_at,
                    latency_ms: u.latency_ms.unwrap_or(0.0),
                    fuel_used: fuel,
                    memory_peak: u.memory_peak.unwrap_or(0),
                    artifacts: u.artifacts.clone(),
                    output: u.output.as_ref().map(|o| Arc::clone(&o.0)),
                    output_digest: u.output_digest.clone(),
                    cached_from: u.cached_from.clone(),
                    worker: u.worker.clone(),
                });
            }
            from = last + 1;
        }
        // An attempt the stopped process never ended: in the history as interrupted, so the
        // next one takes the next number (and the report says what happened to it).
        for (node, (attempt, agent, started_at)) in open {
            let task = tasks.entry(node).or_default();
            if task.attempts.len() >= attempt as usize {
                continue;
            }
            task.succeeded = false;
            task.attempts.push(PriorAttempt {
                agent,
                status: TaskStatus::Failed,
                error: Some(TaskError::new(
                    ErrorKind::Interrupted,
                    "its process stopped before the attempt ended; the run was resumed",
                )),
                started_at,
                finished_at: last_time.max(started_at),
                latency_ms: 0.0,
                fuel_used: 0,
                memory_peak: 0,
                artifacts: Vec::new(),
                output: None,
                output_digest: None,
                cached_from: None,
                worker: None,
            });
        }
        if seen < run.summary.last_seq {
            return Err(self.error(format!(
                "run `{run_id}` has {seen} events of the {} it recorded: it cannot be resumed as it was",
                run.summary.last_seq
            )));
        }
        let source = self.output(&run.source_digest)?.ok_or_else(|| {
            self.error(format!(
                "run `{run_id}`'s workflow source ({}) is missing: it cannot be resumed",
                run.source_digest
            ))
        })?;
        let source_text = String::from_utf8(source).map_err(|_| {
            self.error(format!(
                "run `{run_id}`'s workflow source is not UTF-8: it is damaged"
            ))
        })?;
        Ok(Folded {
            source_text,
            blackboard: self.blackboard(run_id)?,
            run,
            tasks,
            fuel_used,
        })
    }
}
