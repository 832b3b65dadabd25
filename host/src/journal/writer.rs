//! The journal's writer: one thread, one connection, group commit.
//!
//! Every run's bus hands its events to the writer as it numbers them (so the journal holds
//! exactly the stream subscribers see, in the same order); blackboard writes and results come
//! the same way. The writer takes whatever has queued up (up to a batch), writes it in one
//! transaction (a run's events of a batch become one row of JSON lines, compressed (see `codec`); outputs are stored
//! once, by digest, outside the events), commits, and then marks each run's events durable up
//! to the last one committed. With `sync` durability each commit is an fsync, shared by every
//! record of the batch.
//!
//! While runs live, the writer also beats their heartbeat (every few seconds), so that
//! another process can tell a live run from one whose process died.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};

use super::queue::QueueReceiver;
use super::schema::STORE_OUTPUT;
use crate::bus::DurableMark;
use crate::model::Name;
use crate::model::events::{Event, EventKind};
use crate::model::report::RunReport;
use crate::model::time::Timestamp;

/// How often the heartbeat of live runs is written.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// The most records written in one transaction.
const BATCH: usize = 8192;
/// With `async` durability, how long the writer lets records gather before it commits them.
/// Nothing waits for an `async` commit, and every commit costs its pages, its locks and its
/// wake-ups whatever its size: a 10,000-task run commits a few hundred times, not 50,000.
/// (A `sync` commit is waited for, so it goes at once: records gather while it fsyncs.)
pub(crate) const LINGER: Duration = Duration::from_millis(4);

/// A run, as the writer knows it.
#[derive(Debug)]
pub(crate) struct RunLink {
    pub(crate) run_id: Name,
    /// The last sequence number committed.
    pub(crate) mark: Arc<DurableMark>,
    /// A write of this run failed: its journal is incomplete.
    pub(crate) failed: AtomicBool,
    pub(crate) failure: Mutex<Option<String>>,
}

impl RunLink {
    pub(crate) fn new(run_id: Name, committed: u64) -> Arc<Self> {
        let mark = Arc::new(DurableMark::default());
        mark.advance(committed);
        Arc::new(Self {
            run_id,
            mark,
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        })
    }
}

/// What the writer is given.
pub(crate) enum Record {
    Event(Arc<RunLink>, Arc<Event>),
    Board {
        run: Arc<RunLink>,
        key: String,
        value: String,
        version: u64,
    },
    /// A message a task of the run sent another: the receiver, its place in the receiver's
    /// inbox, the sender and the body.
    Message {
        run: Arc<RunLink>,
        receiver: String,
        seq: u64,
        sender: String,
        body: String,
    },
    /// The run ended: its results document (serialized here, off the run's path).
    Finished {
        run: Arc<RunLink>,
        report: Box<RunReport>,
    },
    /// Answered once everything queued before it is committed.
    Flush(SyncSender<()>),
    /// Commit what came before, and end.
    Stop,
}

/// How the writer gathers records into a commit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gather {
    /// `async`: nothing waits for a commit; let records gather for a while (see [`LINGER`]).
    Linger(Duration),
    /// `sync`: a run waits for its outcomes (and a flush for its records) to be on disk: those
    /// are committed at once, with whatever queued before them; records nobody waits for (a
    /// task's `running`, its grants) wait for the next such record, [`LINGER`] at most, so
    /// that each step of a chain costs one fsync, not one for its start and one for its end.
    Urgent,
}

