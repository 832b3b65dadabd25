//! Host side of `wasm-orch:agent/blackboard`: the blackboard of the task's own run, seen
//! through its branch.
//!
//! The host namespaces every key, never the guest: a key is its branch's own copy
//! (`branches/<branch>/<key>`) unless it starts with `shared/`, which the whole run shares and
//! which is written only with compare-and-swap (so parallel branches never lose an update).
//! Other branches' copies can be read as `branches/<branch>/<key>`, never written.
//! Another tenant's or run's keys are in another blackboard altogether; keys that try to climb
//! out (`..`, a leading `/`) are denied and audited. Values are redacted before they are kept,
//! and a key holding a secret value is refused.

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::bindings::wasm_orch::agent::blackboard as wit;
use super::state::{SharedEmitter, TaskState, lock};
use crate::blackboard::{Blackboard, Entry, Refusal};
use crate::bus::{AuditResource, Decision};

/// A task's place in its run's blackboard.
#[derive(Debug, Clone)]
pub(crate) struct BoardScope {
    pub(crate) board: Arc<Blackboard>,
    /// The task's branch: its own namespace.
    pub(crate) branch: String,
    /// Every branch of the run: their copies can be read.
    pub(crate) branches: Arc<HashSet<String>>,
}

impl BoardScope {
    /// A board of its own (for `describe`).
    pub(crate) fn alone() -> Self {
        Self {
            board: Arc::default(),
            branch: "describe".to_owned(),
            branches: Arc::default(),
        }
    }
}

/// Keys every branch of the run shares.
const SHARED: &str = "shared/";
const MAX_KEY: usize = 256;

/// What the `blackboard` import can reach: its run's blackboard, as its branch.
pub(crate) struct BlackboardView<'a> {
    board: &'a Blackboard,
    branch: &'a str,
    branches: &'a HashSet<String>,
    events: &'a SharedEmitter,
}

struct HasBlackboard;

impl HasData for HasBlackboard {
    type Data<'a> = BlackboardView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<TaskState, HasBlackboard>(linker, |s| BlackboardView {
        board: &s.board.board,
        branch: &s.board.branch,
        branches: &s.board.branches,
        events: &s.events,
    })
}

/// Keys of every branch's own copy.
const BRANCHES: &str = "branches/";

/// First segments a guest may not use: the host's own namespaces above a run.
const RESERVED: [&str; 2] = ["tenants", "runs"];

/// Where a guest's key lives in the run's blackboard, or why it may not name it. `branches`
/// are the run's (another branch's copy is read as `branches/<branch>/<key>`).
pub(crate) fn resolve(
    key: &str,
    branch: &str,
    branches: &HashSet<String>,
    write: bool,
) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("keys have 1 to {MAX_KEY} bytes"));
    }
    if key.starts_with('/') {
        return Err(
            "a key cannot be absolute: keys are relative to the task's own namespace".into(),
        );
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "`{segment}` is not a key segment: keys cannot climb out of the task's namespace"
            ));
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:@+=".contains(c))
        {
            return Err("key segments use letters, digits and `_-.:@+=`".into());
        }
    }
    let first = key.split('/').next().unwrap_or_default();
    if RESERVED.contains(&first) {
        return Err(format!(
            "`{first}/` is the host's: keys are scoped by the host to the task's own tenant and run, and cannot name another"
        ));
    }
    if key.starts_with(SHARED) {
        Ok(key.to_owned())
    } else if let Some(rest) = key.strip_prefix(BRANCHES) {
        let other = rest.split('/').next().unwrap_or_default();
        if !branches.contains(other) && other != branch {
            Err(format!(
                "`{other}` is not a branch of this run: other runs' and tenants' keys are out of reach"
            ))
        } else if write {
            Err("another branch's keys are read-only: write your own keys without a prefix".into())
        } else {
            Ok(key.to_owned())
        }
    } else {
        Ok(format!("{BRANCHES}{branch}/{key}"))
    }
}

fn entry(e: Entry) -> wit::Entry {
    wit::Entry {
        value: e.value,
        version: e.version,
    }
}

fn refusal(r: Refusal) -> wit::BlackboardError {
    match r {
        Refusal::Conflict(current) => wit::BlackboardError::Conflict(current.map(entry)),
        Refusal::Denied(why) => wit::BlackboardError::Denied(why),
    }
}

