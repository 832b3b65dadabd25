//! `http_get`: fetches a URL from a host the calling tenant's policy allows.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value as Json;

use super::{Tool, ToolCall, ToolError, ToolFuture};

/// `http_get`: fetches a URL from a host the calling tenant's policy allows (`http_allow`).
/// Input: `{"url": "...", "headers": {...}}`; output: `{"status", "content_type", "body"}`
/// (the body as text, at most 1 MiB). Redirects are returned, not followed, so a redirect
/// cannot lead anywhere the allowlist does not.
pub(crate) struct HttpGet {
    client: Option<reqwest::Client>,
    allow: HashMap<String, Vec<String>>,
}

const HTTP_MAX_BODY: usize = 1 << 20;

impl HttpGet {
    pub(crate) fn new(allow: HashMap<String, Vec<String>>) -> Self {
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
        // A tenant the policy does not name has the `[tenants."*"]` list, if any.
        let list = self.allow.get(&call.tenant).or_else(|| self.allow.get("*"));
        let allowed = list.is_some_and(|hosts| {
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
    use std::sync::Arc;

    use crate::capabilities::tools::ToolCall;
    use crate::redact::Redactor;
    use serde_json::json;

    fn call(tenant: &str, input: Json, secrets: &Arc<Redactor>) -> ToolCall {
        ToolCall {
            tenant: tenant.to_owned(),
            input,
            secrets: Arc::clone(secrets),
            ..ToolCall::default()
        }
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
