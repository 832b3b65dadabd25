//! Folding a run's journal into what resuming it needs: per task, its attempts so far (with
//! their outputs) and whether it succeeded; the run's blackboard; the fuel it has spent.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::Journal;
use super::read::StoredRun;
use crate::error::Error;
use crate::model::Name;
use crate::model::events::{Artifact, AuditResource, Decision, EventKind};
use crate::model::limits::MessageLimits;
use crate::model::report::MessageCounts;
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

/// A task's messages, as the journal's events tell them.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessageLog {
    /// What it sent, received and had refused, over all its attempts.
    pub(crate) counts: MessageCounts,
    /// The places in its inbox of the messages attempts that ended took (those an attempt
    /// the stopped process never ended took are its next attempt's again).
    pub(crate) taken: HashSet<u64>,
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
    /// By node: its messages.
    pub(crate) messages: HashMap<String, MessageLog>,
    /// By node: its inbox as the journal left it (read with the run's message limits, once
    /// its workflow is known: see [`Journal::inboxes`]).
    pub(crate) inboxes: HashMap<String, PriorMessages>,
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
        let mut messages: HashMap<String, MessageLog> = HashMap::new();
        // Per (node, attempt): the places of the messages it took.
        let mut took: HashMap<(String, u32), Vec<u64>> = HashMap::new();
        // The attempts that ended, by node.
        let mut ended_attempts: HashSet<(String, u32)> = HashSet::new();
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
                let u = match &event.kind {
                    EventKind::TaskStatus(u) => u,
                    EventKind::MessageSent(m) => {
                        let log = messages.entry(m.task.node.to_string()).or_default();
                        log.counts.sent += 1;
                        continue;
                    }
                    EventKind::MessageReceived(m) => {
                        let log = messages.entry(m.task.node.to_string()).or_default();
                        log.counts.received += 1;
                        took.entry((m.task.node.to_string(), m.task.attempt))
                            .or_default()
                            .push(m.index);
                        continue;
                    }
                    EventKind::Audit(a)
                        if a.resource == AuditResource::Message
                            && a.decision == Decision::Denied =>
                    {
                        let log = messages.entry(a.task.node.to_string()).or_default();
                        log.counts.refused += 1;
                        continue;
                    }
                    _ => continue,
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
                ended_attempts.insert((u.task.node.to_string(), u.task.attempt));
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
        for ((node, attempt), places) in took {
            if ended_attempts.contains(&(node.clone(), attempt)) {
                messages.entry(node).or_default().taken.extend(places);
            }
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
            messages,
            inboxes: HashMap::new(),
        })
    }

    /// The inboxes of run `run_id` as its journal left them, by node: each message sent to a
    /// task that no attempt that ended took (`logs`, from [`Journal::fold`]), oldest first,
    /// at most `limits.inbox` an inbox and `limits.max_unread_bytes` in all (what a live run
    /// could have held).
    pub(crate) fn inboxes(
        &self,
        run_id: &str,
        logs: &HashMap<String, MessageLog>,
        limits: MessageLimits,
    ) -> Result<HashMap<String, PriorMessages>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT receiver, seq, sender, body FROM messages WHERE run_id = ?1
                 ORDER BY receiver, seq",
            )
            .map_err(|e| self.error(e))?;
        let mut rows = stmt.query([run_id]).map_err(|e| self.error(e))?;
        let mut inboxes: HashMap<String, PriorMessages> = HashMap::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let receiver: String = row.get(0).map_err(|e| self.error(e))?;
            let seq = row.get::<_, i64>(1).map_err(|e| self.error(e))?.max(0) as u64;
            let inbox = inboxes.entry(receiver.clone()).or_default();
            inbox.last_seq = inbox.last_seq.max(seq);
            let taken = logs.get(&receiver).is_some_and(|l| l.taken.contains(&seq));
            if taken || inbox.unread.len() >= limits.inbox {
                continue;
            }
            let body: String = row.get(3).map_err(|e| self.error(e))?;
            if bytes + body.len() > limits.max_unread_bytes {
                continue;
            }
            bytes += body.len();
            let sender: String = row.get(2).map_err(|e| self.error(e))?;
            inbox.unread.push((seq, sender, body));
        }
        for (node, log) in logs {
            inboxes.entry(node.clone()).or_default().counts = log.counts;
        }
        Ok(inboxes)
    }
}

/// A task's inbox as the journal left it (see [`Journal::inboxes`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct PriorMessages {
    /// `(place, sender, body)`, oldest first.
    pub(crate) unread: Vec<(u64, String, String)>,
    pub(crate) last_seq: u64,
    pub(crate) counts: MessageCounts,
}
