//! Attempts leased over HTTP (`/v1/work/...`): how the workers of the service's pool keep
//! working while NATS is down. A worker (`wasm-orch worker --coordinator URL`) polls for an
//! attempt, renews its lease while it runs it, sends its reports and its guest's calls here,
//! and fetches the attempt's component by digest. Each request carries a worker's token (a
//! policy `[[tokens]]` entry with `worker = true`); a tenant's token reaches none of this, and
//! a worker's reaches nothing else.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::App;
use super::api::checked_id;
use super::problem::{ApiError, ApiResult};
use crate::model::text;

/// The largest body a worker sends: an attempt's end, with an output of up to 64 MiB.
const MAX_WORK_BODY: usize = 64 << 20;
/// The longest a lease request waits for an attempt.
const MAX_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/work/lease", post(lease))
        .route("/v1/work/renew", post(renew))
        .route("/v1/work/report", post(report))
        .route("/v1/work/call", post(call))
        .route("/v1/work/blobs/{digest}", get(blob))
        .layer(DefaultBodyLimit::max(MAX_WORK_BODY))
}

/// A caller holding a worker's token (of the service's pool, if the token names one).
pub(crate) struct Worker;

impl FromRequestParts<Arc<App>> for Worker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(worker_unauthorized)?;
        let Some(only) = app.runtime.policy().token_worker(token) else {
            return Err(worker_unauthorized());
        };
        let pool = pool_name(app);
        match (only, pool) {
            (Some(only), Some(pool)) if only != pool => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this worker's token is for pool `{only}`, and this service's pool is `{pool}`"
                ),
            )),
            _ => Ok(Worker),
        }
    }
}

fn worker_unauthorized() -> ApiError {
    ApiError::unauthorized()
        .help("a worker's token: `wasm-orch token new --worker --policy FILE` (a tenant's token reaches no /v1/work route)")
}

#[cfg(feature = "nats")]
fn pool_name(app: &App) -> Option<&str> {
    app.runtime.workers().map(|p| p.name())
}

#[cfg(not(feature = "nats"))]
fn pool_name(_: &App) -> Option<&str> {
    None
}

#[cfg(feature = "nats")]
fn pool(app: &App) -> ApiResult<&crate::remote::WorkerPool> {
    app.runtime.workers().ok_or_else(no_pool)
}

fn no_pool() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "this service hands no attempts to workers",
    )
    .help("start it with `--nats URL --pool NAME`")
}

/// A worker asks for an attempt.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseRequest {
    /// The worker's id (as in its heartbeats).
    worker: String,
    /// The pool it works for: the service's.
    pool: String,
    /// How long to wait for an attempt, in milliseconds (at most 10,000; default 5,000).
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// An attempt leased: it is the worker's while it renews the lease.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LeaseGranted {
    /// The attempt's idempotency key.
    key: String,
    /// Which delivery of the attempt this is (1 for the first).
    delivered: u32,
    /// The work order: what to run, with what, under which limits.
    #[schema(value_type = Object)]
    order: Box<serde_json::value::RawValue>,
    /// Renew the lease within this many milliseconds, or it goes to another worker.
    lease_ms: u64,
}

/// Leases an attempt of the service's pool to a worker (waiting up to `wait_ms` for one):
/// only while no worker can be reached on NATS are attempts offered here.
#[utoipa::path(post, path = "/v1/work/lease", tag = "work", request_body = LeaseRequest,
    responses((status = 200, body = LeaseGranted), (status = 204, description = "No attempt came in time"),
              (status = 403, body = super::problem::ErrorBody),
              (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn lease(
    State(app): State<Arc<App>>,
    _: Worker,
    body: Bytes,
) -> ApiResult<Response> {
    let request: LeaseRequest = parse(&body)?;
    checked_id("worker id", &request.worker)?;
    #[cfg(feature = "nats")]
    {
        let pool = pool(&app)?;
        if request.pool != pool.name() {
            return Err(ApiError::not_found("pool", &request.pool)
                .help(format!("this service's pool is `{}`", pool.name())));
        }
        let wait = Duration::from_millis(request.wait_ms.unwrap_or(5_000)).min(MAX_WAIT);
        let Some(leased) = pool.lease(&request.worker, wait).await else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        let order = serde_json::value::RawValue::from_string(leased.order.to_string())
            .map_err(ApiError::internal)?;
        let lease_ms = u64::try_from(pool.lease_time().as_millis()).unwrap_or(u64::MAX);
        Ok(Json(LeaseGranted {
            key: leased.key,
            delivered: leased.delivered,
            order,
            lease_ms,
        })
        .into_response())
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = (&app, request);
        Err(no_pool())
    }
}

/// A worker still runs an attempt.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewRequest {
    worker: String,
    /// The attempt's key.
    key: String,
}

/// What became of a lease.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Renewed {
    /// `held`: still the worker's; `cancelled`: stop the attempt and report its end; `gone`:
    /// not the worker's any more (stop it; its reports are not taken).
    lease: &'static str,
}

