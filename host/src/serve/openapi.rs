//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, generated from the handlers and
//! their types (utoipa), so it cannot drift from what the server does.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::App;
use super::{api, stream, work};

#[derive(OpenApi)]
#[openapi(
    info(title = "wasm-orch", description = "Run DAG workflows of sandboxed WebAssembly sub-agents"),
    paths(
        api::put_dag, api::list_dags, api::get_dag, api::delete_dag, api::execute,
        api::list_runs, api::get_run, api::get_task, api::cancel_run, api::resume_run,
        stream::events, stream::websocket,
        api::me, api::workers, api::healthz, api::readyz, api::metrics,
        work::lease, work::renew, work::report, work::call, work::blob,
    ),
    modifiers(&Token),
    tags((name = "dags", description = "Registered workflows"),
         (name = "runs", description = "Runs, their events and results"),
         (name = "service", description = "Health and metrics"),
         (name = "work", description = "Attempts leased to workers over HTTP while NATS is down (a worker's token)")),
)]
struct Doc;

/// `Authorization: Bearer <token>`.
struct Token;

impl Modify for Token {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, also for tests and `wasm-orch serve --openapi`.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    // `POST /internal/agent/dag/{dag_id}/execute` is the seeds' name for the same call.
    if let Some(item) = doc.paths.paths.get("/v1/dags/{dag_id}/execute").cloned() {
        doc.paths
            .paths
            .insert("/internal/agent/dag/{dag_id}/execute".to_owned(), item);
    }
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            document_refusals(op);
        }
    }
    doc
}

/// The refusals every operation can give, documented once: 401 without a valid token, 400 for
/// a bad path, query or header, 413 for a body past the limit.
fn document_refusals(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    let responses = &mut op.responses.responses;
    let mut add = |code: &str, description: &str| {
        responses
            .entry(code.to_owned())
            .or_insert_with(|| error(description).into());
    };
    if op.security.is_some() {
        add("401", "No valid API token");
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some() {
        add("400", "A bad path, query, header or body, with the reason");
    }
    if op.request_body.is_some() {
        add("413", "The body is past the server's limit");
    }
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}
