//! The journal: every run's plan, events, outputs, blackboard, messages and results, in one
//! SQLite file per state directory (`<state dir>/journal.db`, WAL), and the `kv` tool's
//! stores and the memo of cached tasks beside them.
//!
//! - The event stream subscribers see *is* the journal: each run's bus hands the writer every
//!   event as it numbers it (see `writer`), so `Last-Event-ID`, `runs show`, and resume all
//!   read the same records.
//! - Outputs are stored once, by SHA-256 digest, and referenced from events.
//! - Durability: `async` (WAL, `synchronous = NORMAL`): what was committed survives a killed
//!   process, and the last commits may be lost on a power failure or an OS crash; `sync`
//!   (`synchronous = FULL`): every commit is on disk when it returns, and a task's outcome is
//!   committed before the run acts on it (group commit: many records share one fsync).
//! - A run's results document is committed with its last events. With `async` durability the
//!   run does not wait for that commit: a read through the same journal does (it waits for
//!   everything sent before it), and a journal that is dropped commits what it was sent.
//! - A run whose process died is told from a live one by the kernel (same machine) or by
//!   its heartbeat (three beats late).
//! - A damaged file, a missing output, or a journal written by a newer wasm-orch is an error
//!   naming the file and what to do; never an empty journal, never a run taken as finished.
//!
//! It never runs anything: the runtime writes and reads it.

mod codec;
mod fold;
mod kv;
mod memo;
mod owner;
mod prune;
mod queue;
mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

#[cfg(feature = "fuzzing")]
pub(crate) use self::codec::unpack as unpack_events;
pub(crate) use self::fold::Folded;
pub(crate) use self::kv::{KvAnswer, KvOp};
pub use self::prune::Pruned;
use self::queue::QueueSender;
pub use self::read::{RunFilter, RunState, RunSummary};
use self::schema::OpenError;
use self::writer::Record;
pub(crate) use self::writer::RunLink;
use crate::bus::{DurableMark, Sink};
use crate::error::Error;
use crate::model::events::Event;
use crate::model::report::RunReport;
use crate::model::time::Timestamp;

/// How durable the journal is (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Survives a killed process; the last commits may be lost to a power failure.
    #[default]
    Async,
    /// Survives a power failure: a task's outcome is on disk before the run acts on it.
    Sync,
}

/// A state directory's journal.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    durability: Durability,
    tx: Mutex<Option<QueueSender>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// For reads and short writes (a run's first row, pruning).
    conn: Mutex<Connection>,
    /// For the `kv` tool (its transactions are its own).
    kv: Mutex<Connection>,
    /// This process, as the owner of the runs it starts (see `owner`).
    owner: String,
}

/// A new run, as the journal records it before it starts.
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) workflow: &'a str,
    pub(crate) source_path: &'a Path,
    pub(crate) source_text: &'a str,
    pub(crate) params: &'a [(String, String)],
    pub(crate) tasks: usize,
    pub(crate) directory: &'a Path,
}

impl Journal {
    /// Opens (creating it if needed) the journal of `state_dir`.
    pub(crate) fn open(state_dir: &Path, durability: Durability) -> Result<Arc<Self>, Error> {
        let path = state_dir.join("journal.db");
        let open = |d| schema::open(&path, d).map_err(|e| open_error(&path, e));
        let writer_conn = open(durability)?;
        let conn = open(durability)?;
        let kv = open(durability)?;
        let owner = owner::this_process();
        let (tx, rx) = queue::queue();
        let writer = std::thread::Builder::new()
            .name("wasm-orch-journal".into())
            .spawn({
                let owner = owner.clone();
                let gather = match durability {
                    Durability::Async => writer::Gather::Linger(writer::LINGER),
                    Durability::Sync => writer::Gather::Urgent,
                };
                move || writer::run(writer_conn, &rx, &owner, gather)
            })
            .map_err(|e| Error::Journal {
                path: path.clone(),
                message: format!("cannot start its writer thread: {e}"),
            })?;
        Ok(Arc::new(Self {
            path,
            durability,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            conn: Mutex::new(conn),
            kv: Mutex::new(kv),
            owner,
        }))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An error about this journal: the file, what went wrong, what to do.
    pub(crate) fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::Journal {
            path: self.path.clone(),
            message: what.to_string(),
        }
    }

