//! Host side of `wasm-orch:agent/blackboard`: the blackboard of the task's own run, seen
//! through its branch.
//!
//! Every key goes through the blackboard's policy (`scope::resolve`) first; a refusal is
//! denied and audited. Values are redacted before they are kept, and a key holding a secret
//! value is refused.

use std::collections::HashSet;

use wasmtime::component::{HasData, Linker};

use super::board::{Blackboard, Entry, Refusal};
use super::scope::{BRANCHES, BoardScope, MAX_KEY, RESERVED, SHARED, resolve};
use crate::bus::{SharedEmitter, lock};
use crate::model::events::{AuditResource, Decision};
use crate::model::text::truncate;
use crate::wit::v2::wasm_orch::agent::blackboard as v2;
use crate::wit::v3::wasm_orch::agent::blackboard as wit;

/// What the `blackboard` import can reach: its run's blackboard, as its branch.
pub(crate) struct BlackboardView<'a> {
    board: &'a Blackboard,
    branch: &'a str,
    branches: &'a HashSet<String>,
    events: &'a SharedEmitter,
}

impl<'a> BlackboardView<'a> {
    pub(crate) fn new(scope: &'a BoardScope, events: &'a SharedEmitter) -> Self {
        Self {
            board: &scope.board,
            branch: &scope.branch,
            branches: &scope.branches,
            events,
        }
    }
}

struct HasBlackboard;

impl HasData for HasBlackboard {
    type Data<'a> = BlackboardView<'a>;
}

/// Links `blackboard`, in both versions of the contract; `get` gives a store's view of its task's scope and emitter.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> BlackboardView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasBlackboard>(linker, get)?;
    v2::add_to_linker::<T, HasBlackboard>(linker, get)
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
        // A key longer than any valid one is refused before anything reads all of it.
        let resolved = match redactor.text(truncate(key, MAX_KEY + 1)) {
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
                &format!("{op} {}", truncate(key, MAX_KEY)),
                Decision::Denied,
                &why,
            );
            wit::BlackboardError::Denied(why)
        })
    }

    /// The value as kept: redacted, once it is known to fit (a value over the limit is refused
    /// before it is parsed or copied).
    fn redact(&self, value: String) -> Result<String, wit::BlackboardError> {
        let max = self.board.max_value_bytes();
        if value.len() > max {
            return Err(wit::BlackboardError::Denied(format!(
                "values may have at most {max} bytes, this one has {}",
                value.len()
            )));
        }
        let redactor = lock(self.events).redactor().clone();
        Ok(match redactor.json_text(&value) {
            std::borrow::Cow::Borrowed(_) => value,
            std::borrow::Cow::Owned(clean) => clean,
        })
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
                &format!("put {}", truncate(&key, MAX_KEY)),
                Decision::Denied,
                why,
            );
            return Ok(Err(wit::BlackboardError::Denied(why.to_owned())));
        }
        let value = match self.redact(value) {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        };
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
        let value = match self.redact(value) {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        };
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

// `wasm-orch:agent@0.2.0`: the same calls, with the old package's types.

fn old_entry(e: wit::Entry) -> v2::Entry {
    v2::Entry {
        value: e.value,
        version: e.version,
    }
}

fn old_error(e: wit::BlackboardError) -> v2::BlackboardError {
    match e {
        wit::BlackboardError::Conflict(current) => {
            v2::BlackboardError::Conflict(current.map(old_entry))
        }
        wit::BlackboardError::Denied(why) => v2::BlackboardError::Denied(why),
    }
}

impl v2::Host for BlackboardView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<v2::Entry>, v2::BlackboardError>> {
        Ok(wit::Host::get(self, key)?
            .map(|e| e.map(old_entry))
            .map_err(old_error))
    }

    fn put(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<u64, v2::BlackboardError>> {
        Ok(wit::Host::put(self, key, value)?.map_err(old_error))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> wasmtime::Result<Result<u64, v2::BlackboardError>> {
        Ok(wit::Host::compare_and_swap(self, key, expected, value)?.map_err(old_error))
    }

    fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::BlackboardError>> {
        Ok(wit::Host::list_keys(self, prefix)?.map_err(old_error))
    }
}
