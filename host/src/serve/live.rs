//! The runs this server is running now: their event feeds (for followers that want events as
//! they happen, not as the journal commits them) and their cancel handles.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::CancelHandle;
use crate::events::EventFeed;

#[derive(Debug, Clone)]
pub(crate) struct LiveRun {
    pub(crate) tenant: String,
    pub(crate) feed: EventFeed,
    pub(crate) cancel: CancelHandle,
}

#[derive(Debug, Default)]
pub(crate) struct Live {
    runs: Mutex<HashMap<String, LiveRun>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveRun>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, run_id: &str, run: LiveRun) {
        self.lock().insert(run_id.to_owned(), run);
    }

    pub(crate) fn get(&self, run_id: &str) -> Option<LiveRun> {
        self.lock().get(run_id).cloned()
    }

    pub(crate) fn remove(&self, run_id: &str) {
        self.lock().remove(run_id);
    }

    /// Every run running here now.
    pub(crate) fn all(&self) -> Vec<LiveRun> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
