//! `kv`: a key-value store per tenant, kept across runs and processes in the journal's
//! database (see `journal::kv`). Input: `{"op": "get"|"put"|"add"|"swap"|"delete"|"list",
//! "key", "value", "by", "expected", "prefix"}` (see `request`). The tenant comes from the
//! host, never from the guest; a value holding a secret of the run is refused (a store
//! outlives the run's redaction).

mod request;

use std::sync::Arc;

use serde_json::{Value as Json, json};

pub(crate) use self::request::parse;
use super::{Tool, ToolCall, ToolError, ToolFuture};
use crate::journal::{Journal, KvAnswer, KvOp};

pub(crate) struct Kv {
    journal: Arc<Journal>,
}

impl Kv {
    pub(crate) fn new(journal: Arc<Journal>) -> Self {
        Self { journal }
    }

    async fn call(&self, call: ToolCall) -> Result<Json, ToolError> {
        let op = parse(&call.input)?;
        if let KvOp::Put { key, value } | KvOp::Swap { key, value, .. } = &op
            && (call.holds_secret(value) || call.holds_secret(&Json::String(key.clone())))
        {
            return Err(ToolError::Denied(
                "the value holds a secret of this run: a store outlives the run, so secrets stay out of it".into(),
            ));
        }
        let journal = Arc::clone(&self.journal);
        let tenant = call.tenant.clone();
        let answer = tokio::task::spawn_blocking(move || journal.kv(&tenant, &op))
            .await
            .map_err(|e| ToolError::Failed(format!("the store failed: {e}")))?
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(match answer {
            KvAnswer::Value(v) => match v {
                Some((value, version)) => json!({ "value": value, "version": version }),
                None => json!({ "value": null, "version": 0 }),
            },
            KvAnswer::Written(version) => json!({ "ok": true, "version": version }),
            KvAnswer::Sum(value, version) => json!({ "value": value, "version": version }),
            KvAnswer::Conflict(current) => {
                let (value, version) = current.unwrap_or((Json::Null, 0));
                json!({ "ok": false, "conflict": true, "value": value, "version": version })
            }
            KvAnswer::Deleted(deleted) => json!({ "deleted": deleted }),
            KvAnswer::Keys(keys) => json!({ "keys": keys }),
            KvAnswer::Refused(why) => return Err(ToolError::Denied(why)),
        })
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
    use crate::journal::Durability;
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
    async fn kv_keeps_each_tenant_apart_refuses_secrets_and_adds_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path(), Durability::Async).expect("journal");
        let kv = Kv::new(Arc::clone(&journal));
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
            Ok(json!({ "value": null, "version": 0 }))
        );
        assert_eq!(
            kv.call(get("acme", "k")).await,
            Ok(json!({ "value": 1, "version": 1 }))
        );
        secrets.add("token", "s3cr3t-value");
        assert!(matches!(
            kv.call(put("acme", "leak", json!({ "x": "s3cr3t-value" })))
                .await,
            Err(ToolError::Denied(_))
        ));
        let add = |by: i64| {
            call(
                "acme",
                json!({ "op": "add", "key": "n", "by": by }),
                &secrets,
            )
        };
        assert_eq!(
            kv.call(add(2)).await,
            Ok(json!({ "value": 2, "version": 1 }))
        );
        assert_eq!(
            kv.call(add(3)).await,
            Ok(json!({ "value": 5, "version": 2 }))
        );
        let swap = |expected: u64| {
            call(
                "acme",
                json!({ "op": "swap", "key": "n", "expected": expected, "value": 9 }),
                &secrets,
            )
        };
        assert_eq!(
            kv.call(swap(1)).await,
            Ok(json!({ "ok": false, "conflict": true, "value": 5, "version": 2 }))
        );
        assert_eq!(
            kv.call(swap(2)).await,
            Ok(json!({ "ok": true, "version": 3 }))
        );
        // Kept across runtimes (another journal on the same directory).
        drop(kv);
        drop(journal);
        let again = Kv::new(Journal::open(dir.path(), Durability::Async).expect("journal"));
        assert_eq!(
            again.call(get("acme", "k")).await,
            Ok(json!({ "value": 1, "version": 1 }))
        );
    }
}