    fn send(&self, record: Record) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(tx) = tx
            && tx.send(record).is_err()
        {
            tracing::error!("the journal's writer has stopped: a record was lost");
        }
    }

    /// Records a new run (committed before it starts) and links it to the writer.
    pub(crate) fn begin(&self, run: &NewRun<'_>) -> Result<Arc<RunLink>, Error> {
        let now = Timestamp::now().unix_millis() as i64;
        let params = serde_json::to_string(run.params).unwrap_or_else(|_| "[]".into());
        let source_digest = crate::model::digest::sha256_hex(run.source_text.as_bytes());
        let failed = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::RunIdInUse(run.run_id.to_owned())
            }
            e => self.error(format!("cannot record run `{}`: {e}", run.run_id)),
        };
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(failed)?;
        tx.execute(
            schema::STORE_OUTPUT,
            params![source_digest, run.source_text.as_bytes()],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT INTO runs (run_id, tenant, workflow, source_path, source_digest, params,
                 status, tasks, created_ms, started_ms, updated_ms, owner, heartbeat_ms,
                 directory)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?8, ?8, ?9, ?8, ?10)",
            params![
                run.run_id,
                run.tenant,
                run.workflow,
                run.source_path.display().to_string(),
                source_digest,
                params,
                run.tasks as i64,
                now,
                self.owner,
                run.directory.display().to_string(),
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(RunLink::new(run.run_id.into(), 0))
    }

    /// Takes a journaled run over to resume it here: it is `running` again, owned by this
    /// process, numbered on from its last event.
    pub(crate) fn reopen(&self, run_id: &str, last_seq: u64) -> Result<Arc<RunLink>, Error> {
        let now = Timestamp::now().unix_millis() as i64;
        self.conn()
            .execute(
                "UPDATE runs SET status = 'running', owner = ?2, heartbeat_ms = ?3,
                     updated_ms = ?3, finished_ms = NULL WHERE run_id = ?1",
                params![run_id, self.owner, now],
            )
            .map_err(|e| self.error(format!("cannot take run `{run_id}` over: {e}")))?;
        Ok(RunLink::new(run_id.into(), last_seq))
    }

    /// Where a run's bus sends its events.
    pub(crate) fn sink(&self, link: &Arc<RunLink>) -> Box<dyn Sink> {
        Box::new(RunSink {
            link: Arc::clone(link),
            tx: self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sync: self.durability == Durability::Sync,
        })
    }

    /// Records a blackboard write of a run.
    pub(crate) fn board(&self, link: &Arc<RunLink>, key: &str, value: &str, version: u64) {
        self.send(Record::Board {
            run: Arc::clone(link),
            key: key.to_owned(),
            value: value.to_owned(),
            version,
        });
    }

    /// Records a message a task of a run sent another (`seq`: its place in `receiver`'s
    /// inbox).
    pub(crate) fn message(
        &self,
        link: &Arc<RunLink>,
        receiver: &str,
        seq: u64,
        sender: &str,
        body: &str,
    ) {
        self.send(Record::Message {
            run: Arc::clone(link),
            receiver: receiver.to_owned(),
            seq,
            sender: sender.to_owned(),
            body: body.to_owned(),
        });
    }

    /// Records the end of a run and its results document (the writer serializes it). Returns
    /// whether the caller should wait for it ([`flush`](Self::flush)): with `sync`
    /// durability. Otherwise it is committed with the run's last events, and every read
    /// through this journal waits for what was sent before it.
    pub(crate) fn finish(&self, link: &Arc<RunLink>, report: Box<RunReport>) -> bool {
        self.send(Record::Finished {
            run: Arc::clone(link),
            report,
        });
        self.durability == Durability::Sync
    }

    /// Waits until everything sent so far is committed.
    pub(crate) fn flush(&self) {
        let (done, wait) = sync_channel(1);
        self.send(Record::Flush(done));
        let _ = wait.recv();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // What was sent before is committed; a subscriber holding a bus keeps no writer alive.
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(Record::Stop);
        }
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

fn open_error(path: &Path, e: OpenError) -> Error {
    let message = match e {
        OpenError::Damaged(why) => format!(
            "it is damaged or not a journal ({why}): move it aside (wasm-orch starts a new one) \
             or restore it from a backup"
        ),
        OpenError::Newer(v) => format!(
            "it was written by a newer wasm-orch (schema {v}, this one reads up to {}): use that \
             version, or point --state-dir elsewhere",
            schema::VERSION
        ),
        OpenError::Io(why) => format!("it cannot be opened: {why}"),
    };
    Error::Journal {
        path: path.to_path_buf(),
        message,
    }
}

/// A run's events, on their way to the writer.
#[derive(Debug)]
struct RunSink {
    link: Arc<RunLink>,
    tx: Option<QueueSender>,
    sync: bool,
}

impl Sink for RunSink {
    fn append(&self, event: &Arc<Event>) {
        if let Some(tx) = &self.tx
            && tx
                .send(Record::Event(Arc::clone(&self.link), Arc::clone(event)))
                .is_err()
        {
            tracing::error!(
                "the journal's writer has stopped: event {} was lost",
                event.seq
            );
        }
    }

    fn durable(&self) -> Option<&DurableMark> {
        self.sync.then_some(&*self.link.mark)
    }
}
