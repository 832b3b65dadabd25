//! A worker's way to its coordinator over HTTP, while NATS cannot be reached: the client side
//! of `wasm-orch serve`'s `/v1/work/...` routes (lease an attempt, renew the lease, report,
//! make a guest's call, fetch a component). What is sent is what goes over NATS otherwise.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::wire::{Order, VERSION};

/// The largest body the coordinator takes from a worker (its `/v1/work` limit).
pub(crate) const MAX_HTTP_BODY: usize = 64 << 20;
/// How long a lease request waits for an attempt at the coordinator.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// The most a coordinator's answer may hold: a work order, an answer to a call.
const MAX_ANSWER: u64 = 64 << 20;

/// The coordinator's HTTP API, and the worker's token for it.
#[derive(Debug)]
pub(crate) struct HttpHome {
    client: reqwest::Client,
    pub(crate) base: String,
    token: String,
}

/// An attempt the coordinator leased to this worker.
pub(crate) struct Granted {
    pub(crate) order: Order,
    pub(crate) delivered: u32,
    /// How long the lease lasts unrenewed.
    pub(crate) lease: Duration,
}

#[derive(Serialize)]
struct LeaseRequest<'a> {
    worker: &'a str,
    pool: &'a str,
    wait_ms: u64,
}

#[derive(Deserialize)]
struct LeaseGranted {
    delivered: u32,
    order: Box<RawValue>,
    lease_ms: u64,
}

#[derive(Serialize)]
struct RenewRequest<'a> {
    worker: &'a str,
    key: &'a str,
}

#[derive(Deserialize)]
struct Renewed {
    lease: String,
}

impl HttpHome {
    /// The API at `base` (`http://HOST:PORT`), with a worker's `token`.
    pub(crate) fn new(base: &str, token: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| format!("not an HTTP address ({e}): write it as http://HOST:PORT"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("not an HTTP address: write it as http://HOST:PORT".into());
        }
        if token.trim().is_empty() {
            return Err(
                "a worker's token is needed to lease attempts (`wasm-orch token new --worker`)"
                    .into(),
            );
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<reqwest::Response, String> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        ok(path, response).await
    }

    /// Asks for an attempt of `pool`; `None` when none came in time.
    pub(crate) async fn lease(&self, worker: &str, pool: &str) -> Result<Option<Granted>, String> {
        let body = serde_json::to_vec(&LeaseRequest {
            worker,
            pool,
            wait_ms: u64::try_from(LEASE_WAIT.as_millis()).unwrap_or(u64::MAX),
        })
        .map_err(|e| e.to_string())?;
        let response = self
            .post("/v1/work/lease", body, LEASE_WAIT + Duration::from_secs(10))
            .await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let granted: LeaseGranted = serde_json::from_slice(&read(response, MAX_ANSWER).await?)
            .map_err(|e| format!("the lease does not parse: {e}"))?;
        let order: Order = serde_json::from_str(granted.order.get())
            .map_err(|e| format!("the leased work order does not parse: {e}"))?;
        if order.v != VERSION {
            return Err(format!(
                "the coordinator speaks wire version {} and this worker {VERSION}: run the same wasm-orch on both",
                order.v
            ));
        }
        Ok(Some(Granted {
            order,
            delivered: granted.delivered,
            lease: Duration::from_millis(granted.lease_ms),
        }))
    }

    /// Renews the lease of attempt `key`: `held`, `cancelled` or `gone`.
    pub(crate) async fn renew(&self, worker: &str, key: &str) -> Result<String, String> {
        let body = serde_json::to_vec(&RenewRequest { worker, key }).map_err(|e| e.to_string())?;
        let response = self
            .post("/v1/work/renew", body, Duration::from_secs(10))
            .await?;
        let renewed: Renewed = serde_json::from_slice(&read(response, 4096).await?)
            .map_err(|e| format!("the renewal does not parse: {e}"))?;
        Ok(renewed.lease)
    }

    /// Sends a report (an envelope, as JSON).
    pub(crate) async fn report(&self, envelope: Vec<u8>) -> Result<(), String> {
        self.post("/v1/work/report", envelope, Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// Makes a guest's call (as JSON) and returns the coordinator's answer (as JSON); waits up
    /// to `timeout` (a message receive may wait that long).
    pub(crate) async fn call(&self, call: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
        let response = self
            .post("/v1/work/call", call, timeout + Duration::from_secs(5))
            .await
            .map_err(|e| format!("the coordinator did not answer the call: {e}"))?;
        read(response, MAX_ANSWER).await
    }

    /// The file of digest `digest` (a component, an input file), refused past `max` bytes.
    pub(crate) async fn blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, String> {
        let path = format!("/v1/work/blobs/{digest}");
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| format!("file {digest}: {e}"))?;
        let response = ok(&path, response).await?;
        read(response, max)
            .await
            .map_err(|e| format!("file {digest}: {e}"))
    }
}

/// The response, if its status says it was taken; else an error with the coordinator's reason.
async fn ok(path: &str, response: reqwest::Response) -> Result<reqwest::Response, String> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read(response, 4096).await.unwrap_or_default();
    let reason = String::from_utf8_lossy(&body);
    Err(format!(
        "{path}: the coordinator answered {status}: {}",
        crate::model::text::inert(crate::model::text::truncate(&reason, 512))
    ))
}

/// A response's body, refused past `max` bytes (before more is read).
async fn read(mut response: reqwest::Response, max: u64) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max) {
        return Err(format!("the answer has more than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(format!("the answer has more than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
