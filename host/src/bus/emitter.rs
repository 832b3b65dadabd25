//! Events from a running guest, within budgets: a guest that floods the status interface (or
//! stdout) cannot flood the bus.
//!
//! - progress: a token bucket; updates beyond it are coalesced (the latest wins) and flushed
//!   when tokens return (the engine calls [`TaskEmitter::flush`] on every epoch tick);
//! - logs and partial results: a count per attempt; the rest is dropped and counted;
//! - every message and partial result has a size cap;
//! - audit records have a budget of their own; past it they are counted, and summarized per
//!   kind when the attempt ends (a guest hammering a denied call cannot flood the bus);
//! - every text a guest emits goes through the run's [`Redactor`]: no secret value leaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::Bus;
use crate::model::Name;
use crate::model::events::{
    AuditRecord, AuditResource, Decision, EventKind, LogLevel, LogStream, MessageReceived,
    MessageSent, TaskGrants, TaskLog, TaskPartial, TaskProgress, TaskRef,
};
use crate::model::port::Heartbeat;
use crate::redact::Redactor;

/// The emitter of a task attempt, shared by its capabilities (status, audit) and its stdout and
/// stderr pipes.
pub(crate) type SharedEmitter = Arc<Mutex<TaskEmitter>>;

/// Locks a shared emitter (a poisoned lock is still usable: the emitter has no invariant a
/// panic could break halfway).
pub(crate) fn lock(emitter: &SharedEmitter) -> MutexGuard<'_, TaskEmitter> {
    emitter.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one task attempt may emit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmitterLimits {
    /// Log lines per attempt (status logs, stdout and stderr together).
    pub(crate) max_logs: u32,
    /// Bytes per log line or progress message; longer ones are cut.
    pub(crate) max_message_bytes: usize,
    /// Partial results per attempt.
    pub(crate) max_partials: u32,
    /// Bytes per partial result; larger ones are dropped.
    pub(crate) max_partial_bytes: usize,
    /// Sustained progress events per second.
    pub(crate) progress_per_second: f64,
    /// Progress events allowed in a burst.
    pub(crate) progress_burst: f64,
    /// Audit records per attempt.
    pub(crate) max_audits: u32,
}

impl Default for EmitterLimits {
    fn default() -> Self {
        Self {
            max_logs: 1_000,
            max_message_bytes: 4 << 10,
            max_partials: 100,
            max_partial_bytes: 64 << 10,
            progress_per_second: 20.0,
            progress_burst: 10.0,
            max_audits: 1_000,
        }
    }
}

/// How much an attempt emitted and how much was dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EmitterStats {
    pub(crate) logs: u32,
    pub(crate) dropped_logs: u64,
    pub(crate) partials: u32,
    pub(crate) dropped_partials: u64,
    pub(crate) coalesced_progress: u64,
    pub(crate) audits: u32,
    pub(crate) suppressed_audits: u64,
}

/// Publishes the events of one task attempt, within its budget.
#[derive(Debug)]
pub(crate) struct TaskEmitter {
    bus: Arc<Bus>,
    task: TaskRef,
    limits: EmitterLimits,
    stats: EmitterStats,
    tokens: f64,
    refilled: Instant,
    pending: Option<(f32, String)>,
    coalesced: u64,
    /// Unfinished lines of stdout and stderr.
    lines: [String; 2],
    /// The end of stderr, kept to explain a trap (a panic message goes there).
    stderr_tail: String,
    heartbeat: Option<Arc<Heartbeat>>,
    tenant: Name,
    redactor: Arc<Redactor>,
    /// Audit records over the budget, per kind.
    suppressed: BTreeMap<(AuditResource, Decision), u64>,
}

const STDERR_TAIL_BYTES: usize = 4 << 10;

