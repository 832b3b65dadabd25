//! Redaction at the source: the secret values handed to a run's guests never leave the host
//! in anything the run emits — events, logs, outputs, errors, blackboard values, handoff
//! reports, artifacts. Each secret becomes `[redacted:<name>]`.

use std::borrow::Cow;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub(crate) struct Redactor {
    /// (name, value), longest value first so that a secret inside another is not half-hidden.
    secrets: RwLock<Vec<(String, String)>>,
    any: AtomicBool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Redactor").field("secrets", &names).finish()
    }
}

/// Lines of a multi-line secret shorter than this are not redacted on their own (a PEM key's
/// last line may be a few characters; hiding every such string everywhere would hide too much).
const MIN_LINE: usize = 8;

impl Redactor {
    /// Adds a secret value handed to a guest: the value itself, its JSON-escaped form (as it
    /// appears inside JSON text), and each line of a multi-line value (which a guest's stdout
    /// would emit line by line).
    pub(crate) fn add(&self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut forms = vec![value.to_owned()];
        if let Ok(quoted) = serde_json::to_string(value)
            && let Some(escaped) = quoted.get(1..quoted.len().saturating_sub(1))
            && escaped != value
        {
            forms.push(escaped.to_owned());
        }
        if value.contains('\n') {
            forms.extend(
                value
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| l.len() >= MIN_LINE)
                    .map(str::to_owned),
            );
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for form in forms {
            if !secrets.iter().any(|(_, v)| *v == form) {
                secrets.push((name.to_owned(), form));
            }
        }
        secrets.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        self.any.store(true, Ordering::Release);
    }

    /// Whether no secret was handed out yet (nothing to redact).
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// The length of the longest secret value, in bytes.
    pub(crate) fn longest(&self) -> usize {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        secrets.first().map_or(0, |(_, v)| v.len())
    }

    /// The name of a secret whose value is in `bytes`.
    pub(crate) fn find(&self, bytes: &[u8]) -> Option<String> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        secrets
            .iter()
            .find(|(_, v)| bytes.windows(v.len()).any(|w| w == v.as_bytes()))
            .map(|(name, _)| name.clone())
    }

    /// `text` with every secret replaced.
    pub(crate) fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.any.load(Ordering::Acquire) {
            return Cow::Borrowed(text);
        }
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for (name, value) in secrets.iter() {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), &format!("[redacted:{name}]")));
            }
        }
        out
    }

    /// `text` without secrets, cut to at most `max` bytes: cut first (leaving room for the
    /// longest secret, so that a secret across the cut is still seen whole), then redacted,
    /// then cut to `max`. However long `text` is, only about `max` bytes of it are looked at.
    pub(crate) fn clean(&self, text: &str, max: usize) -> String {
        use crate::model::text::truncate;
        let wide = truncate(text, max.saturating_add(self.longest()));
        truncate(&self.text(wide), max).to_owned()
    }

    /// Redacts every string (and key) inside a JSON value; says whether anything changed.
    pub(crate) fn json(&self, value: &mut serde_json::Value) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        use serde_json::Value;
        match value {
            Value::String(s) => match self.text(s) {
                Cow::Owned(r) => {
                    *s = r;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Array(items) => items.iter_mut().fold(false, |c, v| self.json(v) | c),
            Value::Object(map) => {
                let mut changed = false;
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    if let Some(mut v) = map.remove(&key) {
                        changed |= self.json(&mut v);
                        let new_key = self.text(&key).into_owned();
                        changed |= new_key != key;
                        map.insert(new_key, v);
                    }
                }
                changed
            }
            _ => false,
        }
    }

    /// JSON text with every secret removed from its strings (still valid JSON), and from
    /// anywhere else it appears.
    pub(crate) fn json_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.any.load(Ordering::Acquire) {
            return Cow::Borrowed(text);
        }
        let out = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(mut v) => {
                if self.json(&mut v) {
                    Cow::Owned(v.to_string())
                } else {
                    Cow::Borrowed(text)
                }
            }
            Err(_) => Cow::Borrowed(text),
        };
        // A secret outside any string (a number, or text that is not JSON) is replaced in the
        // text itself, even if that leaves it invalid JSON: failing closed.
        if let Cow::Owned(clean) = self.text(&out) {
            return Cow::Owned(clean);
        }
        out
    }

    /// File contents with every secret replaced, if any was there.
    pub(crate) fn bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Option<Vec<u8>> = None;
        for (name, value) in secrets.iter() {
            let haystack = out.as_deref().unwrap_or(bytes);
            let needle = value.as_bytes();
            if haystack.windows(needle.len()).any(|w| w == needle) {
                let replacement = format!("[redacted:{name}]").into_bytes();
                let mut replaced = Vec::with_capacity(haystack.len());
                let mut i = 0;
                while i < haystack.len() {
                    if haystack[i..].starts_with(needle) {
                        replaced.extend_from_slice(&replacement);
                        i += needle.len();
                    } else {
                        replaced.push(haystack[i]);
                        i += 1;
                    }
                }
                out = Some(replaced);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_in_text_json_and_bytes() {
        let r = Redactor::default();
        assert_eq!(r.text("nothing yet"), "nothing yet");
        r.add("token", "s3cr3t-XYZ");
        r.add("short", "XYZ");
        assert_eq!(
            r.text("auth s3cr3t-XYZ and XYZ"),
            "auth [redacted:token] and [redacted:short]"
        );
        let mut v = serde_json::json!({ "a": ["s3cr3t-XYZ"], "s3cr3t-XYZ": 1, "n": 5 });
        assert!(r.json(&mut v));
        assert_eq!(
            v,
            serde_json::json!({ "a": ["[redacted:token]"], "[redacted:token]": 1, "n": 5 })
        );
        assert_eq!(r.json_text("\"x s3cr3t-XYZ\""), "\"x [redacted:token]\"");
        assert_eq!(
            r.bytes(b"k=s3cr3t-XYZ;"),
            Some(b"k=[redacted:token];".to_vec())
        );
        assert_eq!(r.bytes(b"clean"), None);
    }

    #[test]
    fn escaped_and_multi_line_secrets_are_caught_too() {
        let r = Redactor::default();
        let key = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n\"quoted\"\\x\n-----END KEY-----";
        r.add("key", key);
        let json = serde_json::json!({ "k": key }).to_string();
        assert_eq!(r.text(&json), r#"{"k":"[redacted:key]"}"#);
        assert_eq!(
            r.text("line: MIIBOgIBAAJBAKj34GkxFhD9"),
            "line: [redacted:key]"
        );
        assert!(format!("{r:?}").contains("key") && !format!("{r:?}").contains("MIIB"));
    }
}
