//! What `run` shows while the workflow runs, on stderr: a live board of tasks with progress
//! bars on a terminal, or one plain line per event in a pipe.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::format::{self, Style};
use crate::TaskStatus;
use crate::events::{Event, EventKind, EventStream, LogLevel, inert};

/// Shows events until the stream ends.
/// Shows a run's events as they come: a live board (`live`) or a line each. A resumed run's
/// board starts from `history`, the events its journal held (its rows, grown ones too, as
/// they stood).
pub(super) async fn show(
    mut events: EventStream,
    live: bool,
    verbose: bool,
    history: Vec<Arc<Event>>,
) {
    if live {
        let mut board = Board::new(Style::for_stderr(), verbose);
        for event in &history {
            board.apply(event);
        }
        drop(history);
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        eprint!("\x1b[?25l");
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(event) => board.apply(&event),
                    None => break,
                },
                _ = ticker.tick() => board.draw(),
            }
        }
        board.draw();
        eprint!("\x1b[?25h");
    } else {
        let mut lines = Lines::new(Style::for_stderr(), verbose);
        while let Some(event) = events.next().await {
            lines.print(&event);
        }
    }
}

struct Row {
    node: String,
    agent: String,
    attempt: u32,
    status: TaskStatus,
    fraction: Option<f32>,
    message: String,
    since: Option<Instant>,
    latency_ms: Option<f64>,
}

/// The live view: a header, one row per task (the most interesting ones when they do not all
/// fit), redrawn in place ten times a second.
struct Board {
    style: Style,
    title: String,
    started: Instant,
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    /// Handoffs and run-level happenings, the latest last.
    notes: Vec<String>,
    drawn: usize,
    tick: usize,
    /// `-v`: allowed audit records and every guest log line go into the notes too.
    verbose: bool,
}

impl Board {
    fn new(style: Style, verbose: bool) -> Self {
        Self {
            verbose,
            style,
            title: String::new(),
            started: Instant::now(),
            rows: Vec::new(),
            index: HashMap::new(),
            notes: Vec::new(),
            drawn: 0,
            tick: 0,
        }
    }