impl TaskEmitter {
    pub(crate) fn new(bus: Arc<Bus>, task: TaskRef, limits: EmitterLimits) -> Self {
        Self {
            bus,
            task,
            tokens: limits.progress_burst,
            limits,
            stats: EmitterStats::default(),
            refilled: Instant::now(),
            pending: None,
            coalesced: 0,
            lines: Default::default(),
            stderr_tail: String::new(),
            heartbeat: None,
            tenant: Name::default(),
            redactor: Arc::new(Redactor::default()),
            suppressed: BTreeMap::new(),
        }
    }

    /// The tenant (for audit records) and the run's redactor.
    pub(crate) fn for_tenant(mut self, tenant: &str, redactor: Arc<Redactor>) -> Self {
        self.tenant = tenant.into();
        self.redactor = redactor;
        self
    }

    pub(crate) fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    /// Publishes the grants in force for this attempt.
    pub(crate) fn grants(&mut self, grants: TaskGrants) {
        self.bus.publish(EventKind::TaskGrants(grants));
    }

    /// Records a decision about something the guest asked for.
    pub(crate) fn audit(
        &mut self,
        resource: AuditResource,
        action: &str,
        decision: Decision,
        reason: &str,
    ) {
        if self.stats.audits >= self.limits.max_audits {
            self.stats.suppressed_audits += 1;
            *self.suppressed.entry((resource, decision)).or_insert(0) += 1;
            return;
        }
        self.stats.audits += 1;
        self.bus.publish(EventKind::Audit(AuditRecord {
            task: self.task.clone(),
            tenant: self.tenant.clone(),
            resource,
            action: self.clean(action, 256),
            decision,
            reason: self.clean(reason, self.limits.max_message_bytes),
        }));
    }

    /// Publishes a message this task sent.
    pub(crate) fn message_sent(&mut self, to: &str, seq: u64, bytes: u64) {
        self.bus.publish(EventKind::MessageSent(MessageSent {
            task: self.task.clone(),
            to: Name::from(to),
            index: seq,
            bytes,
        }));
    }

    /// Publishes a message this task took from its inbox.
    pub(crate) fn message_received(&mut self, from: &str, seq: u64, bytes: u64) {
        self.bus
            .publish(EventKind::MessageReceived(MessageReceived {
                task: self.task.clone(),
                from: Name::from(from),
                index: seq,
                bytes,
            }));
    }

