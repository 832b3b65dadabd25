//! The `kv` tool's stores: one per tenant, in the journal's database, so that every process
//! sharing a state directory sees one store and no update is lost. Each operation is one
//! `IMMEDIATE` transaction (a writer waits for another, up to the busy timeout, rather than
//! failing); `add` and `swap` make read-modify-write safe across tasks, runs and processes.
//! A tenant's store is bounded in keys and bytes.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value as Json;

use super::Journal;
use crate::error::Error;

/// The most keys a tenant's store holds.
pub(crate) const MAX_KEYS: i64 = 10_000;
/// The most bytes (keys and values) a tenant's store holds.
pub(crate) const MAX_BYTES: i64 = 16 << 20;

/// An operation on a tenant's store (checked by the tool before it gets here).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KvOp {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: Json,
    },
    /// Adds `by` to the number at `key` (absent: 0).
    Add {
        key: String,
        by: i64,
    },
    /// Writes `value` if the key's version is `expected` (0: absent).
    Swap {
        key: String,
        expected: u64,
        value: Json,
    },
    Delete {
        key: String,
    },
    List {
        prefix: String,
    },
}

/// What an operation answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KvAnswer {
    /// The value and its version (`None`: absent).
    Value(Option<(Json, u64)>),
    /// Written; the new version.
    Written(u64),
    /// The sum `add` made, and its version.
    Sum(i64, u64),
    /// `swap` found another version: the current value and version, if any.
    Conflict(Option<(Json, u64)>),
    Deleted(bool),
    Keys(Vec<String>),
    /// Refused: the store is full, or the value is not a number to add to.
    Refused(String),
}

impl Journal {
    /// Applies `op` to `tenant`'s store. Blocking: call it off the async threads.
    pub(crate) fn kv(&self, tenant: &str, op: &KvOp) -> Result<KvAnswer, Error> {
        let mut conn = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(format!("the kv store is busy: {e}")))?;
        let current = |key: &str| -> rusqlite::Result<Option<(Json, u64)>> {
            tx.query_row(
                "SELECT value, version FROM kv WHERE tenant = ?1 AND key = ?2",
                params![tenant, key],
                |r| {
                    let text: String = r.get(0)?;
                    Ok((
                        serde_json::from_str(&text).unwrap_or(Json::String(text)),
                        r.get::<_, i64>(1)?.max(0) as u64,
                    ))
                },
            )
            .optional()
        };
        let db = |e: rusqlite::Error| self.error(format!("the kv store failed: {e}"));
        let answer = match op {
            KvOp::Get { key } => KvAnswer::Value(current(key).map_err(db)?),
            KvOp::List { prefix } => {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT key FROM kv WHERE tenant = ?1 AND key >= ?2 ORDER BY key LIMIT ?3",
                    )
                    .map_err(db)?;
                let keys = stmt
                    .query_map(params![tenant, prefix, MAX_KEYS], |r| r.get::<_, String>(0))
                    .map_err(db)?
                    .filter_map(Result::ok)
                    .take_while(|k| k.starts_with(prefix.as_str()))
                    .collect();
                KvAnswer::Keys(keys)
            }
            KvOp::Delete { key } => {
                let n = tx
                    .execute(
                        "DELETE FROM kv WHERE tenant = ?1 AND key = ?2",
                        params![tenant, key],
                    )
                    .map_err(db)?;
                KvAnswer::Deleted(n > 0)
            }
            KvOp::Put { key, value } => {
                let old = current(key).map_err(db)?;
                match self
                    .write(&tx, tenant, key, value, old.as_ref().map(|o| o.1))
                    .map_err(db)?
                {
                    Ok(version) => KvAnswer::Written(version),
                    Err(full) => KvAnswer::Refused(full),
                }
            }
            KvOp::Swap {
                key,
                expected,
                value,
            } => {
                let old = current(key).map_err(db)?;
                let version = old.as_ref().map_or(0, |o| o.1);
                if version != *expected {
                    KvAnswer::Conflict(old)
                } else {
                    match self
                        .write(&tx, tenant, key, value, old.as_ref().map(|o| o.1))
                        .map_err(db)?
                    {
                        Ok(version) => KvAnswer::Written(version),
                        Err(full) => KvAnswer::Refused(full),
                    }
                }
            }
            KvOp::Add { key, by } => {
                let old = current(key).map_err(db)?;
                let base = match &old {
                    None => Some(0),
                    Some((value, _)) => value.as_i64(),
                };
                match base.and_then(|b| b.checked_add(*by)) {
                    None => KvAnswer::Refused(format!(
                        "`{key}` does not hold an integer that {by} can be added to"
                    )),
                    Some(sum) => match self
                        .write(
                            &tx,
                            tenant,
                            key,
                            &Json::from(sum),
                            old.as_ref().map(|o| o.1),
                        )
                        .map_err(db)?
                    {
                        Ok(version) => KvAnswer::Sum(sum, version),
                        Err(full) => KvAnswer::Refused(full),
                    },
                }
            }
        };
        tx.commit().map_err(db)?;
        Ok(answer)
    }

    /// Writes a key within the tenant's bounds; `Err(why)` when they would be passed.
    fn write(
        &self,
        tx: &rusqlite::Transaction<'_>,
        tenant: &str,
        key: &str,
        value: &Json,
        old_version: Option<u64>,
    ) -> rusqlite::Result<Result<u64, String>> {
        let text = value.to_string();
        let (keys, bytes): (i64, i64) = tx.query_row(
            "SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM kv
             WHERE tenant = ?1 AND key != ?2",
            params![tenant, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if old_version.is_none() && keys >= MAX_KEYS {
            return Ok(Err(format!(
                "the tenant's store holds its maximum of {MAX_KEYS} keys"
            )));
        }
        if bytes + (key.len() + text.len()) as i64 > MAX_BYTES {
            return Ok(Err(format!(
                "the tenant's store holds its maximum of {} MiB",
                MAX_BYTES >> 20
            )));
        }
        let version = old_version.unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO kv (tenant, key, value, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value, version = excluded.version",
            params![tenant, key, text, version as i64],
        )?;
        Ok(Ok(version))
    }
}