pub(crate) fn run(mut conn: Connection, queue: &QueueReceiver, owner: &str, gather: Gather) {
    let rx = &queue.rx;
    let mut alive = true;
    let mut buffers = Buffers::default();
    while alive {
        let first = match rx.recv_timeout(HEARTBEAT) {
            Ok(record) => record,
            Err(RecvTimeoutError::Timeout) => {
                beat(&conn, owner);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Gather::Linger(linger) = gather
            && !matches!(first, Record::Flush(_) | Record::Stop)
        {
            // Sleeping, not waiting on the queue: publishers do not wake the writer meanwhile.
            std::thread::sleep(linger);
        }
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + LINGER;
        let mut urgent = is_urgent(&batch[0]);
        while batch.len() < BATCH && !matches!(batch.last(), Some(Record::Stop)) {
            let next = match gather {
                Gather::Urgent if !urgent => {
                    match rx
                        .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                    {
                        Ok(record) => Ok(record),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            Err(std::sync::mpsc::TryRecvError::Disconnected)
                        }
                    }
                }
                _ => rx.try_recv(),
            };
            match next {
                Ok(record) => {
                    urgent |= is_urgent(&record);
                    batch.push(record);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    alive = false;
                    break;
                }
            }
        }
        queue.taken(batch.len());
        let marks = match commit(&mut conn, &batch, &mut buffers) {
            Ok(marks) => marks,
            Err(e) => {
                tracing::error!("the journal could not record {} records: {e}", batch.len());
                fail(&batch, &e.to_string())
            }
        };
        for (link, seq) in marks {
            link.mark.advance(seq);
        }
        for record in batch {
            match record {
                Record::Flush(done) => {
                    let _ = done.send(());
                }
                Record::Stop => alive = false,
                _ => {}
            }
        }
    }
    beat(&conn, owner);
}

/// Whether something waits for this record to be on disk (with `sync` durability).
fn is_urgent(record: &Record) -> bool {
    match record {
        Record::Event(_, event) => match &event.kind {
            EventKind::TaskStatus(u) => u.status.is_final() && u.retry_in_ms.is_none(),
            _ => false,
        },
        Record::Board { .. } | Record::Message { .. } => false,
        Record::Finished { .. } | Record::Flush(_) | Record::Stop => true,
    }
}

fn beat(conn: &Connection, owner: &str) {
    let now = Timestamp::now().unix_millis();
    if let Err(e) = conn.execute(
        "UPDATE runs SET heartbeat_ms = ?1 WHERE owner = ?2 AND status = 'running'",
        params![now as i64, owner],
    ) {
        tracing::warn!("the journal's heartbeat failed: {e}");
    }
}

/// Marks every run of a failed batch as incompletely journaled; lets its waiters go.
fn fail(batch: &[Record], why: &str) -> Vec<(Arc<RunLink>, u64)> {
    let mut out = Vec::new();
    for record in batch {
        let link = match record {
            Record::Event(link, _)
            | Record::Board { run: link, .. }
            | Record::Message { run: link, .. }
            | Record::Finished { run: link, .. } => link,
            Record::Flush(_) | Record::Stop => continue,
        };
        if !link.failed.swap(true, Ordering::Relaxed) {
            *link.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
        }
        out.push((Arc::clone(link), u64::MAX));
    }
    out
}

/// A run's events of one batch.
struct Rows {
    link: Arc<RunLink>,
    first: u64,
    last: u64,
    body: Vec<u8>,
    settled: i64,
    /// Tasks planners' plans added.
    planned: i64,
}

/// The largest buffer kept from one batch to the next.
const KEPT_BUFFER: usize = 16 << 20;

/// Buffers the writer keeps from batch to batch: each batch's lines (one per run) and its
/// compressed form.
#[derive(Default)]
struct Buffers {
    lines: Vec<Vec<u8>>,
    packed: Vec<u8>,
}

fn commit(
    conn: &mut Connection,
    batch: &[Record],
    buffers: &mut Buffers,
) -> rusqlite::Result<Vec<(Arc<RunLink>, u64)>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut rows: HashMap<Name, Rows> = HashMap::new();
    let mut stored_outputs: std::collections::HashSet<Name> = std::collections::HashSet::new();
    {
        let mut output = tx.prepare_cached(STORE_OUTPUT)?;
        let mut board = tx.prepare_cached(
            "INSERT INTO blackboard (run_id, key, value, version) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, version = excluded.version
             WHERE excluded.version > blackboard.version",
        )?;
        let mut message = tx.prepare_cached(
            "INSERT OR IGNORE INTO messages (run_id, receiver, seq, sender, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for record in batch {
            match record {
                Record::Event(link, event) => {
                    let row = rows.entry(link.run_id.clone()).or_insert_with(|| Rows {
                        link: Arc::clone(link),
                        first: event.seq,
                        last: event.seq,
                        body: buffers.lines.pop().unwrap_or_default(),
                        settled: 0,
                        planned: 0,
                    });
                    row.last = event.seq;
                    if let EventKind::PlanCreated(p) = &event.kind
                        && p.planner.is_some()
                    {
                        row.planned += p.tasks.len() as i64;
                    }
                    if let EventKind::TaskStatus(u) = &event.kind {
                        if u.status.is_final() && u.retry_in_ms.is_none() {
                            row.settled += 1;
                        }
                        if let (Some(out), Some(digest)) = (&u.output, &u.output_digest) {
                            // Once per batch for each output (many tasks may give the same).
                            if stored_outputs.insert(digest.clone()) {
                                output.execute(params![digest.as_str(), out.get().as_bytes()])?;
                            }
                            // The event keeps the digest; the output is stored once.
                            let mut stripped = u.clone();
                            stripped.output = None;
                            encode(&mut row.body, event, &EventKind::TaskStatus(stripped));
                            continue;
                        }
                    }
                    encode(&mut row.body, event, &event.kind);
                }
                Record::Board {
                    run,
                    key,
                    value,
                    version,
                } => {
                    board.execute(params![run.run_id.as_str(), key, value, *version as i64])?;
                }
                Record::Message {
                    run,
                    receiver,
                    seq,
                    sender,
                    body,
                } => {
                    message.execute(params![
                        run.run_id.as_str(),
                        receiver,
                        *seq as i64,
                        sender,
                        body
                    ])?;
                }
                Record::Finished { .. } | Record::Flush(_) | Record::Stop => {}
            }
        }
        let mut events = tx.prepare_cached(
            "INSERT OR REPLACE INTO events (run_id, first_seq, last_seq, body) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut progress = tx.prepare_cached(
            "UPDATE runs SET last_seq = max(last_seq, ?2), settled = settled + ?3, updated_ms = ?4,
             heartbeat_ms = ?4, tasks = tasks + ?5 WHERE run_id = ?1",
        )?;
        let now = Timestamp::now().unix_millis() as i64;
        for (run, row) in &rows {
            super::codec::pack_into(&row.body, &mut buffers.packed);
            events.execute(params![
                run.as_str(),
                row.first as i64,
                row.last as i64,
                buffers.packed.as_slice()
            ])?;
            progress.execute(params![
                run.as_str(),
                row.last as i64,
                row.settled,
                now,
                row.planned
            ])?;
        }
        let mut finish = tx.prepare_cached(
            "UPDATE runs SET status = ?2, finished_ms = ?3, updated_ms = ?3 WHERE run_id = ?1",
        )?;
        let mut report_row =
            tx.prepare_cached("INSERT OR REPLACE INTO reports (run_id, body) VALUES (?1, ?2)")?;
        for record in batch {
            if let Record::Finished { run, report } = record {
                // A report is plain data: serializing it cannot fail.
                let body = serde_json::to_vec(&**report).unwrap_or_default();
                report_row.execute(params![run.run_id.as_str(), super::codec::pack(&body)])?;
                finish.execute(params![run.run_id.as_str(), report.status.to_string(), now])?;
            }
        }
    }
    tx.commit()?;
    Ok(rows
        .into_values()
        .map(|mut row| {
            // Kept for the next batch, unless a rare one made it huge.
            if row.body.capacity() <= KEPT_BUFFER {
                row.body.clear();
                buffers.lines.push(row.body);
            }
            (row.link, row.last)
        })
        .collect())
}

/// One journaled event: as subscribers see it, less its run's id (the row has it; a reader
/// puts it back).
#[derive(serde::Serialize)]
struct Line<'a> {
    seq: u64,
    at: Timestamp,
    #[serde(flatten)]
    kind: &'a EventKind,
}

fn encode(body: &mut Vec<u8>, event: &Event, kind: &EventKind) {
    let line = Line {
        seq: event.seq,
        at: event.at,
        kind,
    };
    // Events are plain data: serializing one cannot fail.
    if serde_json::to_writer(&mut *body, &line).is_ok() {
        body.push(b'\n');
    }
}