    /// Records every progress report (coalesced or not) on `heartbeat`.
    pub(crate) fn with_heartbeat(mut self, heartbeat: Arc<Heartbeat>) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    pub(crate) fn progress(&mut self, fraction: f32, message: &str) {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let message = self.clean(message, self.limits.max_message_bytes);
        let message = message.as_str();
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.beat(fraction, message);
        }
        if self.pending.is_some() {
            self.coalesced += 1;
        }
        self.pending = Some((fraction, message.to_owned()));
        self.flush();
    }

    /// Publishes a coalesced progress update if the budget allows it now.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_none() {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.limits.progress_per_second)
            .min(self.limits.progress_burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.publish_pending();
        }
    }

    fn publish_pending(&mut self) {
        if let Some((fraction, message)) = self.pending.take() {
            self.stats.coalesced_progress += self.coalesced;
            self.bus.publish(EventKind::Progress(TaskProgress {
                task: self.task.clone(),
                fraction,
                message,
                coalesced: std::mem::take(&mut self.coalesced),
            }));
        }
    }

    pub(crate) fn partial(&mut self, data: &str) {
        if self.stats.partials >= self.limits.max_partials
            || data.len() > self.limits.max_partial_bytes
        {
            self.stats.dropped_partials += 1;
            return;
        }
        match serde_json::from_str::<serde_json::Value>(data) {
            Ok(mut data) => {
                self.redactor.json(&mut data);
                self.stats.partials += 1;
                self.bus.publish(EventKind::Partial(TaskPartial {
                    task: self.task.clone(),
                    index: self.stats.partials,
                    data,
                }));
            }
            Err(e) => {
                self.stats.dropped_partials += 1;
                self.log(
                    LogLevel::Warn,
                    LogStream::Host,
                    &format!("partial result dropped: it is not JSON ({e})"),
                );
            }
        }
    }

    pub(crate) fn log(&mut self, level: LogLevel, stream: LogStream, message: &str) {
        if self.stats.logs >= self.limits.max_logs {
            self.stats.dropped_logs += 1;
            return;
        }
        self.stats.logs += 1;
        let message = self.clean(message, self.limits.max_message_bytes);
        self.bus.publish(EventKind::Log(TaskLog {
            task: self.task.clone(),
            level,
            stream,
            message,
        }));
    }

    /// Bytes the guest wrote to stdout or stderr: each complete line becomes a log event.
    pub(crate) fn write_stream(&mut self, stream: LogStream, bytes: &[u8]) {
        let slot = usize::from(stream == LogStream::Stderr);
        let level = stream_level(stream);
        let text = String::from_utf8_lossy(bytes);
        let mut buffer = std::mem::take(&mut self.lines[slot]);
        buffer.push_str(&text);
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            if slot == 1 {
                self.keep_stderr(&line);
            }
            self.log(level, stream, line.trim_end_matches(['\n', '\r']));
        }
        // A line too long to wait for its end is published in pieces; the last bytes stay
        // behind, so that a secret across the cut is still seen whole by the next piece.
        if buffer.len() > self.limits.max_message_bytes {
            let mut cut = buffer.len().saturating_sub(self.redactor.longest());
            while !buffer.is_char_boundary(cut) {
                cut -= 1;
            }
            let piece: String = buffer.drain(..cut).collect();
            if slot == 1 {
                self.keep_stderr(&piece);
            }
            self.log(level, stream, &piece);
        }
        self.lines[slot] = buffer;
    }

    /// Keeps the end of stderr, redacted, to explain a trap.
    fn keep_stderr(&mut self, text: &str) {
        let clean = self.redactor.text(text);
        self.stderr_tail.push_str(&clean);
        if self.stderr_tail.len() > STDERR_TAIL_BYTES {
            let mut cut = self.stderr_tail.len() - STDERR_TAIL_BYTES;
            while !self.stderr_tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.stderr_tail.drain(..cut);
        }
    }

    /// The last few KiB the guest wrote to stderr (redacted).
    pub(crate) fn stderr_tail(&self) -> String {
        let pending = self.redactor.text(&self.lines[1]);
        format!("{}{pending}", self.stderr_tail)
    }

    /// `text` without secrets, cut to `max` bytes. Redacted before it is cut (with room for
    /// the longest secret), so that no cut leaves part of a secret.
    fn clean(&self, text: &str, max: usize) -> String {
        self.redactor.clean(text, max)
    }

    /// Publishes what is still pending (unfinished lines, coalesced progress) and a note of what
    /// was dropped. Call once, when the attempt ends.
    pub(crate) fn finish(&mut self) -> EmitterStats {
        for (slot, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
            let rest = std::mem::take(&mut self.lines[slot]);
            if !rest.is_empty() {
                self.log(stream_level(stream), stream, &rest);
            }
        }
        self.publish_pending();
        for ((resource, decision), n) in std::mem::take(&mut self.suppressed) {
            self.bus.publish(EventKind::Audit(AuditRecord {
                task: self.task.clone(),
                tenant: self.tenant.clone(),
                resource,
                action: "(suppressed)".to_owned(),
                decision,
                reason: format!(
                    "{n} more such records over the attempt's audit budget of {}",
                    self.limits.max_audits
                ),
            }));
        }
        let stats = self.stats;
        if stats.dropped_logs > 0 || stats.dropped_partials > 0 {
            let message = format!(
                "over this task's event budget, {} log lines and {} partial results were dropped \
                 (budget: {} log lines, {} partial results of at most {} bytes)",
                stats.dropped_logs,
                stats.dropped_partials,
                self.limits.max_logs,
                self.limits.max_partials,
                self.limits.max_partial_bytes
            );
            self.bus.publish(EventKind::Log(TaskLog {
                task: self.task.clone(),
                level: LogLevel::Warn,
                stream: LogStream::Host,
                message,
            }));
        }
        stats
    }
}

