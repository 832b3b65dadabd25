//! The JSON API: DAGs (register, list, read, execute) and runs (list, read, a task's view,
//! cancel, resume), health and metrics. Each handler authenticates its caller's tenant and
//! answers only with what belongs to it; another tenant's DAG or run is a 404.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Tenant;
use super::problem::{ApiError, ApiResult};
use super::store::Dag;
use super::{App, track};
use crate::events::{Event, EventKind};
use crate::model::text;
use crate::report::{RunReport, TaskReport};
use crate::runs::{RunFilter, RunState, RunSummary};
use crate::{RunOptions, Workflow};

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/dags", get(list_dags))
        .route(
            "/v1/dags/{dag_id}",
            put(put_dag).get(get_dag).delete(delete_dag),
        )
        .route("/v1/dags/{dag_id}/execute", post(execute))
        .route("/internal/agent/dag/{dag_id}/execute", post(execute))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{run_id}", get(get_run))
        .route("/v1/runs/{run_id}/tasks/{node}", get(get_task))
        .route("/v1/runs/{run_id}/cancel", post(cancel_run))
        .route("/v1/runs/{run_id}/resume", post(resume_run))
        .route("/v1/me", get(me))
        .route("/v1/workers", get(workers))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// An id from a path: a name (letters, digits, `_`, `-`, `.`; at most 128).
pub(crate) fn checked_id<'a>(what: &str, id: &'a str) -> ApiResult<&'a str> {
    if crate::config::is_valid_name(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "`{}` is not a valid {what}",
            text::inert(text::truncate(id, 128))
        ))
        .help("use letters, digits, `_`, `-` and `.`, at most 128 characters"))
    }
}

/// The registered DAG's file name: relative component paths resolve against its directory.
fn dag_path(app: &App, dag_id: &str) -> std::path::PathBuf {
    app.root.join(format!("{dag_id}.toml"))
}

/// A registered DAG's components must be inside the server's components directory: a tenant
/// names only what the operator put there, never any file of the host.
fn confine(app: &App, workflow: &Workflow) -> ApiResult<()> {
    for component in workflow.components() {
        let inside = component
            .canonicalize()
            .map(|c| c.starts_with(&app.components) && c.is_file())
            .unwrap_or(false);
        if !inside {
            let shown = component
                .strip_prefix(&app.components)
                .unwrap_or(component)
                .display()
                .to_string();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-workflow",
                format!(
                    "component `{}` is not a file in the server's components directory",
                    text::inert(text::truncate(&shown, 256))
                ),
            )
            .help(
                "name a component inside the components directory (`--components-dir`), \
                 relative to the workflows directory (`--workflows-dir`)",
            ));
        }
    }
    Ok(())
}

fn body_text(body: &Bytes) -> ApiResult<&str> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not UTF-8 text (at byte {})",
            e.valid_up_to()
        ))
    })
}

/// Registers (or replaces) a workflow as DAG `dag_id` of the caller's tenant. The body is
/// the workflow's TOML; it is validated (components compiled and checked, the policy
/// applied) before it is stored.
#[utoipa::path(put, path = "/v1/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path, description = "The DAG's id")),
    request_body(description = "The workflow file (any content type: the body is read as UTF-8 TOML)",
        content((String = "application/toml"), (String = "text/plain"))),
    responses(
        (status = 201, description = "Registered", body = Dag),
        (status = 200, description = "Replaced", body = Dag),
        (status = 400, description = "Invalid: the diagnostics, with lines and columns", body = super::problem::ErrorBody),
        (status = 413, description = "The body is too large"),
    ),
    security(("token" = [])))]
pub(crate) async fn put_dag(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(dag_id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Dag>)> {
    let dag_id = checked_id("DAG id", &dag_id)?;
    let text = body_text(&body)?;
    let dag = register(&app, &tenant, dag_id, text).await?;
    let status = if dag.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(dag)))
}

/// Validates `text` as tenant's DAG `dag_id` (its components compiled and checked) and
/// stores it, as a new DAG or a new version.
pub(crate) async fn register(app: &App, tenant: &str, dag_id: &str, text: &str) -> ApiResult<Dag> {
    let workflow = Workflow::parse_for_tenant(text, dag_path(app, dag_id), &[], tenant)?;
    confine(app, &workflow)?;
    app.runtime.check(&workflow).await?;
    Ok(app.store.put_dag(
        tenant,
        dag_id,
        workflow.name(),
        workflow.description(),
        workflow.task_ids().count() as u64,
        text,
    )?)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DagList {
    dags: Vec<Dag>,
}

/// The caller's registered DAGs.
#[utoipa::path(get, path = "/v1/dags", tag = "dags",
    responses((status = 200, body = DagList)), security(("token" = [])))]
