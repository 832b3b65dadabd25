//! The memo of cached tasks: a key of everything a task's output depends on, and the output
//! (by digest) an earlier run gave for it.

use rusqlite::{OptionalExtension, params};

use super::Journal;
use super::schema::STORE_OUTPUT;
use crate::error::Error;
use crate::model::time::Timestamp;

/// An earlier output for a memo key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Memo {
    pub(crate) digest: String,
    pub(crate) run_id: String,
    pub(crate) node: String,
}

impl Journal {
    /// The earlier output for `key`, if its output is still stored.
    pub(crate) fn memo(&self, key: &str) -> Result<Option<Memo>, Error> {
        self.conn()
            .query_row(
                "SELECT m.digest, m.run_id, m.node FROM memo m
                 JOIN outputs o ON o.digest = m.digest WHERE m.key = ?1",
                [key],
                |r| {
                    Ok(Memo {
                        digest: r.get(0)?,
                        run_id: r.get(1)?,
                        node: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Remembers that `key` gave the output `body` (by its `digest`). The output is stored
    /// here too, in the same transaction: the run's events carry it to the writer later
    /// (with `async` durability, a few milliseconds later), and a memo whose output is not
    /// stored yet is not found, so a run starting just after this one would miss it.
    pub(crate) fn remember(
        &self,
        key: &str,
        digest: &str,
        body: &str,
        run_id: &str,
        node: &str,
    ) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.error(e))?;
        tx.execute(STORE_OUTPUT, params![digest, body.as_bytes()])
            .map_err(|e| self.error(e))?;
        tx.execute(
            "INSERT INTO memo (key, digest, run_id, node, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, run_id = excluded.run_id,
                 node = excluded.node, created_ms = excluded.created_ms",
            params![
                key,
                digest,
                run_id,
                node,
                Timestamp::now().unix_millis() as i64
            ],
        )
        .map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))
    }
}