    fn row(&mut self, node: &str) -> Option<&mut Row> {
        let i = *self.index.get(node)?;
        self.rows.get_mut(i)
    }

    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::PlanCreated(plan) => {
                self.title = format!("{} · run {}", plan.workflow, event.run_id);
                self.notes
                    .extend(plan.notes.iter().map(|n| format!("note: {n}")));
                for t in &plan.tasks {
                    // A resumed run plans its tasks again: their rows are kept as they were.
                    if self.index.contains_key(&t.node) {
                        continue;
                    }
                    self.index.insert(t.node.clone(), self.rows.len());
                    self.rows.push(Row {
                        node: t.node.clone(),
                        agent: t.agent.clone(),
                        attempt: 1,
                        status: TaskStatus::Pending,
                        fraction: None,
                        message: String::new(),
                        since: None,
                        latency_ms: None,
                    });
                }
            }
            EventKind::TaskStatus(update) => {
                if let Some(row) = self.row(&update.task.node) {
                    row.status = update.status;
                    if update.status == TaskStatus::Running {
                        row.since = Some(Instant::now());
                    }
                    if update.status.is_success() {
                        row.fraction = Some(1.0);
                    }
                    row.agent = update.task.agent.to_string();
                    row.attempt = update.task.attempt;
                    row.latency_ms = update.latency_ms;
                    if let Some(error) = &update.error {
                        row.message = match update.retry_in_ms {
                            Some(ms) => format!(
                                "{} — retry in {}",
                                inert(&error.message),
                                format::duration_ms(ms)
                            ),
                            None => inert(&error.message).into_owned(),
                        };
                    }
                }
            }
            EventKind::Progress(p) => {
                if let Some(row) = self.row(&p.task.node) {
                    row.fraction = Some(p.fraction);
                    row.message = inert(&p.message).into_owned();
                }
            }
            EventKind::Partial(p) => {
                if let Some(row) = self.row(&p.task.node) {
                    row.message = format!("partial #{}: {}", p.index, inert(&p.data.to_string()));
                }
            }
            EventKind::TaskBlocked(b) => {
                if let Some(row) = self.row(&b.task.node) {
                    row.message = format!(
                        "BLOCKED: silent {} (policy: {})",
                        format::duration_ms(b.stalled_ms),
                        blocked_action(b.action)
                    );
                }
            }
            EventKind::TaskHandoff(h) => {
                let diagnosis = h
                    .diagnosis
                    .as_ref()
                    .map_or_else(String::new, |d| d.to_string());
                self.notes.push(format!(
                    "handoff {} → {}: {}",
                    h.task.node,
                    h.diagnostic_agent,
                    inert(&diagnosis)
                ));
            }
            EventKind::RunPaused(p) => {
                self.notes.push(format!(
                    "error budget exhausted after {} failures: {:?}",
                    p.failures, p.action
                ));
            }
            EventKind::MessageSent(m) => {
                if let Some(row) = self.row(&m.task.node) {
                    row.message = format!("message #{} → {}", m.index, m.to);
                }
            }
            EventKind::MessageReceived(m) => {
                if let Some(row) = self.row(&m.task.node) {
                    row.message = format!("message #{} ← {}", m.index, m.from);
                }
            }
            EventKind::RunResumed(_) => self.notes.push("run resumed".to_owned()),
            EventKind::Dispatch(d) => self.notes.push(format!(
                "attempts go to {} (pool `{}`): {}",
                d.to, d.pool, d.reason
            )),
            EventKind::Audit(a)
                if a.decision == crate::events::Decision::Denied || self.verbose =>
            {
                let decision = match a.decision {
                    crate::events::Decision::Denied => "denied",
                    crate::events::Decision::Allowed => "allowed",
                };
                self.notes.push(format!(
                    "{decision} {}: {} ({})",
                    a.task.node,
                    inert(&a.action),
                    inert(&a.reason)
                ));
            }
            EventKind::Log(l) if self.verbose || l.level >= LogLevel::Warn => {
                self.notes.push(
                    format!("{} [{:?}] {}", l.task.node, l.stream, inert(&l.message))
                        .to_lowercase(),
                );
            }
            _ => {}
        }
    }

    fn draw(&mut self) {
        self.tick += 1;
        let (width, height) = format::terminal_size();
        let s = self.style;
        let mut counts: Vec<(TaskStatus, usize)> = Vec::new();
        for row in &self.rows {
            match counts.iter_mut().find(|(st, _)| *st == row.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((row.status, 1)),
            }
        }
        counts.sort();
        let summary: Vec<String> = counts
            .iter()
            .map(|(st, n)| format!("{n} {}", s.status(*st)))
            .collect();
        let elapsed = format::duration_ms(self.started.elapsed().as_secs_f64() * 1000.0);
        let mut lines = vec![format!(
            "{}  {}  {}",
            s.bold(&format::fit(&self.title, width.saturating_sub(30))),
            s.dim(&elapsed),
            summary.join(" · ")
        )];
        let room = height.saturating_sub(3).clamp(3, 40);
        let shown = self.pick(room);
        let node_w = shown
            .iter()
            .map(|&i| self.rows[i].node.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 28);
        let agent_w = shown
            .iter()
            .map(|&i| self.rows[i].agent.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 16);
        for &i in &shown {
            let r = &self.rows[i];
            let time = match (r.latency_ms, r.since) {
                (Some(ms), _) => format::duration_ms(ms),
                (None, Some(since)) if r.status == TaskStatus::Running => {
                    format::duration_ms(since.elapsed().as_secs_f64() * 1000.0)
                }
                _ => String::new(),
            };
            let bar = match r.fraction {
                Some(f) => format!("{} {:>3.0}%", format::bar(f, 10), f * 100.0),
                None => " ".repeat(15),
            };
            // Symbol, node, agent, status, time and bar, with their separators.
            let fixed = 4 + node_w + 1 + agent_w + 1 + 16 + 1 + 9 + 1 + 15 + 1;
            let message = format::fit(&r.message, width.saturating_sub(fixed).max(8));
            let label = if r.attempt > 1 {
                format!("{} #{}", r.status.as_str(), r.attempt)
            } else {
                r.status.as_str().to_owned()
            };
            let status = format!("{label:<16}");
            lines.push(format!(
                "  {} {:<node_w$} {:<agent_w$} {} {:>9} {} {}",
                format::symbol(r.status, self.tick),
                format::fit(&r.node, node_w),
                format::fit(&r.agent, agent_w),
                s.in_status_colour(r.status, &status),
                time,
                bar,
                s.dim(&message)
            ));
        }
        if shown.len() < self.rows.len() {
            lines.push(s.dim(&format!(
                "  … and {} more tasks",
                self.rows.len() - shown.len()
            )));
        }
        for note in self.notes.iter().rev().take(3).rev() {
            lines.push(format!(
                "  {}",
                s.paint("36", &format::fit(note, width.saturating_sub(3)))
            ));
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for line in &lines {
            out.push_str("\x1b[2K");
            out.push_str(&format::clip(line, width.saturating_sub(1)));
            out.push('\n');
        }
        out.push_str("\x1b[J");
        self.drawn = lines.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// The rows to show when at most `room` fit: running first, then failures, then what is
    /// ready, done or pending; shown in file order.
    fn pick(&self, room: usize) -> Vec<usize> {
        if self.rows.len() <= room {
            return (0..self.rows.len()).collect();
        }
        let rank = |st: TaskStatus| match st {
            TaskStatus::Running => 0,
            TaskStatus::Ready => 2,
            TaskStatus::Succeeded => 3,
            TaskStatus::Pending => 4,
            TaskStatus::Skipped | TaskStatus::Cancelled => 5,
            _ => 1,
        };
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.sort_by_key(|&i| (rank(self.rows[i].status), i));
        order.truncate(room.saturating_sub(1));
        order.sort_unstable();
        order
    }
}

/// Plain mode: one line per event that matters, timestamped from the start of the run.
struct Lines {
    style: Style,
    verbose: bool,
    start: Option<SystemTime>,
    node_w: usize,
}

impl Lines {
    fn new(style: Style, verbose: bool) -> Self {
        Self {
            style,
            verbose,
            start: None,
            node_w: 8,
        }
    }

    fn print(&mut self, event: &Event) {
        let start = *self.start.get_or_insert(event.at.0);
        let t = event
            .at
            .0
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64();
        let s = self.style;
        let stamp = s.dim(&format!("{t:>9.3}s"));
        let w = self.node_w;
        let line = match &event.kind {
            EventKind::PlanCreated(plan) => {
                self.node_w = self.node_w.max(
                    plan.tasks
                        .iter()
                        .map(|t| t.node.len())
                        .max()
                        .unwrap_or(8)
                        .clamp(4, 28),
                );
                let mut line = match (&plan.planner, &plan.iteration) {
                    (Some(_), Some(it)) => format!(
                        "{stamp} loop {}: iteration {} added ({})",
                        it.looped,
                        it.n,
                        format::listed(plan.tasks.iter().map(|t| t.node.as_str()), 8)
                    ),
                    (Some(planner), None) => format!(
                        "{stamp} plan of {planner}: {} tasks added ({})",
                        plan.tasks.len(),
                        format::listed(plan.tasks.iter().map(|t| t.node.as_str()), 8)
                    ),
                    (None, _) => format!(
                        "{stamp} plan {}: {} tasks, max_concurrency {}, run {}",
                        plan.workflow,
                        plan.tasks.len(),
                        plan.max_concurrency,
                        event.run_id
                    ),
                };
                for note in &plan.notes {
                    line.push_str(&format!("\n{stamp} note: {note}"));
                }
                line
            }
            EventKind::TaskStatus(u) => {
                let mut line = format!("{stamp} {:<w$} {}", u.task.node, s.status(u.status));
                if u.status == TaskStatus::Running {
                    line.push_str(&format!(
                        " on {} (attempt {})",
                        u.task.agent, u.task.attempt
                    ));
                }
                if let Some(ms) = u.latency_ms {
                    line.push_str(&format!(" in {}", format::duration_ms(ms)));
                }
                if let Some(fuel) = u.fuel_used {
                    line.push_str(&format!(", fuel {}", format::count(fuel)));
                }
                if let Some(e) = &u.error {
                    line.push_str(&format!(": {}", inert(&e.message)));
                }
                if let Some(ms) = u.retry_in_ms {
                    line.push_str(&format!("; retry in {}", format::duration_ms(ms)));
                }
                line
            }
            EventKind::Progress(p) => format!(
                "{stamp} {:<w$} {:>3.0}% {}",
                p.task.node,
                p.fraction * 100.0,
                inert(&p.message)
            ),
            EventKind::Partial(p) => format!(
                "{stamp} {:<w$} partial #{}: {}",
                p.task.node,
                p.index,
                format::fit(&inert(&p.data.to_string()), 100)
            ),
            EventKind::TaskBlocked(b) => format!(
                "{stamp} {:<w$} {} silent for {} (stall timeout {}): {}",
                b.task.node,
                s.paint("31", "blocked"),
                format::duration_ms(b.stalled_ms),
                format::duration_ms(b.stall_timeout_ms),
                blocked_action(b.action)
            ),
            EventKind::TaskHandoff(h) => format!(
                "{stamp} {:<w$} handed off to {}: {}",
                h.task.node,
                h.diagnostic_agent,
                h.diagnosis.as_ref().map_or_else(
                    || h.error
                        .as_ref()
                        .map_or_else(String::new, |e| inert(&e.message).into_owned()),
                    |d| format::fit(&inert(&d.to_string()), 120)
                )
            ),
            EventKind::MessageSent(m) => format!(
                "{stamp} {:<w$} message #{} → {} ({} B)",
                m.task.node, m.index, m.to, m.bytes
            ),
            EventKind::MessageReceived(m) => format!(
                "{stamp} {:<w$} message #{} ← {} ({} B)",
                m.task.node, m.index, m.from, m.bytes
            ),
            EventKind::RunPaused(p) => format!(
                "{stamp} run: error budget exhausted ({} failures of {} attempts): {:?}",
                p.failures, p.finished, p.action
            ),
            EventKind::RunResumed(r) => format!(
                "{stamp} run: resumed after {}",
                format::duration_ms(r.paused_ms)
            ),
            EventKind::Dispatch(d) => format!(
                "{stamp} run: attempts go to {} (pool `{}`): {}",
                d.to, d.pool, d.reason
            ),
            EventKind::Audit(a)
                if a.decision == crate::events::Decision::Denied || self.verbose =>
            {
                let decision = match a.decision {
                    crate::events::Decision::Denied => s.paint("31", "denied"),
                    crate::events::Decision::Allowed => "allowed".to_owned(),
                };
                format!(
                    "{stamp} {:<w$} {decision} {} `{}`: {}",
                    a.task.node,
                    a.resource.as_str(),
                    inert(&a.action),
                    inert(&a.reason)
                )
            }
            EventKind::Credential(c) => format!(
                "{stamp} run: credential {} {}: {}",
                c.credential,
                c.action.as_str(),
                inert(&c.reason)
            ),
            EventKind::Log(l) if self.verbose || l.level >= LogLevel::Warn => format!(
                "{stamp} {:<w$} {} {}",
                l.task.node,
                s.dim(&format!("[{:?} {:?}]", l.level, l.stream).to_lowercase()),
                inert(&l.message)
            ),
            _ => return,
        };
        eprintln!("{line}");
    }
}

fn blocked_action(action: crate::policy::OnBlocked) -> &'static str {
    match action {
        crate::policy::OnBlocked::Report => "report",
        crate::policy::OnBlocked::Retry => "cancel and retry",
        crate::policy::OnBlocked::Diagnose => "hand off to the diagnostic agent",
    }
}