pub(crate) async fn list_dags(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
) -> ApiResult<Json<DagList>> {
    Ok(Json(DagList {
        dags: app.store.dags(&tenant)?,
    }))
}

/// One registered DAG, with its TOML.
#[utoipa::path(get, path = "/v1/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = Dag), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_dag(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Dag>> {
    let dag_id = checked_id("DAG id", &dag_id)?;
    app.store
        .dag(&tenant, dag_id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("DAG", dag_id))
}

/// Removes a registered DAG. Its runs stay, and can still be read and resumed.
#[utoipa::path(delete, path = "/v1/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_dag(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(dag_id): Path<String>,
) -> ApiResult<StatusCode> {
    let dag_id = checked_id("DAG id", &dag_id)?;
    if app.store.delete_dag(&tenant, dag_id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("DAG", dag_id))
    }
}

/// The body of an execute request (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteRequest {
    /// Values of the workflow's `[params]`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) params: BTreeMap<String, Value>,
    /// Overrides the workflow's `max_concurrency`.
    #[serde(default)]
    pub(crate) max_concurrency: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Execution {
    run_id: String,
    dag_id: String,
    /// False when an earlier request with the same `Idempotency-Key` started the run.
    pub(crate) created: bool,
    /// Where to read the run and follow its events.
    links: BTreeMap<&'static str, String>,
}

/// The longest `Idempotency-Key`.
const MAX_KEY: usize = 200;

/// Starts a run of DAG `dag_id`. With an `Idempotency-Key`, a repeat of the request (with the
/// same key, for the same DAG) returns the run the first one started.
#[utoipa::path(post, path = "/v1/dags/{dag_id}/execute", tag = "runs",
    params(("dag_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "The same key returns the same run")),
    request_body(content = ExecuteRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Started", body = Execution),
        (status = 200, description = "Started before, by a request with this key", body = Execution),
        (status = 400, body = super::problem::ErrorBody),
        (status = 404, body = super::problem::ErrorBody),
        (status = 503, description = "The server is stopping", body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn execute(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(dag_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    let dag_id = checked_id("DAG id", &dag_id)?;
    let request: ExecuteRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ExecuteRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not an execute request: {e}"))
                .help(r#"send JSON such as {"params": {"a": 1}}, or nothing"#)
        })?
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(checked_key(v.to_str().ok())?),
    };
    let execution = start_dag(&app, &tenant, dag_id, request, key).await?;
    let status = if execution.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(execution)))
}

/// An `Idempotency-Key` (None: not visible ASCII).
pub(crate) fn checked_key(key: Option<&str>) -> ApiResult<String> {
    key.filter(|k| !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "the Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"
            ))
        })
}