/// Renews a worker's lease of an attempt.
#[utoipa::path(post, path = "/v1/work/renew", tag = "work", request_body = RenewRequest,
    responses((status = 200, body = Renewed), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn renew(
    State(app): State<Arc<App>>,
    _: Worker,
    body: Bytes,
) -> ApiResult<Json<Renewed>> {
    let request: RenewRequest = parse(&body)?;
    #[cfg(feature = "nats")]
    {
        use crate::workers::LeaseState;
        let lease = match pool(&app)?.renew(&request.worker, &request.key) {
            LeaseState::Held => "held",
            LeaseState::Cancelled => "cancelled",
            _ => "gone",
        };
        Ok(Json(Renewed { lease }))
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = (&app, request);
        Err(no_pool())
    }
}

/// Takes a worker's report about an attempt it leased: taken, progress, a partial result, a
/// log line, or its end (only the first end counts).
#[utoipa::path(post, path = "/v1/work/report", tag = "work",
    request_body(content = Object, description = "The report, as on NATS: {v, key, worker, report}"),
    responses((status = 204, description = "Taken"), (status = 404, body = super::problem::ErrorBody),
              (status = 409, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn report(
    State(app): State<Arc<App>>,
    _: Worker,
    body: Bytes,
) -> ApiResult<StatusCode> {
    #[cfg(feature = "nats")]
    {
        pool(&app)?
            .report(&body)
            .map_err(|e| ApiError::conflict(text::inert(text::truncate(&e, 1024))))?;
        Ok(StatusCode::NO_CONTENT)
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = (&app, body);
        Err(no_pool())
    }
}

/// Makes a call of a leased attempt's guest (a tool, the blackboard, messages) as the attempt's
/// task, exactly as for an attempt that runs here (grants, policy, quotas, rates, scope,
/// audit), and answers it.
#[utoipa::path(post, path = "/v1/work/call", tag = "work",
    request_body(content = Object, description = "The call, as on NATS: {v, key, worker, call}"),
    responses((status = 200, body = Object, description = "The answer, as on NATS"),
              (status = 404, body = super::problem::ErrorBody),
              (status = 409, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn call(
    State(app): State<Arc<App>>,
    _: Worker,
    body: Bytes,
) -> ApiResult<Response> {
    #[cfg(feature = "nats")]
    {
        let answer = pool(&app)?
            .call(&body)
            .await
            .map_err(|e| ApiError::conflict(text::inert(text::truncate(&e, 1024))))?;
        Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = (&app, body);
        Err(no_pool())
    }
}

/// A file an attempt offered for lease needs (its component, an input file), by its SHA-256.
#[utoipa::path(get, path = "/v1/work/blobs/{digest}", tag = "work",
    params(("digest" = String, Path, description = "The file's SHA-256, in hex")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, body = super::problem::ErrorBody),
              (status = 409, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn blob(
    State(app): State<Arc<App>>,
    _: Worker,
    Path(digest): Path<String>,
) -> ApiResult<Response> {
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a file's digest is 64 hexadecimal digits",
        ));
    }
    #[cfg(feature = "nats")]
    {
        let bytes = pool(&app)?
            .blob(&digest)
            .await
            .map_err(ApiError::conflict)?
            .ok_or_else(|| ApiError::not_found("file", &digest))?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    }
    #[cfg(not(feature = "nats"))]
    {
        let _ = &app;
        Err(no_pool())
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not the JSON this route takes: {}",
            text::inert(text::truncate(&e.to_string(), 512))
        ))
    })
}
