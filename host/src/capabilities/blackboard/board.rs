//! The blackboard of one run: versioned key-value state shared by its tasks.
//!
//! Owns the data and its limits. Each run gets its own instance, so a guest can never name
//! another run's keys: scoping is structural, not a key prefix a guest could forge.
//! Every write bumps the key's version; compare-and-swap on versions makes concurrent
//! read-modify-write safe.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: String,
    pub(crate) version: u64,
}

/// Why a blackboard operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Compare-and-swap found another version (the current entry, if any).
    Conflict(Option<Entry>),
    /// A limit was hit; says which.
    Denied(String),
}

/// Size limits of a blackboard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlackboardLimits {
    pub(crate) max_keys: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_total_bytes: usize,
}

impl Default for BlackboardLimits {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            max_key_bytes: 256,
            max_value_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
        }
    }
}

/// Told of every write, in order (the journal keeps the run's blackboard).
pub(crate) type OnWrite = Box<dyn Fn(&str, &str, u64) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Blackboard {
    limits: BlackboardLimits,
    inner: Mutex<Inner>,
    on_write: Option<OnWrite>,
}

impl std::fmt::Debug for Blackboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blackboard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<String, Entry>,
    total_bytes: usize,
}

impl Blackboard {
    #[cfg(test)]
    pub(crate) fn new(limits: BlackboardLimits) -> Self {
        Self {
            limits,
            inner: Mutex::default(),
            on_write: None,
        }
    }

    /// A blackboard that starts with `entries` (key, value, version: a resumed run's) and
    /// tells `on_write` of every write.
    pub(crate) fn restored(
        limits: BlackboardLimits,
        entries: Vec<(String, String, u64)>,
        on_write: Option<OnWrite>,
    ) -> Self {
        let mut inner = Inner::default();
        for (key, value, version) in entries {
            inner.total_bytes += key.len() + value.len();
            inner.entries.insert(key, Entry { value, version });
        }
        Self {
            limits,
            inner: Mutex::new(inner),
            on_write,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest value it keeps.
    pub(crate) fn max_value_bytes(&self) -> usize {
        self.limits.max_value_bytes
    }

    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        self.lock().entries.get(key).cloned()
    }

    pub(crate) fn put(&self, key: &str, value: String) -> Result<u64, Refusal> {
        self.write(key, None, value)
    }

    /// Writes `value` only if the key's version is `expected` (`None`: the key is absent).
    pub(crate) fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: String,
    ) -> Result<u64, Refusal> {
        self.write(key, Some(expected), value)
    }

    fn write(
        &self,
        key: &str,
        expected: Option<Option<u64>>,
        value: String,
    ) -> Result<u64, Refusal> {
        if key.is_empty() || key.len() > self.limits.max_key_bytes {
            return Err(Refusal::Denied(format!(
                "keys must have 1 to {} bytes",
                self.limits.max_key_bytes
            )));
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(Refusal::Denied(format!(
                "values may have at most {} bytes, this one has {}",
                self.limits.max_value_bytes,
                value.len()
            )));
        }
        let mut inner = self.lock();
        let current = inner.entries.get(key);
        if let Some(expected) = expected
            && current.map(|e| e.version) != expected
        {
            return Err(Refusal::Conflict(current.cloned()));
        }
        let old_bytes = current.map_or(0, |e| key.len() + e.value.len());
        if current.is_none() && inner.entries.len() >= self.limits.max_keys {
            return Err(Refusal::Denied(format!(
                "the blackboard holds its maximum of {} keys",
                self.limits.max_keys
            )));
        }
        let total = inner.total_bytes - old_bytes + key.len() + value.len();
        if total > self.limits.max_total_bytes {
            return Err(Refusal::Denied(format!(
                "the blackboard holds its maximum of {} bytes",
                self.limits.max_total_bytes
            )));
        }
        let version = current.map_or(1, |e| e.version + 1);
        inner.total_bytes = total;
        // Under the lock, so that the journal sees the writes in their order.
        if let Some(on_write) = &self.on_write {
            on_write(key, &value, version);
        }
        inner
            .entries
            .insert(key.to_owned(), Entry { value, version });
        Ok(version)
    }

    pub(crate) fn list_keys(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every key with its value (JSON where the value is JSON, else text) and version.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, serde_json::Value> {
        self.lock()
            .entries
            .iter()
            .map(|(k, e)| {
                let value = serde_json::from_str(&e.value)
                    .unwrap_or_else(|_| serde_json::Value::String(e.value.clone()));
                (
                    k.clone(),
                    serde_json::json!({ "value": value, "version": e.version }),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn versions_grow_and_compare_and_swap_detects_races() {
        let bb = Blackboard::default();
        assert_eq!(bb.compare_and_swap("k", None, "1".into()), Ok(1));
        assert_eq!(
            bb.compare_and_swap("k", None, "x".into()),
            Err(Refusal::Conflict(Some(Entry {
                value: "1".into(),
                version: 1
            })))
        );
        assert_eq!(bb.put("k", "2".into()), Ok(2));
        assert!(matches!(
            bb.compare_and_swap("k", Some(1), "3".into()),
            Err(Refusal::Conflict(_))
        ));
        assert_eq!(bb.compare_and_swap("k", Some(2), "3".into()), Ok(3));
        assert_eq!(bb.get("k").map(|e| e.value), Some("3".to_owned()));
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let bb = Arc::new(Blackboard::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bb = bb.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let cur = bb.get("n");
                            let n: u64 = cur.as_ref().map_or(0, |e| e.value.parse().unwrap_or(0));
                            let expected = cur.map(|e| e.version);
                            if bb
                                .compare_and_swap("n", expected, (n + 1).to_string())
                                .is_ok()
                            {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(bb.get("n").map(|e| e.value), Some("2000".to_owned()));
    }

    #[test]
    fn limits_are_enforced() {
        let bb = Blackboard::new(BlackboardLimits {
            max_keys: 2,
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_total_bytes: 1 << 10,
        });
        assert!(matches!(
            bb.put("toolong", "v".into()),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(
            bb.put("k", "123456789".into()),
            Err(Refusal::Denied(_))
        ));
        assert!(bb.put("a", "1".into()).is_ok());
        assert!(bb.put("b", "1".into()).is_ok());
        assert!(matches!(bb.put("c", "1".into()), Err(Refusal::Denied(_))));
        assert!(
            bb.put("a", "2".into()).is_ok(),
            "rewriting a key needs no new slot"
        );
        assert_eq!(bb.list_keys(""), ["a", "b"]);
    }
}