/// Starts a run of tenant's DAG `dag_id` (with `key`: unless a run was started with that key
/// before, which is returned instead, with `created` false).
pub(crate) async fn start_dag(
    app: &Arc<App>,
    tenant: &str,
    dag_id: &str,
    request: ExecuteRequest,
    key: Option<String>,
) -> ApiResult<Execution> {
    refuse_if_stopping(app)?;
    let dag_id = dag_id.to_owned();
    let params = request
        .params
        .iter()
        .map(|(k, v)| Ok((k.clone(), toml_literal(k, v)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    let dag = app
        .store
        .dag(tenant, &dag_id)?
        .ok_or_else(|| ApiError::not_found("DAG", &dag_id))?;
    // Requests with one key wait for each other; others (mostly) do not.
    let _held = match &key {
        Some(key) => Some(app.idempotency_lock(tenant, &dag_id, key).lock().await),
        None => None,
    };
    if let Some(key) = &key
        && let Some(run_id) = app.store.run_for_key(tenant, &dag_id, key)?
    {
        return Ok(execution(run_id, dag_id, false));
    }
    let toml = dag.toml.unwrap_or_default();
    let workflow = Workflow::parse_for_tenant(&toml, dag_path(app, &dag_id), &params, tenant)?;
    confine(app, &workflow)?;
    // The run (and its key) is recorded before it starts: a server that dies in between
    // resumes it, and a repeat of the key finds it.
    let run_id = crate::Runtime::new_run_id();
    app.store
        .record_run(&run_id, tenant, &dag_id, key.as_deref())?;
    let mut options = RunOptions::new()
        .tenant(tenant.to_owned())
        .run_id(run_id.clone());
    if let Some(n) = request.max_concurrency {
        options = options.max_concurrency(n.max(1) as usize);
    }
    let run = match app.runtime.start(&workflow, options).await {
        Ok(run) => run,
        Err(e) => {
            app.store.forget_run(&run_id)?;
            return Err(e.into());
        }
    };
    track(app, run, tenant);
    Ok(execution(run_id, dag_id, true))
}

fn execution(run_id: String, dag_id: String, created: bool) -> Execution {
    let links = BTreeMap::from([
        ("run", format!("/v1/runs/{run_id}")),
        ("events", format!("/v1/runs/{run_id}/events")),
        ("ws", format!("/v1/runs/{run_id}/ws")),
    ]);
    Execution {
        run_id,
        dag_id,
        created,
        links,
    }
}

/// A JSON parameter as the TOML literal a workflow's `[params]` override takes.
fn toml_literal(key: &str, value: &Value) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(format!(
            "parameter `{}` cannot be given as TOML",
            text::inert(text::truncate(key, 128))
        ))
        .help("give strings, numbers, booleans, arrays or tables (no nulls)")
    };
    let value: toml::Value = toml::Value::try_from(value).map_err(|_| bad())?;
    let mut table = toml::Table::new();
    table.insert("v".to_owned(), value);
    let text = toml::to_string(&table).map_err(|_| bad())?;
    text.trim_end()
        .strip_prefix("v = ")
        .map(str::to_owned)
        .ok_or_else(bad)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunQuery {
    /// running, interrupted, succeeded, failed or cancelled.
    status: Option<String>,
    /// Only runs of this DAG.
    dag: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<usize>,
}

/// The most runs of a DAG one list request looks at (filtering by status).
const MAX_SCANNED: usize = 4000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunList {
    #[schema(value_type = Vec<Object>)]
    runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The caller's runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunQuery),
    responses((status = 200, body = RunList), (status = 400, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_runs(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let state = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<RunState>(Value::String(s.to_owned())).map_err(|_| {
                ApiError::bad_request(format!(
                    "`{}` is not a run status",
                    text::inert(text::truncate(s, 64))
                ))
                .help("use running, interrupted, succeeded, failed or cancelled")
            })?,
        ),
    };
    if let Some(cursor) = &query.cursor {
        checked_id("cursor", cursor)?;
    }
    let mut runs = match &query.dag {
        None => {
            let mut filter = RunFilter::new().tenant(tenant.clone()).limit(limit + 1);
            if let Some(state) = state {
                filter = filter.state(state);
            }
            if let Some(cursor) = &query.cursor {
                filter = filter.before(cursor.clone());
            }
            app.runtime.runs(filter).await?
        }
        Some(dag) => {
            let dag = checked_id("DAG id", dag)?;
            let mut out = Vec::new();
            let mut before = query.cursor.clone();
            // Page through the DAG's runs until `limit + 1` pass the status filter, or
            // `MAX_SCANNED` were looked at (then the page is short, with a cursor to go on).
            let mut scanned = 0;
            'pages: while scanned < MAX_SCANNED {
                let ids = app
                    .store
                    .runs_of_dag(&tenant, dag, before.as_deref(), 200)?;
                if ids.is_empty() {
                    break;
                }
                for id in ids {
                    scanned += 1;
                    if let Some(s) = app.runtime.run_summary(&id).await?
                        && s.tenant == tenant
                        && state.is_none_or(|st| st == s.state)
                    {
                        out.push(s);
                        if out.len() > limit {
                            break 'pages;
                        }
                    }
                    before = Some(id);
                }
            }
            if out.len() <= limit && scanned >= MAX_SCANNED {
                return Ok(Json(RunList {
                    runs: out,
                    next_cursor: before,
                }));
            }
            out
        }
    };
    let next_cursor = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|r| r.run_id.clone())
    } else {
        None
    };
    Ok(Json(RunList { runs, next_cursor }))
}

/// A 503 once the server is stopping: it starts no new runs.
fn refuse_if_stopping(app: &App) -> ApiResult<()> {
    if app.accepting.load(Ordering::Relaxed) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the server is stopping and starts no new runs",
    )
    .help("retry against the server once it is back"))
}

