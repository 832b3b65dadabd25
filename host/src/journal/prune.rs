//! Retention: runs that ended before a cut-off are deleted with their events, blackboards
//! and working directories; outputs that nothing references any more (no event of a kept run,
//! no memo, no kept run's source) go too; the database file shrinks (`VACUUM`).

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::params;
use serde::Serialize;

use super::Journal;
use crate::error::Error;
use crate::model::time::Timestamp;

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Pruned {
    pub runs: u64,
    pub outputs: u64,
    /// The database file's size before and after, in bytes.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Journal {
    /// Deletes the runs that ended more than `older_than` ago. Returns their directories
    /// (to be removed by the caller) and what was removed.
    pub(crate) fn prune(&self, older_than: Duration) -> Result<(Pruned, Vec<PathBuf>), Error> {
        // The database and its write-ahead log.
        let size = || {
            let wal = self.path.with_extension("db-wal");
            [&self.path, &wal]
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        let mut pruned = Pruned {
            bytes_before: size(),
            ..Pruned::default()
        };
        let cutoff = Timestamp::now()
            .unix_millis()
            .saturating_sub(u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX));
        let mut dirs = Vec::new();
        {
            let mut conn = self.conn();
            let db = |e: rusqlite::Error| self.error(format!("pruning failed: {e}"));
            // IMMEDIATE: the write lock is taken (waiting out other writers) before the first
            // read. A deferred transaction reads first and asks for the lock at its first
            // delete; if another connection committed in between, its snapshot is stale and
            // SQLite refuses at once ("database is locked"), which no busy timeout waits out.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let old: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT run_id, directory FROM runs
                         WHERE finished_ms IS NOT NULL AND finished_ms < ?1",
                    )
                    .map_err(db)?;
                let rows = stmt
                    .query_map([cutoff as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            for (run_id, dir) in &old {
                for table in ["events", "blackboard", "messages", "reports", "runs"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE run_id = ?1"),
                        params![run_id],
                    )
                    .map_err(db)?;
                }
                dirs.push(PathBuf::from(dir));
            }
            pruned.runs = old.len() as u64;
            tx.execute(
                "DELETE FROM memo WHERE run_id NOT IN (SELECT run_id FROM runs)",
                [],
            )
            .map_err(db)?;
            // Outputs still referenced: by a memo, a kept run's source, or an
            // event of a kept run.
            let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
            {
                let mut stmt = tx
                    .prepare("SELECT digest FROM memo UNION SELECT source_digest FROM runs")
                    .map_err(db)?;
                for d in stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)? {
                    keep.insert(d.map_err(db)?);
                }
                let mut stmt = tx.prepare("SELECT body FROM events").map_err(db)?;
                for body in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(db)? {
                    // Which outputs a batch that does not read back needs is not known: then
                    // nothing is pruned (the transaction is dropped), and nothing is lost.
                    let body = super::codec::unpack(&body.map_err(db)?).map_err(|why| {
                        self.error(format!(
                            "nothing was pruned: an event batch does not read back ({why}); \
                             the journal is damaged"
                        ))
                    })?;
                    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
                            && let Some(d) = v.get("output_digest").and_then(|d| d.as_str())
                        {
                            keep.insert(d.to_owned());
                        }
                    }
                }
            }
            let all: Vec<String> = {
                let mut stmt = tx.prepare("SELECT digest FROM outputs").map_err(db)?;
                let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            for digest in all.iter().filter(|d| !keep.contains(*d)) {
                tx.execute("DELETE FROM outputs WHERE digest = ?1", [digest])
                    .map_err(db)?;
                pruned.outputs += 1;
            }
            tx.commit().map_err(db)?;
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db)?;
        }
        pruned.bytes_after = size();
        Ok((pruned, dirs))
    }
}
