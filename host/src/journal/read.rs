//! Reading the journal: runs (listed, filtered, one by one), a run's events from a sequence
//! number on (outputs put back from their digests), outputs, results documents, blackboards.

use std::sync::Arc;

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Journal;
use super::writer::HEARTBEAT;
use crate::error::Error;
use crate::model::Name;
use crate::model::events::{Event, EventKind, Output};
use crate::model::time::Timestamp;

/// Where a run is, as the journal knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RunState {
    /// Running, and its process is alive.
    Running,
    /// Its process stopped (killed, crashed, lost its machine) before it ended: resumable.
    Interrupted,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the run has ended (it may still be resumed to retry what did not succeed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunSummary {
    pub run_id: String,
    pub tenant: String,
    pub workflow: String,
    pub state: RunState,
    pub tasks: u64,
    /// Tasks that have ended.
    pub settled: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The last event's sequence number.
    pub last_seq: u64,
    pub directory: String,
}

/// Which runs to list: newest first, `limit` of them, older than the `before` cursor.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunFilter {
    pub tenant: Option<String>,
    pub workflow: Option<String>,
    pub state: Option<RunState>,
    /// A cursor: only runs created before this one (by creation time, then id).
    pub before: Option<String>,
    pub limit: Option<usize>,
}

impl RunFilter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.workflow = Some(workflow.into());
        self
    }
    pub fn state(mut self, state: RunState) -> Self {
        self.state = Some(state);
        self
    }
    pub fn before(mut self, run_id: impl Into<String>) -> Self {
        self.before = Some(run_id.into());
        self
    }
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }
}

/// A run's row, with what resume needs.
#[derive(Debug, Clone)]
pub(crate) struct StoredRun {
    pub(crate) summary: RunSummary,
    pub(crate) source_path: String,
    pub(crate) source_digest: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) started_ms: u64,
}

const COLUMNS: &str = "run_id, tenant, workflow, status, tasks, settled, created_ms, updated_ms,
    finished_ms, last_seq, directory, heartbeat_ms, source_path, source_digest, params, started_ms,
    owner";

fn stored(row: &Row<'_>) -> rusqlite::Result<StoredRun> {
    let status: String = row.get(3)?;
    let heartbeat: i64 = row.get(11)?;
    let now = Timestamp::now().unix_millis() as i64;
    // A running run whose process is gone, or whose heartbeat is three beats late, has
    // lost its process.
    let owner: String = row.get(16)?;
    let stale = now - heartbeat > 3 * HEARTBEAT.as_millis() as i64 || super::owner::is_gone(&owner);
    let state = match status.as_str() {
        "running" if stale => RunState::Interrupted,
        "running" => RunState::Running,
        "succeeded" => RunState::Succeeded,
        "cancelled" => RunState::Cancelled,
        _ => RunState::Failed,
    };
    let ms = |i: usize| -> rusqlite::Result<Timestamp> {
        Ok(Timestamp::from_unix_millis(
            row.get::<_, i64>(i)?.max(0) as u64
        ))
    };
    let params: String = row.get(14)?;
    Ok(StoredRun {
        summary: RunSummary {
            run_id: row.get(0)?,
            tenant: row.get(1)?,
            workflow: row.get(2)?,
            state,
            tasks: row.get::<_, i64>(4)?.max(0) as u64,
            settled: row.get::<_, i64>(5)?.max(0) as u64,
            created_at: ms(6)?,
            updated_at: ms(7)?,
            finished_at: row
                .get::<_, Option<i64>>(8)?
                .map(|m| Timestamp::from_unix_millis(m.max(0) as u64)),
            last_seq: row.get::<_, i64>(9)?.max(0) as u64,
            directory: row.get(10)?,
        },
        source_path: row.get(12)?,
        source_digest: row.get(13)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        started_ms: row.get::<_, i64>(15)?.max(0) as u64,
    })
}

