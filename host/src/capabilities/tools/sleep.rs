//! `sleep`: waits without using guest fuel.

use std::time::Duration;

use serde_json::Value as Json;

use super::{Tool, ToolCall, ToolError, ToolFuture};

/// `sleep`: waits `{"ms": N}` milliseconds (at most an hour) without using guest fuel.
pub(crate) struct Sleep;

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
