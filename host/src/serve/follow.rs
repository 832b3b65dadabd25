//! Following a run's events from a sequence number to its end, for SSE and WebSocket clients:
//! what the journal holds first, then the live feed when this server runs the run (events as
//! they happen), the journal again for anything the feed no longer holds, and polling of the
//! journal when another process runs it. Every event is given once, in order, with no gap:
//! a client that reconnects from its last sequence number misses nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::App;
use crate::events::{Event, EventKind};

/// Events read from the journal at once.
const PAGE: usize = 512;
/// How often the journal is read for a run another process is running.
const POLL: Duration = Duration::from_millis(250);
/// Events queued for one slow client before its follower waits.
pub(crate) const QUEUE: usize = 1024;

/// Starts following run `run_id` from sequence number `from`; the receiver ends after the
/// run's last event (or when the run stopped without ending: it may be resumed, and a client
/// reconnects). Dropping the receiver stops the follower.
pub(crate) fn follow(app: Arc<App>, run_id: String, from: u64) -> mpsc::Receiver<Arc<Event>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        if let Err(e) = run(&app, &run_id, from.max(1), &tx).await {
            tracing::warn!(run = %run_id, "following events stopped: {e}");
        }
    });
    rx
}

enum Step {
    Ended,
    More,
}

async fn run(
    app: &App,
    run_id: &str,
    mut next: u64,
    tx: &mpsc::Sender<Arc<Event>>,
) -> Result<(), crate::Error> {
    let mut idle_polls = 0u32;
    loop {
        // What the journal holds from `next` on.
        let page = app.runtime.run_events(run_id, next, PAGE).await?;
        let full = page.len() == PAGE;
        let got = !page.is_empty();
        if let Step::Ended = send_all(app, run_id, page, &mut next, tx).await {
            return Ok(());
        }
        if full {
            continue;
        }
        if let Some(live) = app.live.get(run_id) {
            let mut stream = live.feed.stream_from(next);
            loop {
                let Some(event) = stream.next().await else {
                    // The run ended and the feed gave everything it held from `next`; any
                    // rest (none, normally) is in the journal.
                    let rest = app.runtime.run_events(run_id, next, PAGE).await?;
                    if rest.is_empty() {
                        return Ok(());
                    }
                    break;
                };
                if event.seq < next {
                    continue;
                }
                if event.seq > next {
                    // The feed no longer holds these: the journal does (they are older than
                    // what the feed holds, so committed); read them from there, then go on.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    break;
                }
                let ended = is_end(&event);
                if ended {
                    settled(app, run_id).await;
                }
                next = event.seq + 1;
                if tx.send(event).await.is_err() || ended {
                    return Ok(());
                }
            }
            idle_polls = 0;
            continue;
        }
        // Not running here: ended, interrupted, or run by another process.
        let Some(summary) = app.runtime.run_summary(run_id).await? else {
            return Ok(());
        };
        if got {
            idle_polls = 0;
            continue;
        }
        let running_elsewhere = summary.state == crate::runs::RunState::Running;
        if !running_elsewhere {
            // Read once more after the state was seen, so nothing committed in between is lost.
            let rest = app.runtime.run_events(run_id, next, PAGE).await?;
            if rest.is_empty() {
                return Ok(());
            }
            if let Step::Ended = send_all(app, run_id, rest, &mut next, tx).await {
                return Ok(());
            }
            continue;
        }
        idle_polls = idle_polls.saturating_add(1);
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(POLL.min(Duration::from_millis(25) * idle_polls)).await;
    }
}

async fn send_all(
    app: &App,
    run_id: &str,
    page: Vec<Arc<Event>>,
    next: &mut u64,
    tx: &mpsc::Sender<Arc<Event>>,
) -> Step {
    for event in page {
        if event.seq < *next {
            continue;
        }
        let ended = is_end(&event);
        if ended {
            settled(app, run_id).await;
        }
        *next = event.seq + 1;
        if tx.send(event).await.is_err() || ended {
            return Step::Ended;
        }
    }
    Step::More
}

/// Waits (briefly) until the journal has the run's end and its results document (one
/// commit), so that a client that saw the last event and then reads the run gets its results.
async fn settled(app: &App, run_id: &str) {
    for _ in 0..2000 {
        match app.runtime.run_summary(run_id).await {
            Ok(Some(s)) if s.state.is_final() => return,
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => return,
        }
    }
}

fn is_end(event: &Event) -> bool {
    matches!(event.kind, EventKind::RunCompleted(_))
}
