//! The run's blackboard: versioned key-value state shared by the tasks of one run.
//!
//! Values are JSON. Every write bumps a key's version; [`compare_and_swap`] and [`update`] make
//! concurrent read-modify-write safe (no lost updates between parallel branches).
//!
//! Keys are scoped by the host, never by the guest:
//! - `notes` (any plain key) is this task's branch's own copy: parallel branches writing
//!   `notes` do not see or overwrite each other's;
//! - `shared/...` keys are the whole run's, and are written with [`compare_and_swap`] or
//!   [`update`] only ([`put`] is refused), so that no update is lost;
//! - `branches/<branch>/...` reads the copy of another branch of the run (`<workflow>.<task>`),
//!   read-only.
//!
//! ```no_run
//! # fn main() -> Result<(), wasm_orch_sdk::Error> {
//! use wasm_orch_sdk::blackboard;
//! blackboard::put("last-seen", &42)?;                                  // this branch's own
//! let total = blackboard::update("shared/total", |n: Option<u64>| n.unwrap_or(0) + 1)?;
//! let theirs: Option<blackboard::Entry<u64>> = blackboard::get("branches/flow.other/last-seen")?;
//! # let _ = (total, theirs); Ok(()) }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::wasm_orch::agent::blackboard::{self as wit, BlackboardError};
use crate::{Error, host};

/// A value and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// The value.
    pub value: T,
    /// Its version: 1 after the first write, one more after each write.
    pub version: u64,
}

/// The result of a [`compare_and_swap`].
#[derive(Debug, Clone, PartialEq)]
pub enum Swap<T> {
    /// The write happened; this is the key's new version.
    Done(u64),
    /// Another writer came first; this is the key's current entry (`None`: absent).
    Conflict(Option<Entry<T>>),
}

/// Read `key`.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<Entry<T>>, Error> {
    match host::bb_get(key) {
        Ok(entry) => entry.map(|e| decode(key, e)).transpose(),
        Err(e) => Err(refused(key, e)),
    }
}

/// Write `key` unconditionally; returns the new version.
pub fn put<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<u64, Error> {
    let json = serde_json::to_string(value)?;
    host::bb_put(key, &json).map_err(|e| refused(key, e))
}

/// Write `key` only if its version is still `expected` (`None`: only if it is absent).
pub fn compare_and_swap<T: Serialize + DeserializeOwned>(
    key: &str,
    expected: Option<u64>,
    value: &T,
) -> Result<Swap<T>, Error> {
    let json = serde_json::to_string(value)?;
    match host::bb_cas(key, expected, &json) {
        Ok(version) => Ok(Swap::Done(version)),
        Err(BlackboardError::Conflict(current)) => {
            Ok(Swap::Conflict(current.map(|e| decode(key, e)).transpose()?))
        }
        Err(e) => Err(refused(key, e)),
    }
}

/// Read-modify-write `key` with `f` until no other writer interferes; returns the value written
/// and its version. `f` sees `None` when the key is absent and may run more than once.
pub fn update<T, F>(key: &str, mut f: F) -> Result<Entry<T>, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let mut current: Option<Entry<T>> = get(key)?;
    loop {
        let expected = current.as_ref().map(|e| e.version);
        let next = f(current.map(|e| e.value));
        match compare_and_swap(key, expected, &next)? {
            Swap::Done(version) => {
                return Ok(Entry {
                    value: next,
                    version,
                });
            }
            Swap::Conflict(now) => current = now,
        }
    }
}

/// Keys that start with `prefix`, sorted.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, Error> {
    host::bb_list(prefix).map_err(|e| refused(prefix, e))
}

fn decode<T: DeserializeOwned>(key: &str, entry: wit::Entry) -> Result<Entry<T>, Error> {
    let value = serde_json::from_str(&entry.value).map_err(|e| {
        Error::invalid_input(format!(
            "blackboard key `{key}` has an unexpected shape: {e}"
        ))
    })?;
    Ok(Entry {
        value,
        version: entry.version,
    })
}

fn refused(key: &str, error: BlackboardError) -> Error {
    match error {
        BlackboardError::Denied(why) => Error::failed(format!("blackboard `{key}`: {why}")),
        BlackboardError::Conflict(_) => Error::failed(format!("blackboard `{key}`: conflict")),
    }
}
