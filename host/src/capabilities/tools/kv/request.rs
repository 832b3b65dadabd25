//! What a guest asks of the `kv` tool, checked before anything is stored: the operation and
//! its key, value, prefix, amount or expected version, each within its bounds.

use serde_json::Value as Json;

use crate::capabilities::tools::ToolError;
pub(crate) use crate::journal::KvOp as Request;

/// The longest key.
pub(crate) const MAX_KEY: usize = 256;
/// The largest value (as JSON text).
pub(crate) const MAX_VALUE: usize = 64 << 10;

/// The operation `input` asks for, or why it is not one.
pub(crate) fn parse(input: &Json) -> Result<Request, ToolError> {
    let op = input.get("op").and_then(Json::as_str).unwrap_or("");
    let key = || match input.get("key").and_then(Json::as_str) {
        Some(k) if !k.is_empty() && k.len() <= MAX_KEY => Ok(k.to_owned()),
        _ => Err(ToolError::InvalidInput(format!(
            "`key` must be a string of 1 to {MAX_KEY} bytes"
        ))),
    };
    let value = || {
        let value = input.get("value").cloned().unwrap_or(Json::Null);
        if value.to_string().len() > MAX_VALUE {
            return Err(ToolError::InvalidInput(format!(
                "values may have at most {MAX_VALUE} bytes"
            )));
        }
        Ok(value)
    };
    Ok(match op {
        "get" => Request::Get { key: key()? },
        "put" => Request::Put {
            key: key()?,
            value: value()?,
        },
        "add" => Request::Add {
            key: key()?,
            by: input
                .get("by")
                .map_or(Some(1), Json::as_i64)
                .ok_or_else(|| ToolError::InvalidInput("`by` must be an integer".into()))?,
        },
        "swap" => Request::Swap {
            key: key()?,
            expected: input
                .get("expected")
                .map_or(Some(0), Json::as_u64)
                .ok_or_else(|| {
                    ToolError::InvalidInput(
                        "`expected` must be the version read (0: absent)".into(),
                    )
                })?,
            value: value()?,
        },
        "delete" => Request::Delete { key: key()? },
        "list" => {
            let prefix = input.get("prefix").and_then(Json::as_str).unwrap_or("");
            if prefix.len() > MAX_KEY {
                return Err(ToolError::InvalidInput(format!(
                    "`prefix` may have at most {MAX_KEY} bytes"
                )));
            }
            Request::List {
                prefix: prefix.to_owned(),
            }
        }
        other => {
            let shown =
                crate::model::text::inert(crate::model::text::truncate(other, 32)).into_owned();
            return Err(ToolError::InvalidInput(format!(
                "unknown op `{shown}`: use get, put, add, swap, delete or list"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_are_checked_before_anything_is_stored() {
        assert_eq!(
            parse(&json!({ "op": "add", "key": "n" })),
            Ok(Request::Add {
                key: "n".into(),
                by: 1
            })
        );
        assert_eq!(
            parse(&json!({ "op": "swap", "key": "n", "expected": 3, "value": 4 })),
            Ok(Request::Swap {
                key: "n".into(),
                expected: 3,
                value: json!(4)
            })
        );
        for bad in [
            json!({ "op": "get" }),
            json!({ "op": "get", "key": "" }),
            json!({ "op": "get", "key": "k".repeat(MAX_KEY + 1) }),
            json!({ "op": "put", "key": "k", "value": "v".repeat(MAX_VALUE) }),
            json!({ "op": "add", "key": "k", "by": 1.5 }),
            json!({ "op": "swap", "key": "k", "expected": -1 }),
            json!({ "op": "\u{1b}[2J" }),
            json!(null),
        ] {
            assert!(
                matches!(parse(&bad), Err(ToolError::InvalidInput(_))),
                "{bad}"
            );
        }
    }
}