impl Journal {
    /// Runs, newest first.
    pub(crate) fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, Error> {
        let conn = self.conn();
        let before: Option<(i64, String)> = match &filter.before {
            Some(id) => conn
                .query_row(
                    "SELECT created_ms, run_id FROM runs WHERE run_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| self.error(e))?,
            None => None,
        };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM runs
                 WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR workflow = ?2)
                   AND (?3 IS NULL OR (created_ms, run_id) < (?3, ?4))
                 ORDER BY created_ms DESC, run_id DESC"
            ))
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map(
                params![
                    filter.tenant,
                    filter.workflow,
                    before.as_ref().map(|b| b.0),
                    before.as_ref().map(|b| b.1.clone()),
                ],
                stored,
            )
            .map_err(|e| self.error(e))?;
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for row in rows {
            let run = row.map_err(|e| self.error(e))?.summary;
            if filter.state.is_some_and(|s| s != run.state) {
                continue;
            }
            out.push(run);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn stored_run(&self, run_id: &str) -> Result<Option<StoredRun>, Error> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs WHERE run_id = ?1"),
                [run_id],
                stored,
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// A run, as listed.
    pub(crate) fn run(&self, run_id: &str) -> Result<Option<RunSummary>, Error> {
        Ok(self.stored_run(run_id)?.map(|r| r.summary))
    }

    /// An output (or results document) by digest.
    pub(crate) fn output(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        self.conn()
            .query_row(
                "SELECT body FROM outputs WHERE digest = ?1",
                [digest],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// A run's events with sequence numbers from `from` on, `limit` at most, outputs put back.
    pub(crate) fn events(
        &self,
        run_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, Error> {
        let bodies: Vec<Vec<u8>> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM events WHERE run_id = ?1 AND last_seq >= ?2 ORDER BY first_seq",
                )
                .map_err(|e| self.error(e))?;
            let rows = stmt
                .query_map(params![run_id, from as i64], |r| r.get(0))
                .map_err(|e| self.error(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.error(e))?
        };
        let mut out = Vec::new();
        for body in bodies {
            let body = super::codec::unpack(&body).map_err(|why| {
                self.error(format!(
                    "the events of run `{run_id}` do not read back ({why}): the journal is damaged"
                ))
            })?;
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let mut event: Event = serde_json::from_slice(line).map_err(|e| {
                    self.error(format!("an event of run `{run_id}` does not read back ({e}): the journal is damaged"))
                })?;
                if event.seq < from {
                    continue;
                }
                if event.run_id.is_empty() {
                    event.run_id = Name::from(run_id);
                }
                if let EventKind::TaskStatus(u) = &mut event.kind
                    && u.output.is_none()
                    && let Some(digest) = &u.output_digest
                {
                    u.output = Some(Output(self.raw_output(run_id, digest)?));
                }
                out.push(Arc::new(event));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// An output a run's event names: it must be there.
    pub(crate) fn raw_output(&self, run_id: &str, digest: &str) -> Result<Arc<RawValue>, Error> {
        let bytes = self.output(digest)?.ok_or_else(|| {
            self.error(format!(
                "the output `{digest}` of run `{run_id}` is missing from the journal: the run \
                 cannot be shown or resumed as it was; run its workflow again"
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            self.error(format!(
                "the output `{digest}` is not text: the journal is damaged"
            ))
        })?;
        RawValue::from_string(text).map(Arc::from).map_err(|e| {
            self.error(format!(
                "the output `{digest}` is not JSON ({e}): the journal is damaged"
            ))
        })
    }

    /// A run's blackboard, as last written: (key, value, version).
    pub(crate) fn blackboard(&self, run_id: &str) -> Result<Vec<(String, String, u64)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, value, version FROM blackboard WHERE run_id = ?1 ORDER BY key",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// The results document of an ended run, as written when it ended.
    pub(crate) fn report(&self, run_id: &str) -> Result<Option<Vec<u8>>, Error> {
        let ended = self
            .stored_run(run_id)?
            .is_some_and(|r| r.summary.finished_at.is_some());
        if !ended {
            return Ok(None);
        }
        let body: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT body FROM reports WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let body = body.ok_or_else(|| {
            self.error(format!(
                "the results of run `{run_id}` are missing from the journal"
            ))
        })?;
        super::codec::unpack(&body).map(Some).map_err(|why| {
            self.error(format!(
                "the results of run `{run_id}` do not read back ({why}): the journal is damaged"
            ))
        })
    }
}
