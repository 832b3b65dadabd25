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

use serde_json::{Value as Json, json};

use crate::bus::Redactor;

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
    /// The secret values handed to the run's guests so far.
    pub(crate) secrets: Arc<Redactor>,
}

impl ToolCall {
    /// Whether `value` holds a secret value that was handed to a guest of this run. A tool
    /// that keeps or forwards what it is given (beyond the call itself) should refuse it:
    /// what it keeps would outlive the run's redaction.
    pub fn holds_secret(&self, value: &Json) -> bool {
        !self.secrets.is_empty()
            && matches!(
                self.secrets.text(&value.to_string()),
                std::borrow::Cow::Owned(_)
            )
    }
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
/// "value", "prefix"}`. The tenant comes from the host, never from the guest. Each tenant's
/// store has its own lock and is read and written off the async threads; a value holding a
/// secret of the run is refused (it would outlive the run's redaction).
struct Kv {
    state_dir: PathBuf,
    tenants: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<KvStore>>>>>,
}

/// One tenant's store, and its size as stored.
#[derive(Default)]
struct KvStore {
    entries: BTreeMap<String, Json>,
    bytes: usize,
}

const KV_MAX_KEY: usize = 256;
const KV_MAX_VALUE: usize = 64 << 10;
const KV_MAX_KEYS: usize = 10_000;
const KV_MAX_BYTES: usize = 16 << 20;

fn kv_size(key: &str, value: &Json) -> usize {
    key.len() + value.to_string().len()
}

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

    async fn call(&self, call: ToolCall) -> Result<Json, ToolError> {
        let slot = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(tenants.entry(call.tenant.clone()).or_default())
        };
        let mut guard = slot.lock().await;
        if guard.is_none() {
            let file = self.file(&call.tenant);
            let loaded = tokio::task::spawn_blocking(move || Self::load(&file))
                .await
                .map_err(|e| ToolError::Failed(format!("loading the store: {e}")))??;
            *guard = Some(loaded);
        }
        let store = guard
            .as_mut()
            .ok_or_else(|| ToolError::Failed("the store is unavailable".into()))?;
        let (output, changed) = Self::apply(store, &call)?;
        if changed {
            let file = self.file(&call.tenant);
            let bytes = serde_json::to_vec(&store.entries)
                .map_err(|e| ToolError::Failed(format!("encoding the store: {e}")))?;
            tokio::task::spawn_blocking(move || Self::save(&file, &bytes))
                .await
                .map_err(|e| ToolError::Failed(format!("saving the store: {e}")))?
                .map_err(|e| ToolError::Failed(format!("could not save the store: {e}")))?;
        }
        Ok(output)
    }

    /// A tenant's store as saved; empty if it has none. A store that cannot be read is an
    /// error (never silently replaced by an empty one).
    fn load(file: &Path) -> Result<KvStore, ToolError> {
        let entries: BTreeMap<String, Json> = match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ToolError::Failed(format!(
                    "the store `{}` is not valid: {e}; repair or remove it",
                    file.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(ToolError::Failed(format!(
                    "cannot read the store `{}`: {e}",
                    file.display()
                )));
            }
        };
        let bytes = entries.iter().map(|(k, v)| kv_size(k, v)).sum();
        Ok(KvStore { entries, bytes })
    }

    fn apply(store: &mut KvStore, call: &ToolCall) -> Result<(Json, bool), ToolError> {
        let input = &call.input;
        let op = input.get("op").and_then(Json::as_str).unwrap_or("");
        let key = || match input.get("key").and_then(Json::as_str) {
            Some(k) if !k.is_empty() && k.len() <= KV_MAX_KEY => Ok(k.to_owned()),
            _ => Err(ToolError::InvalidInput(format!(
                "`key` must be a string of 1 to {KV_MAX_KEY} bytes"
            ))),
        };
        Ok(match op {
            "get" => (json!({ "value": store.entries.get(&key()?) }), false),
            "put" => {
                let key = key()?;
                let value = input.get("value").cloned().unwrap_or(Json::Null);
                let size = kv_size(&key, &value);
                if size - key.len() > KV_MAX_VALUE {
                    return Err(ToolError::InvalidInput(format!(
                        "values may have at most {KV_MAX_VALUE} bytes"
                    )));
                }
                if call.holds_secret(&value) || call.holds_secret(&Json::String(key.clone())) {
                    return Err(ToolError::Denied(
                        "the value holds a secret of this run: a store outlives the run, so secrets stay out of it".into(),
                    ));
                }
                let old = store.entries.get(&key).map_or(0, |v| kv_size(&key, v));
                if old == 0 && store.entries.len() >= KV_MAX_KEYS {
                    return Err(ToolError::Denied(format!(
                        "the tenant's store holds its maximum of {KV_MAX_KEYS} keys"
                    )));
                }
                if store.bytes - old + size > KV_MAX_BYTES {
                    return Err(ToolError::Denied(format!(
                        "the tenant's store holds its maximum of {} MiB",
                        KV_MAX_BYTES >> 20
                    )));
                }
                store.bytes = store.bytes - old + size;
                store.entries.insert(key, value);
                (json!({ "ok": true }), true)
            }
            "delete" => {
                let key = key()?;
                match store.entries.remove(&key) {
                    Some(old) => {
                        store.bytes -= kv_size(&key, &old);
                        (json!({ "deleted": true }), true)
                    }
                    None => (json!({ "deleted": false }), false),
                }
            }
            "list" => {
                let prefix = input.get("prefix").and_then(Json::as_str).unwrap_or("");
                let keys: Vec<&String> = store
                    .entries
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k)
                    .collect();
                (json!({ "keys": keys }), false)
            }
            other => {
                return Err(ToolError::InvalidInput(format!(
                    "unknown op `{other}`: use get, put, delete or list"
                )));
            }
        })
    }

    /// Writes the store whole, durably: a temporary file, synced, renamed over the old one.
    fn save(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(tmp, file)
    }
}

