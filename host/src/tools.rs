//! Host tools: what a guest may call through the `tools` interface.
//!
//! Owns the [`Tool`] trait, the built-in tools and the per-task check of grants. A guest calls
//! a tool by name; the host decides (from the workflow's grants, never from the guest) whether
//! the agent may, then calls it with the identity of the task.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;

/// A boxed future, as returned by [`Tool::call`].
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Json, ToolError>> + Send + 'a>>;

/// A tool the host offers to guests.
///
/// ```
/// use wasm_orch::{Tool, ToolCall, ToolError, ToolFuture};
///
/// /// Echoes its input back.
/// struct Echo;
///
/// impl Tool for Echo {
///     fn call(&self, call: ToolCall) -> ToolFuture<'_> {
///         Box::pin(async move { Ok(call.input) })
///     }
/// }
/// ```
pub trait Tool: Send + Sync + 'static {
    /// Runs the tool. Dropping the future cancels the call (the task timed out or the run was
    /// cancelled), so hold no state that must outlive it.
    fn call(&self, call: ToolCall) -> ToolFuture<'_>;
}

/// One call of a tool: who calls and with what.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ToolCall {
    pub tenant: String,
    pub run_id: String,
    pub node: String,
    pub agent: String,
    pub attempt: u32,
    /// The guest's input (JSON).
    pub input: Json,
}

/// Why a tool call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolError {
    /// The input does not suit the tool.
    InvalidInput(String),
    /// The tool ran and failed.
    Failed(String),
    /// The call is not allowed.
    Denied(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::Failed(m) => write!(f, "failed: {m}"),
            Self::Denied(m) => write!(f, "denied: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// The tools of a runtime, by name.
#[derive(Clone)]
pub(crate) struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl ToolRegistry {
    pub(crate) fn empty() -> Self {
        Self {
            tools: BTreeMap::new(),
        }
    }

    /// The built-in tools: `sleep`, `kv` (kept under `state_dir`) and `http_get` (reaching
    /// only the hosts each tenant's policy allows).
    pub(crate) fn with_builtins(
        state_dir: &Path,
        http_allow: HashMap<String, Vec<String>>,
    ) -> Self {
        let mut tools: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        tools.insert("sleep".to_owned(), Arc::new(Sleep));
        tools.insert("kv".to_owned(), Arc::new(Kv::new(state_dir)));
        tools.insert("http_get".to_owned(), Arc::new(HttpGet::new(http_allow)));
        Self { tools }
    }

    pub(crate) fn insert(&mut self, name: String, tool: Arc<dyn Tool>) {
        self.tools.insert(name, tool);
    }

    /// Adds (or replaces) every tool of `other`.
    pub(crate) fn extend(&mut self, other: ToolRegistry) {
        self.tools.extend(other.tools);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }
}

/// `sleep`: waits `{"ms": N}` milliseconds (at most an hour) without using guest fuel.
struct Sleep;

const MAX_SLEEP: Duration = Duration::from_secs(3600);

impl Tool for Sleep {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(async move {
            let ms = call.input.get("ms").and_then(Json::as_u64).ok_or_else(|| {
                ToolError::InvalidInput("expected {\"ms\": <milliseconds>}".into())
            })?;
            let duration = Duration::from_millis(ms);
            if duration > MAX_SLEEP {
                return Err(ToolError::InvalidInput(format!(
                    "at most {} ms",
                    MAX_SLEEP.as_millis()
                )));
            }
            tokio::time::sleep(duration).await;
            Ok(serde_json::json!({ "slept_ms": ms }))
        })
    }
}

/// `kv`: a key-value store of the calling tenant, kept across runs in
/// `<state dir>/tenants/<tenant>/kv.json`. Input: `{"op": "get"|"put"|"delete"|"list", "key",
/// "value", "prefix"}`. The tenant comes from the host, never from the guest.
struct Kv {
    state_dir: PathBuf,
    tenants: Mutex<HashMap<String, BTreeMap<String, Json>>>,
}

const KV_MAX_KEY: usize = 256;
const KV_MAX_VALUE: usize = 64 << 10;
const KV_MAX_KEYS: usize = 10_000;

impl Kv {
    fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            tenants: Mutex::default(),
        }
    }

    fn file(&self, tenant: &str) -> PathBuf {
        self.state_dir.join("tenants").join(tenant).join("kv.json")
    }

    fn apply(&self, tenant: &str, input: &Json) -> Result<Json, ToolError> {
        let op = input.get("op").and_then(Json::as_str).unwrap_or("");
        let key = input.get("key").and_then(Json::as_str);
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if !tenants.contains_key(tenant) {
            let stored = std::fs::read(self.file(tenant))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            tenants.insert(tenant.to_owned(), stored);
        }
        let store = tenants
            .get_mut(tenant)
            .ok_or_else(|| ToolError::Failed("the store is unavailable".into()))?;
        let need_key = || match key {
            Some(k) if !k.is_empty() && k.len() <= KV_MAX_KEY => Ok(k.to_owned()),
            _ => Err(ToolError::InvalidInput(format!(
                "`key` must be a string of 1 to {KV_MAX_KEY} bytes"
            ))),
        };
        let (output, changed) = match op {
            "get" => (
                serde_json::json!({ "value": store.get(&need_key()?) }),
                false,
            ),
            "put" => {
                let key = need_key()?;
                let value = input.get("value").cloned().unwrap_or(Json::Null);
                if value.to_string().len() > KV_MAX_VALUE {
                    return Err(ToolError::InvalidInput(format!(
                        "values may have at most {KV_MAX_VALUE} bytes"
                    )));
                }
                if !store.contains_key(&key) && store.len() >= KV_MAX_KEYS {
                    return Err(ToolError::Denied(format!(
                        "the tenant's store holds its maximum of {KV_MAX_KEYS} keys"
                    )));
                }
                store.insert(key, value);
                (serde_json::json!({ "ok": true }), true)
            }
            "delete" => {
                let deleted = store.remove(&need_key()?).is_some();
                (serde_json::json!({ "deleted": deleted }), deleted)
            }
            "list" => {
                let prefix = input.get("prefix").and_then(Json::as_str).unwrap_or("");
                let keys: Vec<&String> = store.keys().filter(|k| k.starts_with(prefix)).collect();
                (serde_json::json!({ "keys": keys }), false)
            }
            other => {
                return Err(ToolError::InvalidInput(format!(
                    "unknown op `{other}`: use get, put, delete or list"
                )));
            }
        };
        if changed {
            self.save(tenant, store)
                .map_err(|e| ToolError::Failed(format!("could not save the store: {e}")))?;
        }
        Ok(output)
    }

    fn save(&self, tenant: &str, store: &BTreeMap<String, Json>) -> std::io::Result<()> {
        let file = self.file(tenant);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(store)?)?;
        std::fs::rename(tmp, file)
    }
}

