//! Host side of `wasm-orch:agent/blackboard`: the blackboard of the task's own run, seen
//! through its branch.
//!
//! Every key goes through the blackboard's policy (`scope::resolve`) first; a refusal is
//! denied and audited. Values are redacted before they are kept, and a key holding a secret
//! value is refused. A worker's attempt has no board: its calls go to its coordinator's
//! (`relay`), which answers them with [`BlackboardView::answer`], the same checks.

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::board::{Blackboard, Entry, Refusal};
use super::relay::{BoardCall, BoardRelay, BoardReply, WireEntry};
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
    /// Set when the board is another process's: the calls go there.
    relay: Option<&'a Arc<dyn BoardRelay>>,
}

impl<'a> BlackboardView<'a> {
    pub(crate) fn new(scope: &'a BoardScope, events: &'a SharedEmitter) -> Self {
        Self {
            board: &scope.board,
            branch: &scope.branch,
            branches: &scope.branches,
            events,
            relay: scope.relay.as_ref(),
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

impl BlackboardView<'_> {
    fn local_get(&self, key: String) -> Result<Option<wit::Entry>, wit::BlackboardError> {
        self.place("get", &key)
            .map(|k| self.board.get(&k).map(entry))
    }

    fn local_put(&self, key: String, value: String) -> Result<u64, wit::BlackboardError> {
        let place = self.place("put", &key)?;
        if key.starts_with(SHARED) {
            let why = "a shared key is written with compare-and-swap, so that no update is lost";
            lock(self.events).audit(
                AuditResource::Blackboard,
                &format!("put {}", truncate(&key, MAX_KEY)),
                Decision::Denied,
                why,
            );
            return Err(wit::BlackboardError::Denied(why.to_owned()));
        }
        let value = self.redact(value)?;
        self.board.put(&place, value).map_err(refusal)
    }

    fn local_compare_and_swap(
        &self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> Result<u64, wit::BlackboardError> {
        let place = self.place("compare-and-swap", &key)?;
        let value = self.redact(value)?;
        self.board
            .compare_and_swap(&place, expected, value)
            .map_err(refusal)
    }

    fn local_list_keys(&self, prefix: String) -> Result<Vec<String>, wit::BlackboardError> {
        if prefix.starts_with(BRANCHES) || RESERVED.iter().any(|r| prefix.starts_with(r)) {
            return self
                .place("list-keys", prefix.trim_end_matches('/'))
                .map(|_| self.board.list_keys(&prefix));
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
        Ok(keys)
    }

    /// Makes `call` on this board, as the guest's own import would: a relayed attempt's call
    /// (checked, kept and audited here).
    pub(crate) fn answer(&self, call: BoardCall) -> BoardReply {
        let done = match call {
            BoardCall::Get { key } => self.local_get(key).map(|e| BoardReply::Entry(e.map(wire))),
            BoardCall::Put { key, value } => self.local_put(key, value).map(BoardReply::Version),
            BoardCall::CompareAndSwap {
                key,
                expected,
                value,
            } => self
                .local_compare_and_swap(key, expected, value)
                .map(BoardReply::Version),
            BoardCall::ListKeys { prefix } => self.local_list_keys(prefix).map(BoardReply::Keys),
        };
        done.unwrap_or_else(|e| match e {
            wit::BlackboardError::Conflict(current) => BoardReply::Conflict(current.map(wire)),
            wit::BlackboardError::Denied(why) => BoardReply::Denied(why),
        })
    }
}

fn wire(e: wit::Entry) -> WireEntry {
    WireEntry {
        value: e.value,
        version: e.version,
    }
}

fn unwire(e: WireEntry) -> wit::Entry {
    wit::Entry {
        value: e.value,
        version: e.version,
    }
}

/// What a relayed call's reply means for the guest: `take` picks the answer of the call's kind.
fn replied<T>(
    reply: BoardReply,
    take: impl FnOnce(BoardReply) -> Option<T>,
) -> Result<T, wit::BlackboardError> {
    match reply {
        BoardReply::Conflict(current) => Err(wit::BlackboardError::Conflict(current.map(unwire))),
        BoardReply::Denied(why) => Err(wit::BlackboardError::Denied(why)),
        other => take(other).ok_or_else(|| {
            wit::BlackboardError::Denied("the coordinator answered another call".into())
        }),
    }
}

impl wit::Host for BlackboardView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Entry>, wit::BlackboardError>> {
        let Some(relay) = self.relay else {
            return Ok(self.local_get(key));
        };
        let reply = relay.call(BoardCall::Get { key }).await;
        Ok(replied(reply, |r| match r {
            BoardReply::Entry(e) => Some(e.map(unwire)),
            _ => None,
        }))
    }

    async fn put(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        let Some(relay) = self.relay else {
            return Ok(self.local_put(key, value));
        };
        let reply = relay.call(BoardCall::Put { key, value }).await;
        Ok(replied(reply, |r| match r {
            BoardReply::Version(v) => Some(v),
            _ => None,
        }))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        let Some(relay) = self.relay else {
            return Ok(self.local_compare_and_swap(key, expected, value));
        };
        let call = BoardCall::CompareAndSwap {
            key,
            expected,
            value,
        };
        let reply = relay.call(call).await;
        Ok(replied(reply, |r| match r {
            BoardReply::Version(v) => Some(v),
            _ => None,
        }))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit::BlackboardError>> {
        let Some(relay) = self.relay else {
            return Ok(self.local_list_keys(prefix));
        };
        let reply = relay.call(BoardCall::ListKeys { prefix }).await;
        Ok(replied(reply, |r| match r {
            BoardReply::Keys(k) => Some(k),
            _ => None,
        }))
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
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<v2::Entry>, v2::BlackboardError>> {
        Ok(wit::Host::get(self, key)
            .await?
            .map(|e| e.map(old_entry))
            .map_err(old_error))
    }

    async fn put(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<u64, v2::BlackboardError>> {
        Ok(wit::Host::put(self, key, value).await?.map_err(old_error))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> wasmtime::Result<Result<u64, v2::BlackboardError>> {
        Ok(wit::Host::compare_and_swap(self, key, expected, value)
            .await?
            .map_err(old_error))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, v2::BlackboardError>> {
        Ok(wit::Host::list_keys(self, prefix).await?.map_err(old_error))
    }
}
