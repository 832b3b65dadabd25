//! Entry points for fuzzing (the libFuzzer targets in `fuzz/` and the mutation tests): each
//! takes arbitrary bytes, hands them to one of the host's parsers or checks of guest input, and
//! panics only if a property the host promises is broken. Not a public API (feature
//! `fuzzing`).

use std::collections::HashSet;

use crate::capabilities::blackboard::resolve;
use crate::model::limits::Limits;
use crate::model::status::TaskStatus;
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::workflow::Workflow;

/// The longest message a bad file may produce (it is printed to a terminal).
const MAX_MESSAGE: usize = 64 << 10;

fn clear_error(message: &str, file: &str) {
    assert!(
        message.contains(file),
        "the error names the file: {message}"
    );
    assert!(
        message.len() <= MAX_MESSAGE,
        "the error is {} bytes",
        message.len()
    );
    assert!(
        !message.contains('\u{1b}'),
        "the error can drive a terminal: {message:?}"
    );
}

/// A workflow file: validated, or a clear error.
pub fn workflow(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Workflow::parse(&text, "/fuzz/workflow.toml", &[]) {
        clear_error(&e.to_string(), "workflow.toml");
    }
}

/// A policy file: parsed, or a clear error.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Policy::parse(&text, "/fuzz/policy.toml") {
        clear_error(&e.to_string(), "policy.toml");
    }
}

/// A blackboard key a guest names (the first byte: read or write): where it resolves stays
/// inside the run's board, out of the host's namespaces, and a write never lands in another
/// branch's copy.
pub fn blackboard_key(data: &[u8]) {
    let Some((flags, key)) = data.split_first() else {
        return;
    };
    let write = flags & 1 == 1;
    let key = String::from_utf8_lossy(key);
    let branches: HashSet<String> = ["wf.a", "wf.b"].iter().map(|b| (*b).to_owned()).collect();
    if let Ok(at) = resolve(&key, "wf.a", &branches, write) {
        assert!(!at.starts_with('/'), "{key:?} -> {at:?}");
        assert!(
            at.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{key:?} -> {at:?}"
        );
        let first = at.split('/').next().unwrap_or_default();
        assert!(first != "tenants" && first != "runs", "{key:?} -> {at:?}");
        if write {
            assert!(!at.starts_with("branches/wf.b/"), "{key:?} -> {at:?}");
        }
        // A branch of the run: one of them, or one a planner's plan added below one of them
        // (`wf.b.notes`).
        if let Some(rest) = at.strip_prefix("branches/") {
            let branch = rest.split('/').next().unwrap_or_default();
            assert!(
                branches
                    .iter()
                    .any(|b| branch == b || branch.starts_with(&format!("{b}."))),
                "{key:?} -> {at:?}"
            );
        }
    }
}

/// A `kv` tool request (JSON): checked or refused, never a panic.
pub fn kv_request(data: &[u8]) {
    if let Ok(input) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = crate::capabilities::tools::parse_kv_request(&input);
    }
}

/// An output a guest returns: accepted only if it is JSON within the limit.
pub fn output(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let limits = Limits {
        max_output: 4096,
        ..Limits::default()
    };
    let len = text.len();
    let (status, output, _) = crate::engine::accept_output(text, &limits);
    if status == TaskStatus::Succeeded {
        assert!(len <= 4096, "an output of {len} bytes was accepted");
        let out = output.map(|o| o.get().to_owned()).unwrap_or_default();
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out:?}"
        );
    }
}

/// Redaction: after the first NUL byte, text; before it, a secret. No piece of the redacted
/// text (between its markers) holds the secret.
pub fn redaction(data: &[u8]) {
    let Some(cut) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let secret = String::from_utf8_lossy(&data[..cut]);
    let text = String::from_utf8_lossy(&data[cut + 1..]);
    if secret.trim().is_empty() {
        return;
    }
    let r = Redactor::default();
    r.add("s", &secret);
    let out = r.text(&text);
    for piece in out.split("[redacted:s]") {
        assert!(
            !piece.contains(&*secret),
            "{secret:?} survives in {out:?} (from {text:?})"
        );
    }
}

/// A stored batch of journal events: read back or refused, never a huge allocation.
pub fn journal_batch(data: &[u8]) {
    if let Ok(lines) = crate::journal::unpack_events(data) {
        assert!(lines.len() <= 256 << 20);
    }
}
