//! A run's events, live: server-sent events at `/v1/runs/{id}/events` (each event's sequence
//! number is its SSE id, so a client reconnecting with `Last-Event-ID` gets exactly what it
//! missed) and the same stream over WebSocket at `/v1/runs/{id}/ws` (`?after=SEQ`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::Deserialize;

use super::App;
use super::api::owned_run;
use super::auth::Tenant;
use super::follow::follow;
use super::problem::{ApiError, ApiResult};
use crate::events::Event;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/runs/{run_id}/events", get(events))
        .route("/v1/runs/{run_id}/ws", get(websocket))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct After {
    /// Only events after this sequence number (as `Last-Event-ID`).
    after: Option<u64>,
}

/// Where to start: after `Last-Event-ID` (or `?after=`), else from the first event.
fn start(headers: &HeaderMap, after: Option<u64>) -> ApiResult<u64> {
    let last = match headers.get("last-event-id") {
        None => after,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be an event's sequence number")
                })?,
        ),
    };
    Ok(last.map_or(1, |l| l.saturating_add(1)))
}

fn encode(event: &Event) -> Option<String> {
    serde_json::to_string(event)
        .map_err(|e| tracing::error!("an event does not encode: {e}"))
        .ok()
}

/// The run's events as server-sent events, live, to the run's end.
#[utoipa::path(get, path = "/v1/runs/{run_id}/events", tag = "runs",
    params(("run_id" = String, Path), ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"), After),
    responses((status = 200, content_type = "text/event-stream", description = "One SSE event per run event: `id` its sequence number, `event` its name, `data` its JSON"),
        (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<After>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    owned_run(&app, &tenant, &run_id).await?;
    let from = start(&headers, query.after)?;
    let rx = follow(Arc::clone(&app), run_id, from);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            let event = rx.recv().await?;
            if let Some(data) = encode(&event) {
                let sse = SseEvent::default()
                    .id(event.seq.to_string())
                    .event(event.kind.name())
                    .data(data);
                return Some((Ok(sse), rx));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The run's events over WebSocket: one text message per event (its JSON, with its `seq`),
/// then a close. The token goes in `Authorization`, or, from a browser, as the subprotocol
/// `wasm-orch.token.<token>` offered beside `wasm-orch.v1`.
#[utoipa::path(get, path = "/v1/runs/{run_id}/ws", tag = "runs",
    params(("run_id" = String, Path), After),
    responses((status = 101, description = "Switching to WebSocket"), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn websocket(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<After>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Whose run it is comes first: another tenant's is a 404, upgrade or not.
    owned_run(&app, &tenant, &run_id).await?;
    let from = start(&headers, query.after)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("not a WebSocket request: {}", e.body_text()))
            .help("connect with a WebSocket client, or read /v1/runs/{id}/events (SSE)")
    })?;
    Ok(upgrade
        .protocols([super::auth::WS_PROTOCOL])
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| send_events(socket, app, run_id, from))
        .into_response())
}

async fn send_events(mut socket: WebSocket, app: Arc<App>, run_id: String, from: u64) {
    let mut rx = follow(app, run_id, from);
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let Some(json) = encode(&event) else { continue };
                if socket.send(Message::Text(json.into())).await.is_err() {
                    return;
                }
            }
            // The client closed (or sent something: it is not asked to).
            incoming = socket.recv() => {
                match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
