//! What coordinator and workers say to each other on NATS, as JSON. Every message carries the
//! wire version; a peer refuses a version it does not know, with a message naming both.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::capabilities::blackboard::{BoardCall, BoardReply};
use crate::capabilities::messages::{MessageCall, MessageReply};
use crate::model::events::TaskRef;
use crate::model::limits::{FuelRate, Limits};
use crate::model::status::{ErrorKind, TaskError, TaskStatus};
use crate::model::time::Timestamp;

/// The version of the messages below (3: fuel rates reach workers, `Request::Fuel`).
pub(crate) const VERSION: u32 = 3;

/// One attempt, as a work order on a pool's queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) v: u32,
    /// Where reports go: `wasm-orch.reports.<coordinator>`.
    pub(crate) coordinator: String,
    /// The attempt's idempotency key (`<run>/<node>/<attempt>`), also its `Nats-Msg-Id`.
    pub(crate) key: String,
    pub(crate) run_id: String,
    pub(crate) tenant: String,
    pub(crate) task: TaskRef,
    /// The component's SHA-256: its name in the components' object store.
    pub(crate) component: String,
    pub(crate) limits: Limits,
    /// Whether the attempt gets a (scratch) working directory.
    pub(crate) workdir: bool,
    pub(crate) params: Box<RawValue>,
    pub(crate) upstream: Vec<UpstreamWire>,
    /// The fuel rates the attempt draws on (its tenant's, its agent's), each with the name of
    /// its account: the worker holds the rate among its own attempts of that account, sends
    /// the fuel burned home (where every worker's attempts draw from one bucket), and sleeps
    /// off the debt it is told of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) rates: Vec<(String, FuelRate)>,
    /// The task's input files, read-only under `inputs/`: each fetched by digest (from the
    /// components' object store, or the coordinator's HTTP API) and checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inputs: Vec<InputFile>,
}

/// One input file of a work order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InputFile {
    /// Where it goes under `inputs/`: `/`-separated, relative, no `..`.
    pub(crate) path: String,
    pub(crate) digest: String,
    pub(crate) bytes: u64,
}

/// How one upstream task ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UpstreamWire {
    pub(crate) node: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub(crate) output: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failed: Option<(TaskStatus, TaskError)>,
}

/// A worker's report about one attempt, to its coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) v: u32,
    pub(crate) key: String,
    pub(crate) worker: String,
    pub(crate) report: Report,
}

/// Externally tagged (`{"finished": {...}}`): an internally tagged enum cannot hold the raw
/// JSON of an output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Report {
    /// The worker took the attempt (its `delivered`-th delivery).
    Started {
        delivered: u32,
    },
    Progress {
        fraction: f32,
        message: String,
    },
    Partial {
        data: String,
    },
    Log {
        level: crate::model::events::LogLevel,
        stream: crate::model::events::LogStream,
        message: String,
    },
    /// How it ended.
    Finished(Box<Finished>),
}

/// How an attempt ended on a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Finished {
    pub(crate) status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub(crate) output: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<TaskError>,
    pub(crate) started_at: Timestamp,
    pub(crate) finished_at: Timestamp,
    pub(crate) latency_ms: u64,
    pub(crate) fuel_used: u64,
    pub(crate) memory_peak: u64,
}

/// A worker's call home for an attempt it runs: a request on `wasm-orch.reports.<coordinator>`,
/// answered with a [`CallReply`]. The coordinator checks and makes it as it would a local
/// attempt's (a tool's grant, tenant policy, quota, rate; a blackboard key's scope; a
/// message's address and limits; audit).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Call {
    pub(crate) v: u32,
    pub(crate) key: String,
    pub(crate) worker: String,
    pub(crate) call: Request,
}

/// What a worker's guest called.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Request {
    Tool {
        tool: String,
        input: String,
    },
    Blackboard(BoardCall),
    Messages(MessageCall),
    /// The fuel the guest burned since the last such call, to draw from the attempt's rates.
    Fuel {
        burned: u64,
    },
}

/// How a call went: a tool's outcome, or the blackboard's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CallReply {
    Ok(String),
    NotFound(String),
    Denied(String),
    InvalidInput(String),
    Failed(String),
    Blackboard(BoardReply),
    Messages(MessageReply),
    /// How long the guest sleeps off its rates' debt (0: none).
    Fuel {
        wait_ms: u64,
    },
}

impl Finished {
    /// An attempt that failed with `kind` before (or without) its guest's answer.
    pub(crate) fn failed(kind: ErrorKind, message: String) -> Self {
        let now = Timestamp::now();
        Self {
            status: TaskStatus::Failed,
            output: None,
            error: Some(TaskError::new(kind, message)),
            started_at: now,
            finished_at: now,
            latency_ms: 0,
            fuel_used: 0,
            memory_peak: 0,
        }
    }
}

/// A worker's heartbeat, on `wasm-orch.workers.<pool>.<worker>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    pub v: u32,
    /// The worker's id (`--id`, or host name and process id).
    pub id: String,
    pub pool: String,
    /// Attempts it runs at once, at most.
    pub slots: u32,
    /// Attempts it runs now.
    pub busy: u32,
    /// Attempts it has finished since it started.
    pub finished: u64,
    /// Tenants of the attempts it runs now.
    pub tenants: Vec<String>,
    pub started_at: Timestamp,
    /// When it sent this.
    pub at: Timestamp,
}

/// An output that may be JSON `null`: written `{"json": ...}`, so that `null` is not read as
/// no output at all.
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    #[derive(Serialize)]
    struct Written<'a> {
        json: &'a RawValue,
    }

    #[derive(Deserialize)]
    struct Read {
        json: Box<RawValue>,
    }

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Box<RawValue>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(json) => s.serialize_some(&Written { json }),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Box<RawValue>>, D::Error> {
        Ok(Option::<Read>::deserialize(d)?.map(|r| r.json))
    }

    #[cfg(test)]
    mod tests {
        use crate::remote::wire::UpstreamWire;

        #[test]
        fn a_null_output_is_an_output() {
            let wire = UpstreamWire {
                node: "a".into(),
                output: serde_json::value::RawValue::from_string("null".into()).ok(),
                failed: None,
            };
            let text = serde_json::to_string(&wire).expect("encodes");
            let back: UpstreamWire = serde_json::from_str(&text).expect("decodes");
            assert_eq!(
                back.output.map(|o| o.get().to_owned()),
                Some("null".to_owned())
            );
            let none: UpstreamWire = serde_json::from_str(r#"{"node":"a"}"#).expect("decodes");
            assert!(none.output.is_none());
        }
    }
}
