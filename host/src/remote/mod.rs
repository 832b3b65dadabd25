//! Attempts on other machines: a coordinator hands attempts to `wasm-orch worker` processes
//! through a NATS JetStream work queue, and the workers run them in the same sandboxed engine
//! as the local executor.
//!
//! The scheduler does not know where an attempt runs: [`Dispatch`](dispatch::Dispatch) is an
//! [`Executor`](crate::model::port::Executor) that sends an attempt to a worker when it can,
//! and runs it here when it cannot. NATS is the transport; the coordinator's journal stays the
//! record.
//!
//! On the wire (subjects under `wasm-orch.`, tokens escaped as in [`token`]):
//! - `work.<pool>`: the pool's queue, in stream [`STREAM`] (work-queue retention: a message
//!   is gone once a worker acknowledges it). Each message is one attempt, its `Nats-Msg-Id`
//!   the attempt's idempotency key, so a repeated publish is stored once. The workers of a pool
//!   share one durable pull consumer, `pool-<pool>`: each message goes to one of them; one that
//!   is not acknowledged within the ack wait (the worker died) is delivered again, to any,
//!   up to the consumer's max-deliver count; after that the server's max-deliveries advisory
//!   ends the attempt as `worker-lost`. A running attempt's worker sends in-progress acks so
//!   that a long attempt is not redelivered while its worker lives.
//! - `reports.<coordinator>`: what workers report about the coordinator's attempts: taken
//!   (at once by a delivery after the first; by a first delivery just before anything else it
//!   sends, so a short attempt's only report is its end), progress, partial results, logs, and the end (only the first end of an attempt counts);
//!   and, as requests, their guests' tool and blackboard calls, which the coordinator checks,
//!   makes and audits (on one subject, so a call is read after the report that its worker took the
//!   attempt, and is answered only for that worker).
//! - `cancel.<coordinator>`: attempts the coordinator stopped.
//! - `workers.<pool>.<worker>`: each worker's heartbeat (slots, load, tenants), every
//!   [`HEARTBEAT`], and at once when asked on `ping.<pool>`: a coordinator that just started
//!   asks, so that it knows its pool's workers in a round trip, not a heartbeat.
//! - Components travel by digest, in the JetStream object store [`COMPONENTS`]; a worker
//!   checks the digest of what it fetched, compiles it once and keeps it. A fetch that stalls
//!   is given up ([`fetch`]), so that no attempt waits for it forever.
//!
//! - Blackboard calls travel as tool calls do: the coordinator resolves each key in the
//!   task's scope, keeps the value in the run's board (journaled as any write) and audits a
//!   refusal; the worker holds no board.
//!
//! - While NATS cannot be reached, the coordinator's degraded attempts are also offered for
//!   lease over HTTP (`lease`; `wasm-orch serve`'s `/v1/work` routes), and a worker started
//!   with `--coordinator` leases them there (`http`): the same work orders, reports and calls.
//!
//! - A task's input files travel as components do: the coordinator stages them (as for an
//!   attempt here), lists them by digest in the work order and puts them in the object store
//!   (or serves them to leasing workers); the worker fetches, checks and places them
//!   read-only under `inputs/` (`files`).
//!
//! What a worker cannot do: reach secrets (their values stay in the coordinator's process).
//! An attempt whose component imports secrets runs on the coordinator.

pub(crate) mod dispatch;
mod fetch;
mod files;
mod http;
mod lease;
pub(crate) mod pool;
mod wire;
pub(crate) mod worker;

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream;

pub use self::lease::{LeaseState, Leased};
pub use self::pool::{PoolOptions, WorkerPool};
pub use self::wire::WorkerStatus;
pub use self::worker::{WorkerOptions, run_worker};

/// The first token of every subject the runtime uses.
pub const PREFIX: &str = "wasm-orch";

/// The JetStream stream of every pool's work queue.
pub const STREAM: &str = "WASM_ORCH_WORK";

/// The JetStream object store of components, by SHA-256.
pub const COMPONENTS: &str = "wasm-orch-components";

/// Messages the client holds while it cannot reach the server.
pub const CLIENT_CAPACITY: usize = 65_536;

/// How often a worker says it is alive; three missed beats and it is taken for gone.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// Why a connection to NATS, or a pool on it, could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    #[error(
        "`{url}` is not a NATS address: {reason} (write it as nats://HOST:PORT, or nats://USER:PASSWORD@HOST:PORT)"
    )]
    Address { url: String, reason: String },
    #[error(
        "`{0}` is not a pool name: use 1 to 64 letters, digits, `-` or `_` (e.g. `default`, `gpu-1`)"
    )]
    Pool(String),
    #[error("NATS JetStream at `{url}`: {reason}")]
    JetStream { url: String, reason: String },
    #[error("--coordinator `{url}`: {reason}")]
    Coordinator { url: String, reason: String },
}

