//! The host side of the WIT contract: the one `bindgen!` of the crate. It imports nothing
//! else of the crate; capabilities implement its interfaces, the engine calls its exports.
//!
//! Imports may trap (`trappable`) so a host failure ends the guest instead of panicking;
//! `tools.invoke` is async because tools do I/O; exports are async so that guests run on
//! fibers and yield to tokio at every epoch tick.

wasmtime::component::bindgen!({
    world: "sub-agent",
    path: "../wit",
    imports: {
        "wasm-orch:agent/tools.invoke": async | trappable,
        "wasm-orch:agent/secrets.get": async | trappable,
        default: trappable,
    },
    exports: {
        default: async,
    },
});

pub(crate) use self::exports::wasm_orch::agent::agent::Info;
pub(crate) use self::wasm_orch::agent::types::{
    AgentError, Task, TaskInput, Upstream, UpstreamFailure, UpstreamOutcome,
};
