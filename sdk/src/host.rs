//! Where the SDK's calls go: in a component (wasm32), to the host's WIT imports; in a native
//! build (`cargo test` of a guest crate), to the test host of [`testing`](crate::testing).
//! The wrappers of `status`, `blackboard`, `tools`, `secrets` and `messages` call only this module, so an
//! agent's code is the same in both.

use crate::wit::wasm_orch::agent::blackboard::{BlackboardError, Entry};
use crate::wit::wasm_orch::agent::messages::{Message, MessageError};
use crate::wit::wasm_orch::agent::secrets::SecretError;
use crate::wit::wasm_orch::agent::tools::ToolError;
use crate::wit::wasm_orch::agent::types::Level;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::wit::wasm_orch::agent::{blackboard, messages, secrets, status, tools};

    pub(crate) fn progress(fraction: f32, message: &str) {
        status::progress(fraction, message);
    }
    pub(crate) fn partial(json: &str) {
        status::partial(json);
    }
    pub(crate) fn log(level: Level, message: &str) {
        status::log(level, message);
    }
    pub(crate) fn bb_get(key: &str) -> Result<Option<Entry>, BlackboardError> {
        blackboard::get(key)
    }
    pub(crate) fn bb_put(key: &str, value: &str) -> Result<u64, BlackboardError> {
        blackboard::put(key, value)
    }
    pub(crate) fn bb_cas(
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<u64, BlackboardError> {
        blackboard::compare_and_swap(key, expected, value)
    }
    pub(crate) fn bb_list(prefix: &str) -> Result<Vec<String>, BlackboardError> {
        blackboard::list_keys(prefix)
    }
    pub(crate) fn tool(name: &str, input: &str) -> Result<String, ToolError> {
        tools::invoke(name, input)
    }
    pub(crate) fn secret(name: &str) -> Result<String, SecretError> {
        secrets::get(name)
    }
    pub(crate) fn send(to: &str, body: &str) -> Result<u64, MessageError> {
        messages::send(to, body)
    }
    pub(crate) fn receive(timeout_ms: u32) -> Result<Option<Message>, MessageError> {
        messages::receive(timeout_ms)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use crate::testing::with_host;

    pub(crate) fn progress(fraction: f32, message: &str) {
        with_host(|h| h.progress(fraction, message));
    }
    pub(crate) fn partial(json: &str) {
        with_host(|h| h.partial(json));
    }
    pub(crate) fn log(level: Level, message: &str) {
        with_host(|h| h.log(level, message));
    }
    pub(crate) fn bb_get(key: &str) -> Result<Option<Entry>, BlackboardError> {
        with_host(|h| h.bb_get(key))
    }
    pub(crate) fn bb_put(key: &str, value: &str) -> Result<u64, BlackboardError> {
        with_host(|h| h.bb_put(key, value))
    }
    pub(crate) fn bb_cas(
        key: &str,
        expected: Option<u64>,
        value: &str,
    ) -> Result<u64, BlackboardError> {
        with_host(|h| h.bb_cas(key, expected, value))
    }
    pub(crate) fn bb_list(prefix: &str) -> Result<Vec<String>, BlackboardError> {
        with_host(|h| h.bb_list(prefix))
    }
    pub(crate) fn tool(name: &str, input: &str) -> Result<String, ToolError> {
        with_host(|h| h.tool(name, input))
    }
    pub(crate) fn secret(name: &str) -> Result<String, SecretError> {
        with_host(|h| h.secret(name))
    }
    pub(crate) fn send(to: &str, body: &str) -> Result<u64, MessageError> {
        with_host(|h| h.send(to, body))
    }
    pub(crate) fn receive(_timeout_ms: u32) -> Result<Option<Message>, MessageError> {
        with_host(|h| Ok(h.receive()))
    }
}

pub(crate) use imp::*;
