//! The state bus: every event of a run, published on NATS as it happens, for consumers outside
//! the process (dashboards, auditors, other services).
//!
//! Each event goes to `wasm-orch.events.<tenant>.<run>` as the same JSON a run's
//! `events.jsonl` holds (the seeds' names, `agent.task.status.updated` and the rest, are its
//! `event` field), with headers `Nats-Msg-Id: <run>:<seq>` (so a JetStream stream over these
//! subjects stores each event once) and `Wasm-Orch-Event: <name>`. The subjects are one
//! sequenced stream per run, written by its coordinator alone: a consumer reads it in order,
//! with no gap (`seq` 1, 2, 3, ...) unless the bus fell behind (see below).
//!
//! NATS is a transport, never the record: the journal is. Publishing never slows a run: the
//! publisher reads the run's feed at its own pace, like any subscriber. While NATS is
//! unreachable the client holds what it cannot send (up to [`CLIENT_CAPACITY`] messages) and
//! reconnects on its own; the run goes on either way. Tenants are isolated by the NATS
//! server's permissions: each tenant's user may subscribe only to its own subjects (see
//! `examples/nats/server.conf`).
//!
//! Subject tokens are the tenant's and run's names with `%`, `.`, `*`, `>` and whitespace
//! written as `%XX`, so two names never share a subject and no name can widen a wildcard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::events::{Event, EventFeed};

pub use crate::remote::{CLIENT_CAPACITY, PREFIX, token};

/// A connection to NATS that publishes runs' events.
#[derive(Clone, Debug)]
pub struct StateBus {
    client: async_nats::Client,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    published: AtomicU64,
    failed: AtomicU64,
}

/// Why the state bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StateBusError {
    #[error(
        "`{url}` is not a NATS address: {reason} (write it as nats://HOST:PORT, or nats://USER:PASSWORD@HOST:PORT)"
    )]
    Address { url: String, reason: String },
}

impl StateBus {
    /// Connects to the NATS server at `url` (`nats://[USER:PASSWORD@]HOST:PORT`). A server
    /// that is not up yet is not an error: the client keeps trying, and events wait for it.
    pub async fn connect(url: &str) -> Result<Self, StateBusError> {
        let client = crate::remote::connect(url, "wasm-orch state bus")
            .await
            .map_err(|e| match e {
                crate::remote::NatsError::Address { url, reason } => {
                    StateBusError::Address { url, reason }
                }
                other => StateBusError::Address {
                    url: url.to_owned(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Self {
            client,
            stats: Arc::default(),
        })
    }

    /// The connection, for the service's other subjects (plans).
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Publishes every event of a run of `tenant`, from its first, until the run ends; the
    /// returned task ends after the last one is handed to the client (and flushed, if the
    /// server is up, or if the first connection comes up within 2 s).
    pub fn publish_run(&self, tenant: &str, feed: &EventFeed) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        let mut events = feed.stream();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            // Every event of the feed is of one run: one subject, written once.
            let mut subject = None;
            while let Some(event) = events.next().await {
                let subject = subject.get_or_insert_with(|| {
                    async_nats::Subject::from(events_subject(&tenant, &event.run_id))
                });
                bus.publish(subject, &event).await;
            }
            if events.missed() > 0 {
                tracing::warn!(
                    missed = events.missed(),
                    "state bus: fell behind the run; the journal has every event"
                );
            }
            // Best effort: a server that is down gets what the client still holds when it is
            // back, if this process lives that long. A first connection still coming up (a
            // short run) is given a moment: it is most often a server just slow to answer.
            let patience = match bus.client.connection_state() {
                async_nats::connection::State::Connected => Some(5),
                async_nats::connection::State::Pending => Some(2),
                async_nats::connection::State::Disconnected => None,
            };
            if let Some(secs) = patience {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(secs), bus.client.flush())
                        .await;
            }
        })
    }

    async fn publish(&self, subject: &async_nats::Subject, event: &Event) {
        let payload = match serde_json::to_vec(event) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("state bus: event {} not encoded: {e}", event.seq);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}:{}", event.run_id, event.seq).as_str(),
        );
        headers.insert("Wasm-Orch-Event", event.kind.name());
        match self
            .client
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
        {
            Ok(()) => self.stats.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("state bus: event {} not sent: {e}", event.seq);
                self.stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Events handed to the client, and those it refused.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.stats.published.load(Ordering::Relaxed),
            self.stats.failed.load(Ordering::Relaxed),
        )
    }
}

/// The subject of a run's events: `wasm-orch.events.<tenant>.<run>`.
pub fn events_subject(tenant: &str, run_id: &str) -> String {
    format!("{PREFIX}.events.{}.{}", token(tenant), token(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_subject_escapes_its_names() {
        assert_eq!(events_subject("acme", "r.1"), "wasm-orch.events.acme.r%2E1");
    }
}