/// The run, if it is the tenant's.
pub(crate) async fn owned_run(app: &App, tenant: &str, run_id: &str) -> ApiResult<RunSummary> {
    let run_id = checked_id("run id", run_id)?;
    match app.runtime.run_summary(run_id).await? {
        Some(s) if s.tenant == tenant => Ok(s),
        _ => Err(ApiError::not_found("run", run_id)),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RunView {
    #[schema(value_type = Object)]
    run: RunSummary,
    /// The DAG it was started from, if this service started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    dag_id: Option<String>,
    /// Whether this server is running it now.
    live: bool,
    /// The results document, once the run has ended.
    #[schema(value_type = Option<Object>)]
    report: Option<RunReport>,
}

/// A run: where it is, and its results document once it has ended.
#[utoipa::path(get, path = "/v1/runs/{run_id}", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_run(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(run_id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = owned_run(&app, &tenant, &run_id).await?;
    let live = app.live.get(&run.run_id).is_some();
    let report = app.runtime.run_report(&run.run_id).await?;
    Ok(Json(RunView {
        dag_id: app.store.dag_of(&run.run_id)?,
        live,
        report,
        run,
    }))
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskView {
    node: String,
    #[schema(value_type = Object)]
    planned: Option<crate::events::PlannedTask>,
    /// Each attempt's last status event (its outcome, error, fuel, timings, artifacts).
    #[schema(value_type = Vec<Object>)]
    attempts: Vec<Arc<Event>>,
    /// The task's last progress event.
    #[schema(value_type = Option<Object>)]
    progress: Option<Arc<Event>>,
    /// Its latest log lines (at most 500).
    #[schema(value_type = Vec<Object>)]
    logs: Vec<Arc<Event>>,
    /// Its latest partial results (at most 100).
    #[schema(value_type = Vec<Object>)]
    partials: Vec<Arc<Event>>,
    /// Blocked reports and handoffs to a diagnostic agent.
    #[schema(value_type = Vec<Object>)]
    blocked: Vec<Arc<Event>>,
    /// The task's line of the results document, once the run has ended.
    #[schema(value_type = Option<Object>)]
    report: Option<TaskReport>,
}

const MAX_LOGS: usize = 500;
const MAX_PARTIALS: usize = 100;
/// The most events a task view reads.
const MAX_SCAN: u64 = 1_000_000;

/// One task of a run: its attempts, logs, partial results and artifacts.
#[utoipa::path(get, path = "/v1/runs/{run_id}/tasks/{node}", tag = "runs",
    params(("run_id" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn get_task(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path((run_id, node)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    let run = owned_run(&app, &tenant, &run_id).await?;
    if node.len() > 512 {
        return Err(ApiError::not_found("task", &node));
    }
    let mut view = TaskView {
        node: node.clone(),
        ..TaskView::default()
    };
    let mut attempts: BTreeMap<u32, Arc<Event>> = BTreeMap::new();
    let mut next = 1;
    while next <= MAX_SCAN {
        let page = app.runtime.run_events(&run.run_id, next, 2000).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for event in page {
            match &event.kind {
                EventKind::PlanCreated(plan) => {
                    view.planned = plan.tasks.iter().find(|t| t.node == node).cloned();
                }
                EventKind::TaskStatus(s) if *s.task.node == *node => {
                    attempts.insert(s.task.attempt, Arc::clone(&event));
                }
                EventKind::Progress(p) if *p.task.node == *node => view.progress = Some(event),
                EventKind::Log(l) if *l.task.node == *node => view.logs.push(event),
                EventKind::Partial(p) if *p.task.node == *node => view.partials.push(event),
                EventKind::TaskBlocked(b) if *b.task.node == *node => view.blocked.push(event),
                EventKind::TaskHandoff(h) if *h.task.node == *node => view.blocked.push(event),
                _ => {}
            }
            let cut = |v: &mut Vec<Arc<Event>>, max: usize| {
                if v.len() > max * 2 {
                    v.drain(..v.len() - max);
                }
            };
            cut(&mut view.logs, MAX_LOGS);
            cut(&mut view.partials, MAX_PARTIALS);
        }
    }
    let keep_last = |v: &mut Vec<Arc<Event>>, max: usize| {
        if v.len() > max {
            v.drain(..v.len() - max);
        }
    };
    keep_last(&mut view.logs, MAX_LOGS);
    keep_last(&mut view.partials, MAX_PARTIALS);
    if view.planned.is_none() && attempts.is_empty() {
        return Err(ApiError::not_found("task", &node));
    }
    view.attempts = attempts.into_values().collect();
    if run.state.is_final() {
        view.report = app
            .runtime
            .run_report(&run.run_id)
            .await?
            .and_then(|r| r.tasks.into_iter().find(|t| t.node == node));
    }
    Ok(Json(view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    run_id: String,
    /// What happens now.
    status: &'static str,
}

/// Cancels a run this server is running: nothing more starts, running guests stop promptly.
#[utoipa::path(post, path = "/v1/runs/{run_id}/cancel", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 202, body = Accepted), (status = 404, body = super::problem::ErrorBody),
        (status = 409, description = "It has ended, or another process runs it", body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn cancel_run(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(run_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let run = owned_run(&app, &tenant, &run_id).await?;
    if let Some(live) = app.live.get(&run.run_id)
        && live.tenant == tenant
    {
        live.cancel.cancel();
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                run_id: run.run_id,
                status: "cancelling",
            }),
        ));
    }
    Err(match run.state {
        RunState::Running => {
            ApiError::conflict("the run is running in another process, which alone can cancel it")
        }
        RunState::Interrupted => {
            ApiError::conflict("the run is interrupted: nothing of it runs (resume it to go on)")
        }
        ended => ApiError::conflict(format!("the run has ended ({ended})")),
    })
}

/// Resumes a run that was interrupted (or ended without succeeding): what succeeded is not
/// run again.
#[utoipa::path(post, path = "/v1/runs/{run_id}/resume", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 202, body = Accepted), (status = 404, body = super::problem::ErrorBody),
        (status = 409, description = "It is running, or it succeeded", body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn resume_run(
    State(app): State<Arc<App>>,
    Tenant(tenant): Tenant,
    Path(run_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    refuse_if_stopping(&app)?;
    let run = owned_run(&app, &tenant, &run_id).await?;
    if app.live.get(&run.run_id).is_some() {
        return Err(ApiError::conflict("the run is running in this server"));
    }
    let resumed = app
        .runtime
        .resume(&run.run_id, RunOptions::new().tenant(tenant.clone()))
        .await?;
    let dag = app.store.dag_of(&run.run_id)?.unwrap_or_default();
    app.store.record_run(&run.run_id, &tenant, &dag, None)?;
    track(&app, resumed, &tenant);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            run_id: run.run_id,
            status: "resumed",
        }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Workers {
    /// The pool this service hands attempts to (`serve --pool`); null: attempts run here.
    pool: Option<String>,
    /// Its live workers (a heartbeat in the last 3 s), by id.
    workers: Vec<WorkerView>,
}

/// A live worker. Which tenants' attempts it runs is not shown: workers are shared.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkerView {
    id: String,
    /// Attempts it runs at once, at most.
    slots: u32,
    /// Attempts it runs now.
    busy: u32,
    /// Attempts it has finished since it started.
    finished: u64,
    #[schema(value_type = String)]
    started_at: crate::model::time::Timestamp,
    /// Its last heartbeat.
    #[schema(value_type = String)]
    last_heartbeat: crate::model::time::Timestamp,
}

/// The service's pool of workers and their load.
#[utoipa::path(get, path = "/v1/workers", tag = "service",
    responses((status = 200, body = Workers), (status = 401, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn workers(State(app): State<Arc<App>>, Tenant(_): Tenant) -> Json<Workers> {
    #[cfg(feature = "nats")]
    if let Some(pool) = app.runtime.workers() {
        let mut workers: Vec<WorkerView> = pool
            .workers()
            .into_iter()
            .map(|w| WorkerView {
                id: w.id,
                slots: w.slots,
                busy: w.busy,
                finished: w.finished,
                started_at: w.started_at,
                last_heartbeat: w.at,
            })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        return Json(Workers {
            pool: Some(pool.name().to_owned()),
            workers,
        });
    }
    let _ = &app;
    Json(Workers {
        pool: None,
        workers: Vec::new(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    /// The tenant the caller's token acts for.
    tenant: String,
}

/// Who the caller is: the tenant its token acts for.
#[utoipa::path(get, path = "/v1/me", tag = "service",
    responses((status = 200, body = Me), (status = 401, body = super::problem::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn me(Tenant(tenant): Tenant) -> Json<Me> {
    Json(Me { tenant })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    status: &'static str,
    /// Runs running in this server now.
    runs: usize,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health)))]
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        runs: app.live.len(),
    })
}

/// The server has resumed what it had left and accepts runs.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    let ready = app.ready.load(Ordering::Relaxed) && app.accepting.load(Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if ready { "ready" } else { "not-ready" },
            runs: app.live.len(),
        }),
    )
}

/// Prometheus metrics (text format), labelled by tenant.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    #[cfg(feature = "nats")]
    if let Some(pool) = app.runtime.workers() {
        app.metrics.observe_pool(pool);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-route",
        format!(
            "no such endpoint: {}",
            text::inert(text::truncate(uri.path(), 256))
        ),
    )
    .help("the API is described at /v1/openapi.json")
}

pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}