/// Connects to the NATS server at `url` (`nats://[USER:PASSWORD@]HOST:PORT`). A server that is
/// not up yet is not an error: the client keeps trying.
pub(crate) async fn connect(url: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    let address: async_nats::ServerAddr =
        url.parse()
            .map_err(|e: std::io::Error| NatsError::Address {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
    // The client does not read credentials out of the address itself.
    let options = match (address.username(), address.password()) {
        (Some(user), password) => async_nats::ConnectOptions::with_user_and_password(
            percent_decoded(user),
            percent_decoded(password.unwrap_or_default()),
        ),
        (None, _) => async_nats::ConnectOptions::new(),
    };
    let label = name.to_owned();
    options
        .name(name)
        .client_capacity(CLIENT_CAPACITY)
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let label = label.clone();
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("{label}: connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("{label}: disconnected from NATS; reconnecting")
                    }
                    // This process let its connection go (it is ending): nothing to warn of.
                    async_nats::Event::Closed => {
                        tracing::debug!("{label}: the NATS connection is closed")
                    }
                    other => tracing::warn!("{label}: NATS: {other}"),
                }
            }
        })
        .connect(address)
        .await
        .map_err(|e| NatsError::Address {
            url: url.to_owned(),
            reason: e.to_string(),
        })
}

/// A URL's user or password as written before it was percent-encoded.
pub(crate) fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `name` as one subject token: `%`, `.`, `*`, `>`, whitespace and control characters as
/// `%XX` (their UTF-8 bytes), everything else as it is.
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Checks a pool's name: it becomes a subject token and a consumer's name.
pub(crate) fn check_pool(pool: &str) -> Result<(), NatsError> {
    let ok = !pool.is_empty()
        && pool.len() <= 64
        && pool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NatsError::Pool(
            crate::model::text::truncate(pool, 80).to_owned(),
        ))
    }
}

/// The queue subject of `pool`.
pub(crate) fn work_subject(pool: &str) -> String {
    format!("{PREFIX}.work.{pool}")
}

/// Where a coordinator asks `pool`'s workers for a heartbeat now.
pub(crate) fn ping_subject(pool: &str) -> String {
    format!("{PREFIX}.ping.{}", token(pool))
}

/// How long an unacknowledged attempt waits before it is delivered again, and how often it
/// may be delivered, unless a pool's consumer already says otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueSettings {
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
}

/// The work stream and `pool`'s consumer, created if missing. An existing consumer keeps its
/// settings (returned).
pub(crate) async fn queue(
    js: &jetstream::Context,
    pool: &str,
    wanted: QueueSettings,
) -> Result<
    (
        jetstream::stream::Stream,
        jetstream::consumer::PullConsumer,
        QueueSettings,
    ),
    String,
> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{PREFIX}.work.>")],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(120),
            description: Some(
                "wasm-orch: attempts waiting for a worker, one subject per pool".into(),
            ),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("the work stream `{STREAM}`: {e}"))?;
    let name = format!("pool-{pool}");
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: work_subject(pool),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: wanted.ack_wait,
                max_deliver: wanted.max_deliver,
                max_ack_pending: -1,
                description: Some(format!("wasm-orch: the workers of pool `{pool}`")),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("the consumer `{name}` of `{STREAM}`: {e}"))?;
    let config = &consumer
        .info()
        .await
        .map_err(|e| format!("the consumer `{name}` of `{STREAM}`: {e}"))?
        .config;
    let settings = QueueSettings {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
    };
    Ok((stream, consumer, settings))
}

/// The components' object store, created if missing.
pub(crate) async fn components(
    js: &jetstream::Context,
) -> Result<jetstream::object_store::ObjectStore, String> {
    match js.get_object_store(COMPONENTS).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: COMPONENTS.to_owned(),
                description: Some("wasm-orch: components by SHA-256".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the object store `{COMPONENTS}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_split_or_widen_a_subject() {
        assert_eq!(token("acme"), "acme");
        assert_eq!(token("run.2"), "run%2E2");
        assert_eq!(token("a*>b c"), "a%2A%3Eb%20c");
        assert_eq!(token("100%"), "100%25");
        assert_eq!(token(""), "%00");
        // Injective where it matters: an escaped name never equals a plain one.
        assert_ne!(token("a.b"), token("a%2Eb"));
    }

    #[test]
    fn credentials_in_an_address_are_decoded() {
        assert_eq!(percent_decoded("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decoded("plain"), "plain");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }

    #[test]
    fn pool_names_are_checked() {
        assert!(check_pool("default").is_ok());
        assert!(check_pool("gpu-1_b").is_ok());
        for bad in ["", "a.b", "a b", "*", ">", "a/b", &"x".repeat(65)] {
            assert!(check_pool(bad).is_err(), "{bad}");
        }
    }
}