impl BlackboardView<'_> {
    /// The key's place, or a denial (audited).
    fn place(&self, op: &str, key: &str) -> Result<String, wit::BlackboardError> {
        let redactor = lock(self.events).redactor().clone();
        let resolved = match redactor.text(key) {
            std::borrow::Cow::Borrowed(_) => resolve(
                key,
                self.branch,
                self.branches,
                matches!(op, "put" | "compare-and-swap"),
            ),
            std::borrow::Cow::Owned(_) => Err("a key may not hold a secret value".to_owned()),
        };
        resolved.map_err(|why| {
            lock(self.events).audit(
                AuditResource::Blackboard,
                &format!("{op} {key}"),
                Decision::Denied,
                &why,
            );
            wit::BlackboardError::Denied(why)
        })
    }

    fn redact(&self, value: String) -> String {
        let redactor = lock(self.events).redactor().clone();
        redactor.json_text(&value).into_owned()
    }
}

impl wit::Host for BlackboardView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Entry>, wit::BlackboardError>> {
        Ok(self
            .place("get", &key)
            .map(|k| self.board.get(&k).map(entry)))
    }

    fn put(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        let place = match self.place("put", &key) {
            Ok(place) => place,
            Err(e) => return Ok(Err(e)),
        };
        if key.starts_with(SHARED) {
            let why = "a shared key is written with compare-and-swap, so that no update is lost";
            lock(self.events).audit(
                AuditResource::Blackboard,
                &format!("put {key}"),
                Decision::Denied,
                why,
            );
            return Ok(Err(wit::BlackboardError::Denied(why.to_owned())));
        }
        let value = self.redact(value);
        Ok(self.board.put(&place, value).map_err(refusal))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        let place = match self.place("compare-and-swap", &key) {
            Ok(place) => place,
            Err(e) => return Ok(Err(e)),
        };
        let value = self.redact(value);
        Ok(self
            .board
            .compare_and_swap(&place, expected, value)
            .map_err(refusal))
    }

    fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit::BlackboardError>> {
        if prefix.starts_with(BRANCHES) || RESERVED.iter().any(|r| prefix.starts_with(r)) {
            return Ok(
                match self.place("list-keys", prefix.trim_end_matches('/')) {
                    Ok(_) => Ok(self.board.list_keys(&prefix)),
                    Err(e) => Err(e),
                },
            );
        }
        let own = format!("{BRANCHES}{}/", self.branch);
        let mut keys: Vec<String> = self
            .board
            .list_keys(&format!("{own}{prefix}"))
            .into_iter()
            .filter_map(|k| k.strip_prefix(&own).map(str::to_owned))
            .collect();
        if SHARED.starts_with(&prefix) || prefix.starts_with(SHARED) {
            let shared_prefix = if prefix.starts_with(SHARED) {
                prefix.as_str()
            } else {
                SHARED
            };
            keys.extend(self.board.list_keys(shared_prefix));
        }
        keys.sort();
        Ok(Ok(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_branchs_own_unless_shared_and_cannot_climb_out() {
        let run: HashSet<String> = ["w.a".to_owned(), "w.b".to_owned()].into();
        let r = |key: &str, write| resolve(key, "w.a", &run, write);
        assert_eq!(r("count", true), Ok("branches/w.a/count".into()));
        assert_eq!(r("notes/x", true), Ok("branches/w.a/notes/x".into()));
        assert_eq!(r("shared/total", true), Ok("shared/total".into()));
        assert_eq!(r("branches/w.b/n", false), Ok("branches/w.b/n".into()));
        assert!(
            r("branches/w.b/n", true).is_err(),
            "wrote another branch's key"
        );
        assert!(
            r("branches/other.x/n", false).is_err(),
            "read another run's branch"
        );
        for bad in [
            "",
            "/etc",
            "../w.b/count",
            "a/../../b",
            "a//b",
            "./a",
            "a b",
            "x\u{0}",
            "tenants/acme/runs/r1/shared/k",
            "runs/r1/shared/k",
        ] {
            assert!(r(bad, false).is_err(), "`{bad}` was accepted");
        }
    }
}