impl Tool for Kv {
    fn call(&self, call: ToolCall) -> ToolFuture<'_> {
        Box::pin(Kv::call(self, call))
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
        // A bare `host` entry allows the scheme's standard port only; any other port must be
        // listed as `host:port`.
        // (`Url` drops a port that is the scheme's own: `port()` is then `None`.)
        let standard_port = url.port().is_none();
        let with_port = format!("{host}:{port}");
        let allowed = self.allow.get(&call.tenant).is_some_and(|hosts| {
            hosts
                .iter()
                .any(|h| (*h == host && standard_port) || *h == with_port)
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
                // The connection is the host's: a guest may not redirect it to another
                // virtual host or reshape it.
                const RESERVED: [&str; 8] = [
                    "host",
                    "connection",
                    "content-length",
                    "transfer-encoding",
                    "upgrade",
                    "te",
                    "trailer",
                    "proxy-authorization",
                ];
                if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(ToolError::InvalidInput(format!(
                        "header `{name}` is the host's to set"
                    )));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tenant: &str, input: Json, secrets: &Arc<Redactor>) -> ToolCall {
        ToolCall {
            tenant: tenant.to_owned(),
            input,
            secrets: Arc::clone(secrets),
            ..ToolCall::default()
        }
    }

    #[tokio::test]
    async fn kv_keeps_each_tenant_apart_and_refuses_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::new(dir.path());
        let secrets = Arc::new(Redactor::default());
        let put = |tenant, key: &str, value: Json| {
            call(
                tenant,
                json!({ "op": "put", "key": key, "value": value }),
                &secrets,
            )
        };
        let get = |tenant, key: &str| call(tenant, json!({ "op": "get", "key": key }), &secrets);
        assert!(kv.call(put("acme", "k", json!(1))).await.is_ok());
        assert_eq!(
            kv.call(get("other", "k")).await,
            Ok(json!({ "value": null }))
        );
        assert_eq!(kv.call(get("acme", "k")).await, Ok(json!({ "value": 1 })));
        secrets.add("token", "s3cr3t-value");
        assert!(matches!(
            kv.call(put("acme", "leak", json!({ "x": "s3cr3t-value" })))
                .await,
            Err(ToolError::Denied(_))
        ));
        // Stored across runtimes, in the tenant's own file.
        let again = Kv::new(dir.path());
        assert_eq!(
            again.call(get("acme", "k")).await,
            Ok(json!({ "value": 1 }))
        );
        assert!(dir.path().join("tenants/acme/kv.json").is_file());
        assert!(!dir.path().join("tenants/other/kv.json").exists());
    }

    #[tokio::test]
    async fn an_unreadable_store_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tenants/acme")).expect("mkdir");
        std::fs::write(dir.path().join("tenants/acme/kv.json"), "{oops").expect("write");
        let kv = Kv::new(dir.path());
        let secrets = Arc::new(Redactor::default());
        let result = kv
            .call(call(
                "acme",
                json!({ "op": "put", "key": "k", "value": 1 }),
                &secrets,
            ))
            .await;
        assert!(matches!(result, Err(ToolError::Failed(m)) if m.contains("repair or remove")));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tenants/acme/kv.json"))
                .ok()
                .as_deref(),
            Some("{oops"),
            "the store was not overwritten"
        );
    }

    #[tokio::test]
    async fn a_bare_host_allows_only_the_standard_port() {
        // Nothing listens on these: an allowed call fails to connect, a refused one is denied
        // before any connection is tried.
        let allow = HashMap::from([(
            "acme".to_owned(),
            vec!["127.0.0.1".to_owned(), "localhost:9".to_owned()],
        )]);
        let http = HttpGet::new(allow);
        let secrets = Arc::new(Redactor::default());
        let get = |url: &str| call("acme", json!({ "url": url }), &secrets);
        let denied = |r: &Result<Json, ToolError>| matches!(r, Err(ToolError::Denied(_)));
        assert!(denied(&http.call(get("http://127.0.0.1:22/")).await));
        assert!(denied(&http.call(get("https://127.0.0.1:80/")).await));
        assert!(denied(&http.call(get("http://localhost/")).await));
        assert!(denied(&http.call(get("http://LOCALHOST:10/")).await));
        assert!(!denied(&http.call(get("http://127.0.0.1/")).await));
        assert!(!denied(&http.call(get("http://127.0.0.1:80/")).await));
        assert!(!denied(&http.call(get("http://localhost:9/")).await));
        // Another tenant has no list at all.
        let other = call("other", json!({ "url": "http://127.0.0.1/" }), &secrets);
        assert!(denied(&http.call(other).await));
    }
}