#[cfg(test)]
mod tests {
    use super::{Board, Style};
    use crate::events::{Event, EventKind};
    use crate::model::events::{PlanCreated, TaskRef, TaskStatusUpdated};
    use crate::model::status::TaskStatus;
    use crate::model::time::Timestamp;

    fn plan(nodes: &[&str], planner: Option<&str>) -> Event {
        let json = serde_json::json!({
            "workflow": "w", "tenant": "default", "max_concurrency": 2,
            "tasks": nodes.iter().map(|n| serde_json::json!({
                "node": n, "agent": "a", "depends_on": [], "priority": 0, "critical": true,
            })).collect::<Vec<_>>(),
            "planner": planner,
        });
        let plan: PlanCreated = serde_json::from_value(json).expect("a plan");
        event(EventKind::PlanCreated(plan))
    }

    fn status(node: &str, status: TaskStatus) -> Event {
        let task = TaskRef {
            node: node.into(),
            branch: node.into(),
            agent: "a".into(),
            attempt: 1,
        };
        event(EventKind::TaskStatus(TaskStatusUpdated::new(task, status)))
    }

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 1,
            run_id: "run".into(),
            at: Timestamp::now(),
            kind,
        }
    }

    #[test]
    fn a_resumed_runs_board_keeps_its_rows_grown_ones_too_as_they_stood() {
        let mut board = Board::new(Style::off(), false);
        // What the journal held: the file's plan, a task that succeeded, a plan it grew.
        for event in [
            plan(&["plan", "after"], None),
            status("plan", TaskStatus::Succeeded),
            plan(&["plan.a", "plan.b"], Some("plan")),
            status("plan.a", TaskStatus::Succeeded),
        ] {
            board.apply(&event);
        }
        // The resumed run plans the file's tasks again.
        board.apply(&plan(&["plan", "after"], None));
        let rows: Vec<(&str, TaskStatus)> = board
            .rows
            .iter()
            .map(|r| (r.node.as_str(), r.status))
            .collect();
        assert_eq!(
            rows,
            [
                ("plan", TaskStatus::Succeeded),
                ("after", TaskStatus::Pending),
                ("plan.a", TaskStatus::Succeeded),
                ("plan.b", TaskStatus::Pending),
            ]
        );
    }
}
