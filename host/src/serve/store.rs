//! What the service keeps besides the journal, in `<state dir>/serve.db` (SQLite, WAL): the
//! registered DAGs (their TOML, by tenant and id), and which runs it started, of which DAG,
//! under which idempotency key. Runs themselves (events, outputs, results) are the journal's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::Error;
use crate::events::Timestamp;

/// A registered DAG.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Dag {
    pub(crate) dag_id: String,
    /// The workflow's own name (`[workflow] name`).
    pub(crate) workflow: String,
    /// How many times it was registered (1 for the first).
    pub(crate) version: u64,
    #[schema(value_type = String)]
    pub(crate) updated_at: Timestamp,
    pub(crate) tasks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// The TOML, as registered (only in a single DAG's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) toml: Option<String>,
}

/// A run the service started.
#[derive(Debug, Clone)]
pub(crate) struct ServedRun {
    pub(crate) run_id: String,
    pub(crate) tenant: String,
    pub(crate) dag_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dags (
    tenant TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    description TEXT,
    tasks INTEGER NOT NULL,
    toml TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, dag_id)
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    idempotency_key TEXT,
    UNIQUE (tenant, dag_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS runs_by_dag ON runs (tenant, dag_id, seq);
";

impl Store {
    pub(crate) fn open(state_dir: &Path) -> Result<Self, Error> {
        let path = state_dir.join("serve.db");
        let fail = |e: rusqlite::Error| Error::Journal {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(state_dir).map_err(|source| Error::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(&path).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        Error::Journal {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Registers (or replaces) a DAG; returns it as stored.
    pub(crate) fn put_dag(
        &self,
        tenant: &str,
        dag_id: &str,
        workflow: &str,
        description: Option<&str>,
        tasks: u64,
        toml: &str,
    ) -> Result<Dag, Error> {
        let now = Timestamp::now();
        let conn = self.lock();
        let version: i64 = conn
            .query_row(
                "INSERT INTO dags (tenant, dag_id, workflow, description, tasks, toml, version, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
                 ON CONFLICT (tenant, dag_id) DO UPDATE SET workflow = ?3, description = ?4,
                     tasks = ?5, toml = ?6, version = version + 1, updated_ms = ?7
                 RETURNING version",
                params![
                    tenant,
                    dag_id,
                    workflow,
                    description,
                    tasks as i64,
                    toml,
                    now.unix_millis() as i64
                ],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))?;
        Ok(Dag {
            dag_id: dag_id.to_owned(),
            workflow: workflow.to_owned(),
            version: version.max(0) as u64,
            updated_at: now,
            tasks,
            description: description.map(str::to_owned),
            toml: None,
        })
    }

    pub(crate) fn dag(&self, tenant: &str, dag_id: &str) -> Result<Option<Dag>, Error> {
        self.lock()
            .query_row(
                "SELECT dag_id, workflow, version, updated_ms, tasks, description, toml
                 FROM dags WHERE tenant = ?1 AND dag_id = ?2",
                params![tenant, dag_id],
                |r| dag_row(r, true),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Removes a DAG; whether it was there. Its runs stay (they are the journal's).
    pub(crate) fn delete_dag(&self, tenant: &str, dag_id: &str) -> Result<bool, Error> {
        let n = self
            .lock()
            .execute(
                "DELETE FROM dags WHERE tenant = ?1 AND dag_id = ?2",
                params![tenant, dag_id],
            )
            .map_err(|e| self.fail(e))?;
        Ok(n > 0)
    }

    pub(crate) fn dags(&self, tenant: &str) -> Result<Vec<Dag>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT dag_id, workflow, version, updated_ms, tasks, description, NULL
                 FROM dags WHERE tenant = ?1 ORDER BY dag_id LIMIT 1000",
            )
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![tenant], |r| dag_row(r, false))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// The run started for `key` (an `Idempotency-Key`) of this tenant's DAG, if any.
    pub(crate) fn run_for_key(
        &self,
        tenant: &str,
        dag_id: &str,
        key: &str,
    ) -> Result<Option<String>, Error> {
        self.lock()
            .query_row(
                "SELECT run_id FROM runs WHERE tenant = ?1 AND dag_id = ?2 AND idempotency_key = ?3",
                params![tenant, dag_id, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    pub(crate) fn record_run(
        &self,
        run_id: &str,
        tenant: &str,
        dag_id: &str,
        key: Option<&str>,
    ) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO runs (run_id, tenant, dag_id, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4)",
                params![run_id, tenant, dag_id, key],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Forgets a run that did not start after all (its id was recorded first).
    pub(crate) fn forget_run(&self, run_id: &str) -> Result<(), Error> {
        self.lock()
            .execute("DELETE FROM runs WHERE run_id = ?1", params![run_id])
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// The DAG a run was started from, if this service started it.
    pub(crate) fn dag_of(&self, run_id: &str) -> Result<Option<String>, Error> {
        self.lock()
            .query_row(
                "SELECT dag_id FROM runs WHERE run_id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Runs of a DAG, newest first, started before run `before` (a cursor), `limit` at most.
    pub(crate) fn runs_of_dag(
        &self,
        tenant: &str,
        dag_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT run_id FROM runs WHERE tenant = ?1 AND dag_id = ?2
                   AND seq < COALESCE((SELECT seq FROM runs WHERE run_id = ?3), 9223372036854775807)
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![tenant, dag_id, before, limit as i64], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// Every run this service started (to resume those a stopped server left unfinished).
    pub(crate) fn served_runs(&self) -> Result<Vec<ServedRun>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT run_id, tenant, dag_id FROM runs ORDER BY seq")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ServedRun {
                    run_id: r.get(0)?,
                    tenant: r.get(1)?,
                    dag_id: r.get(2)?,
                })
            })
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }
}

fn dag_row(r: &rusqlite::Row<'_>, with_toml: bool) -> rusqlite::Result<Dag> {
    let updated: i64 = r.get(3)?;
    Ok(Dag {
        dag_id: r.get(0)?,
        workflow: r.get(1)?,
        version: r.get::<_, i64>(2)?.max(0) as u64,
        updated_at: Timestamp::from_unix_millis(updated.max(0) as u64),
        tasks: r.get::<_, i64>(4)?.max(0) as u64,
        description: r.get(5)?,
        toml: if with_toml { r.get(6)? } else { None },
    })
}
