//! Host side of `wasm-orch:agent/blackboard`: the run's blackboard, and only that.

use wasmtime::component::{HasData, Linker};

use super::bindings::wasm_orch::agent::blackboard as wit;
use super::state::TaskState;
use crate::blackboard::{Blackboard, Entry, Refusal};

/// What the `blackboard` import can reach: the blackboard of the task's own run.
pub(crate) struct BlackboardView<'a>(&'a Blackboard);

struct HasBlackboard;

impl HasData for HasBlackboard {
    type Data<'a> = BlackboardView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<TaskState, HasBlackboard>(linker, |s| BlackboardView(&s.blackboard))
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

impl wit::Host for BlackboardView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<wit::Entry>, wit::BlackboardError>> {
        Ok(Ok(self.0.get(&key).map(entry)))
    }

    fn put(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        Ok(self.0.put(&key, value).map_err(refusal))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> wasmtime::Result<Result<u64, wit::BlackboardError>> {
        Ok(self
            .0
            .compare_and_swap(&key, expected, value)
            .map_err(refusal))
    }

    fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, wit::BlackboardError>> {
        Ok(Ok(self.0.list_keys(&prefix)))
    }
}