fn stream_level(stream: LogStream) -> LogLevel {
    match stream {
        LogStream::Stderr => LogLevel::Warn,
        _ => LogLevel::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::Event;

    fn emitter(limits: EmitterLimits) -> (Arc<Bus>, TaskEmitter) {
        let bus = Bus::new("run");
        let task = TaskRef {
            node: "n".into(),
            branch: "w.n".into(),
            agent: "a".into(),
            attempt: 1,
        };
        (bus.clone(), TaskEmitter::new(bus, task, limits))
    }

    fn events(bus: &Arc<Bus>) -> Vec<Arc<Event>> {
        bus.close();
        let mut stream = bus.subscribe();
        std::iter::from_fn(|| stream.blocking_next()).collect()
    }

    #[test]
    fn a_progress_flood_is_coalesced_and_the_last_update_survives() {
        // No refill during the flood (however slow the machine): the burst, then coalescing.
        let limits = EmitterLimits {
            progress_per_second: 0.0,
            ..EmitterLimits::default()
        };
        let (bus, mut e) = emitter(limits);
        for i in 0..100_000 {
            e.progress(i as f32 / 100_000.0, "working");
        }
        e.progress(1.0, "done");
        let stats = e.finish();
        let events = events(&bus);
        assert!(events.len() <= 12, "{} progress events", events.len());
        let EventKind::Progress(last) = &events[events.len() - 1].kind else {
            panic!("last event is not progress");
        };
        assert_eq!((last.fraction, last.message.as_str()), (1.0, "done"));
        assert_eq!(stats.coalesced_progress + events.len() as u64, 100_001);
    }

    #[test]
    fn logs_and_partials_beyond_the_budget_are_dropped_and_counted() {
        let limits = EmitterLimits {
            max_logs: 5,
            max_partials: 2,
            ..EmitterLimits::default()
        };
        let (bus, mut e) = emitter(limits);
        for i in 0..50 {
            e.log(LogLevel::Info, LogStream::Guest, &format!("line {i}"));
            e.partial(&i.to_string());
        }
        e.partial(&"x".repeat(1 << 20));
        let stats = e.finish();
        assert_eq!((stats.logs, stats.dropped_logs), (5, 45));
        assert_eq!((stats.partials, stats.dropped_partials), (2, 49));
        let events = events(&bus);
        assert_eq!(events.len(), 5 + 2 + 1, "budgeted events plus one note");
        let EventKind::Log(note) = &events[events.len() - 1].kind else {
            panic!("no note of the drops");
        };
        assert!(
            note.message
                .contains("45 log lines and 49 partial results were dropped")
        );
    }

    #[test]
    fn stdout_becomes_one_event_per_line_and_stderr_keeps_a_tail() {
        let (bus, mut e) = emitter(EmitterLimits::default());
        e.write_stream(LogStream::Stdout, b"hello\nwor");
        e.write_stream(LogStream::Stdout, b"ld\nunfinished");
        e.write_stream(LogStream::Stderr, "panicked at x: boom\n".as_bytes());
        e.finish();
        assert!(e.stderr_tail().contains("boom"));
        let lines: Vec<String> = events(&bus)
            .iter()
            .filter_map(|ev| match &ev.kind {
                EventKind::Log(l) => Some(format!("{:?}:{}", l.stream, l.message)),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [
                "Stdout:hello",
                "Stdout:world",
                "Stderr:panicked at x: boom",
                "Stdout:unfinished"
            ]
        );
    }
}
