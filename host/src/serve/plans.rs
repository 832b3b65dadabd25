//! Runs started from the state bus (the seeds' `agent.plan.created` as a trigger): a tenant
//! publishes a plan on `wasm-orch.plan.created.<tenant>` and the service starts it as that
//! tenant's run, exactly as `POST /v1/dags/{id}/execute` would.
//!
//! A plan is JSON: `{"dag": ID}` runs the tenant's registered DAG `ID`; with `"workflow":
//! TOML` it is registered (or replaced) first, checked like `PUT /v1/dags/{id}`; `"params"`
//! and `"max_concurrency"` are an execute request's. Sent as a NATS request, it is answered
//! with the execute response (`run_id`, `links`; the run's events are then on
//! `wasm-orch.events.<tenant>.<run_id>`) or the API's error body, and a `Wasm-Orch-Status`
//! header with the HTTP status it would have had. An `Idempotency-Key` header (or
//! `Nats-Msg-Id`) makes a repeat return the run the first one started, so a publisher that
//! saw no answer can send again safely.
//!
//! Who may publish on a tenant's subject is the NATS server's business (its permissions, as in
//! `examples/nats/server.conf`): the subject names the tenant, and only tenants of the policy
//! are served. Services share the subject as a queue group, so each plan is started once.
//! Plans are answered concurrently, at most [`IN_FLIGHT`] at a time.

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::App;
use super::api::{self, ExecuteRequest};
use super::problem::{ApiError, ApiResult};
use crate::model::text;
use crate::statebus::{PREFIX, StateBus, token};

/// Plans answered at once; more wait for a turn (NATS holds them).
const IN_FLIGHT: usize = 16;

/// The queue group of every service listening for plans.
const GROUP: &str = "wasm-orch-serve";

/// A plan, as published.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    dag: String,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    params: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    max_concurrency: Option<u32>,
}

/// Listens for plans until the process ends. Returns once the subscription is made (and,
/// when NATS is up, known to the server), so that a service that says it is ready hears plans.
pub(crate) async fn listen(app: &Arc<App>, bus: &StateBus, max_body: usize) {
    let client = bus.client().clone();
    let wildcard = format!("{PREFIX}.plan.created.*");
    let mut plans = match client.queue_subscribe(wildcard.clone(), GROUP.into()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for plans on `{wildcard}`: {e}");
            return;
        }
    };
    // While NATS is down the subscription is made when it comes back; the service does not
    // wait for that.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
    tracing::info!("starting the plans published on `{wildcard}`");
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let turns = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        while let Some(message) = plans.next().await {
            let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
                return;
            };
            let app = Arc::clone(&app);
            let client = client.clone();
            tokio::spawn(async move {
                let _turn = turn;
                let (status, body) = start(&app, &message, max_body).await.unwrap_or_else(|e| {
                    let (status, body) = e.into_parts();
                    tracing::warn!(
                        subject = %text::inert(text::truncate(message.subject.as_str(), 200)),
                        "a plan was refused ({status}): {}",
                        body.error.message
                    );
                    (status, serde_json::to_vec(&body).unwrap_or_default())
                });
                if let Some(reply) = message.reply {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Wasm-Orch-Status", status.as_str());
                    if let Err(e) = client
                        .publish_with_headers(reply, headers, body.into())
                        .await
                    {
                        tracing::warn!("cannot answer a plan: {e}");
                    }
                }
            });
        }
    });
}

/// Starts the plan in `message`: the HTTP status and JSON body of its answer.
async fn start(
    app: &Arc<App>,
    message: &async_nats::Message,
    max_body: usize,
) -> ApiResult<(StatusCode, Vec<u8>)> {
    let tenant = tenant_of(app, message.subject.as_str())?;
    if message.payload.len() > max_body {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "the plan is {} bytes; the service takes at most {max_body}",
                message.payload.len()
            ),
        ));
    }
    let plan: Plan = serde_json::from_slice(&message.payload).map_err(|e| {
        ApiError::bad_request(format!("the message is not a plan: {e}")).help(
            r#"publish JSON such as {"dag": "calc", "params": {"a": 1}}, with "workflow": "<TOML>" to register it first"#,
        )
    })?;
    let dag_id = api::checked_id("DAG id", &plan.dag)?;
    if let Some(toml) = &plan.workflow {
        api::register(app, &tenant, dag_id, toml).await?;
    }
    let key = message.headers.as_ref().and_then(|h| {
        h.get("Idempotency-Key")
            .or_else(|| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
    });
    let key = key.map(|k| api::checked_key(Some(&k))).transpose()?;
    let request = ExecuteRequest {
        params: plan.params,
        max_concurrency: plan.max_concurrency,
    };
    let execution = api::start_dag(app, &tenant, dag_id, request, key).await?;
    let status = if execution.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(&execution).map_err(ApiError::internal)?;
    Ok((status, body))
}

/// The policy's tenant whose plans `subject` carries.
fn tenant_of(app: &App, subject: &str) -> ApiResult<String> {
    let prefix = format!("{PREFIX}.plan.created.");
    let token_part = subject.strip_prefix(&prefix).unwrap_or_default();
    app.runtime
        .policy()
        .tenants()
        .find(|t| token(t) == token_part)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "unknown-tenant",
                format!(
                    "`{}` names no tenant of this service's policy",
                    text::inert(text::truncate(subject, 200))
                ),
            )
        })
}