impl Tool for Kv {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(async move { self.apply(&call.tenant, &call.input) })
    }
}

/// `http_get`: fetches a URL from a host the calling tenant's policy allows (`http_allow`).
/// Input: `{"url": "...", "headers": {...}}`; output: `{"status", "content_type", "body"}`
/// (the body as text, at most 1 MiB). Redirects are returned, not followed, so a redirect
/// cannot lead anywhere the allowlist does not.
struct HttpGet {
    client: Option<reqwest::Client>,
    allow: HashMap<String, Vec<String>>,
}

const HTTP_MAX_BODY: usize = 1 << 20;

impl HttpGet {
    fn new(allow: HashMap<String, Vec<String>>) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .ok();
        Self { client, allow }
    }

    async fn get(&self, call: ToolCall) -> Result<Json, ToolError> {
        let url = call
            .input
            .get("url")
            .and_then(Json::as_str)
            .ok_or_else(|| ToolError::InvalidInput("expected {\"url\": \"...\"}".into()))?;
        let url = reqwest::Url::parse(url)
            .map_err(|e| ToolError::InvalidInput(format!("bad url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::InvalidInput("only http and https urls".into()));
        }
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        let allowed = self.allow.get(&call.tenant).is_some_and(|hosts| {
            hosts
                .iter()
                .any(|h| *h == host || *h == format!("{host}:{port}"))
        });
        if !allowed {
            return Err(ToolError::Denied(format!(
                "host `{host}:{port}` is not in tenant `{}`'s http_allow list",
                call.tenant
            )));
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| ToolError::Failed("no HTTP client".into()))?;
        let mut request = client.get(url);
        if let Some(headers) = call.input.get("headers").and_then(Json::as_object) {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ToolError::Failed(format!("request failed: {e}")))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ToolError::Failed(format!("reading the response: {e}")))?
        {
            if body.len() + chunk.len() > HTTP_MAX_BODY {
                return Err(ToolError::Failed(format!(
                    "the response is larger than {HTTP_MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::json!({
            "status": status,
            "content_type": content_type,
            "body": String::from_utf8_lossy(&body),
        }))
    }
}

impl Tool for HttpGet {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(self.get(call))
    }
}
