//! The journal's tables, and opening a database file safely: a damaged file, or one written
//! by a newer wasm-orch, is refused with the reason and what to do, never used as if it were
//! empty.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::Durability;

/// The schema this wasm-orch writes and reads. Version 2 added `messages`; a version 1 file
/// is brought up to it when opened (a newer wasm-orch's file is refused).
pub(crate) const VERSION: i64 = 2;

// Rows that hold large values (sources, event batches, outputs, blackboard and kv values) are
// in rowid tables: a `WITHOUT ROWID` table keeps each row whole in its key's b-tree, so every
// update or look-up there would read (and rewrite) the large value too. A run's row is small
// and updated on every commit: its workflow source lives in `outputs`, by digest.
/// Stores an output (`?1` its digest, `?2` its body) unless that digest is stored already:
/// outputs are content-addressed, so every copy of one body is one row.
pub(crate) const STORE_OUTPUT: &str =
    "INSERT OR IGNORE INTO outputs (digest, body) VALUES (?1, ?2)";

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per run: what it is, how it is doing, and what it needs to be resumed.
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    source_path   TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    params        TEXT NOT NULL,
    status        TEXT NOT NULL,
    tasks         INTEGER NOT NULL,
    settled       INTEGER NOT NULL DEFAULT 0,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    finished_ms   INTEGER,
    owner         TEXT NOT NULL,
    heartbeat_ms  INTEGER NOT NULL,
    directory     TEXT NOT NULL
);

-- An ended run's results document (compressed, see `codec`): one per run, so not by digest.
CREATE TABLE IF NOT EXISTS reports (
    run_id TEXT PRIMARY KEY,
    body   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_age ON runs (created_ms);
CREATE INDEX IF NOT EXISTS runs_running ON runs (owner) WHERE status = 'running';

-- The run's events, in order, a batch per row (JSON lines); outputs are referenced by digest.
CREATE TABLE IF NOT EXISTS events (
    run_id    TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    body      BLOB NOT NULL,
    PRIMARY KEY (run_id, first_seq)
);

-- Outputs and workflow sources, once each, by SHA-256.
CREATE TABLE IF NOT EXISTS outputs (
    digest TEXT PRIMARY KEY,
    body   BLOB NOT NULL
);

-- Every blackboard key of a run, as last written.
CREATE TABLE IF NOT EXISTS blackboard (
    run_id  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- The `kv` tool: one store per tenant, kept across runs and processes.
CREATE TABLE IF NOT EXISTS kv (
    tenant  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- Every message a run's tasks sent one another, by receiver and place in its inbox: what a
-- resumed run's inboxes are filled again from (the events hold sizes, never bodies).
CREATE TABLE IF NOT EXISTS messages (
    run_id   TEXT NOT NULL,
    receiver TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    sender   TEXT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (run_id, receiver, seq)
);

-- Memoized tasks: a key of everything an output depends on, and the output it gave.
CREATE TABLE IF NOT EXISTS memo (
    key        TEXT PRIMARY KEY,
    digest     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    node       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Why a journal cannot be used.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Not a database, or a damaged one.
    Damaged(String),
    /// Written by a newer wasm-orch.
    Newer(i64),
    /// The file system refused.
    Io(String),
}

/// Opens (creating it if needed) the journal at `path` for a writer or a reader. Another
/// process opening the same file at the same moment is waited for (up to ten seconds).
pub(crate) fn open(path: &Path, durability: Durability) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Io(e.to_string()))?;
    }
    let started = std::time::Instant::now();
    loop {
        match try_open(path, durability) {
            Err(Attempt::Busy(why)) if started.elapsed() < Duration::from_secs(10) => {
                tracing::debug!("the journal is busy ({why}); trying again");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(Attempt::Busy(why)) => {
                return Err(OpenError::Io(format!(
                    "another process has held it for ten seconds ({why})"
                )));
            }
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(conn) => return Ok(conn),
        }
    }
}

enum Attempt {
    Busy(String),
    Failed(OpenError),
}

fn classify(e: rusqlite::Error) -> Attempt {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Attempt::Busy(e.to_string())
        }
        _ => Attempt::Failed(OpenError::Damaged(e.to_string())),
    }
}

fn try_open(path: &Path, durability: Durability) -> Result<Connection, Attempt> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(classify)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Attempt::Failed(OpenError::Io(format!(
            "the file system does not allow a write-ahead log (journal mode `{mode}`)"
        ))));
    }
    // `async`: a checkpoint copies the newest version of every page in the log back to the
    // database, so a long log (16,384 pages, 64 MiB) copies a busy page (a run's row, the end
    // of its events) once where a short one would copy it again and again; the log is cut back
    // to 16 MiB after. `sync`: a short log (1,000 pages) that is written over again from its
    // start after each checkpoint, since an fsync of a file that grew costs twice one that did
    // not (it must write the file's new size too): 0.25 ms against 0.12 ms here.
    let (sync, log) = match durability {
        Durability::Sync => ("FULL", 1000),
        Durability::Async => ("NORMAL", 16384),
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA wal_autocheckpoint = {log}; \
         PRAGMA journal_size_limit = 16777216;"
    ))
    .map_err(classify)?;
    // Created (or checked) in one write transaction: two processes never both create it.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(classify)?;
    let checked = check_or_create(&conn);
    let end = if checked.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = conn.execute_batch(end).map_err(classify);
    checked?;
    ended?;
    Ok(conn)
}

fn check_or_create(conn: &Connection) -> Result<(), Attempt> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(classify)?;
    // A new file has no tables yet.
    let version: Option<String> = if has_meta {
        conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(classify)?
    } else {
        None
    };
    match version.map(|v| v.parse::<i64>()) {
        Some(Ok(v)) if v > VERSION => Err(Attempt::Failed(OpenError::Newer(v))),
        Some(Ok(VERSION)) => Ok(()),
        // An older schema: every table it lacks is created (each is `IF NOT EXISTS`), in the
        // same transaction as the version's change.
        Some(Ok(_)) => {
            conn.execute_batch(TABLES).map_err(classify)?;
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema'",
                [VERSION.to_string()],
            )
            .map_err(classify)?;
            Ok(())
        }
        Some(Err(_)) => Err(Attempt::Failed(OpenError::Damaged(
            "its schema version is not a number".into(),
        ))),
        None => {
            conn.execute_batch(TABLES).map_err(classify)?;
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?1)",
                [VERSION.to_string()],
            )
            .map_err(classify)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_journal_is_brought_up_to_date_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("journal.db");
        {
            // What wasm-orch wrote before messages were journaled.
            let conn = Connection::open(&path).expect("a database");
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                 INSERT INTO meta VALUES ('schema', '1');
                 CREATE TABLE blackboard (run_id TEXT NOT NULL, key TEXT NOT NULL,
                     value TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (run_id, key));
                 INSERT INTO blackboard VALUES ('r1', 'k', '1', 1);",
            )
            .expect("the old schema");
        }
        let conn = open(&path, Durability::Async).expect("opened");
        let version: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .expect("a version");
        assert_eq!(version, VERSION.to_string());
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM blackboard", [], |r| r.get(0))
            .expect("the old rows");
        assert_eq!(kept, 1);
        conn.execute("INSERT INTO messages VALUES ('r1', 'b', 1, 'a', '{}')", [])
            .expect("the new table");
    }
}
