//! `kv`: a key-value store per tenant, kept across runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};

use super::{Tool, ToolCall, ToolError, ToolFuture};

/// `kv`: a key-value store of the calling tenant, kept across runs in
/// `<state dir>/tenants/<tenant>/kv.json`. Input: `{"op": "get"|"put"|"delete"|"list", "key",
/// "value", "prefix"}`. The tenant comes from the host, never from the guest. Each tenant's
/// store has its own lock and is read and written off the async threads; a value holding a
/// secret of the run is refused (it would outlive the run's redaction).
pub(crate) struct Kv {
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
    pub(crate) fn new(state_dir: &Path) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::tools::ToolCall;
    use crate::redact::Redactor;

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
}
