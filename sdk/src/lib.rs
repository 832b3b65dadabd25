//! # wasm-orch-sdk
//!
//! Write a **sub-agent** for [wasm-orch]: a WebAssembly component that runs one task of a
//! workflow, sandboxed by the host. You implement [`Agent`] with serde-typed parameters and
//! output, and call [`export!`] once. Everything else (the WIT contract, JSON, errors) is
//! handled here.
//!
//! ```no_run
//! use serde::Deserialize;
//! use wasm_orch_sdk::{status, Agent, Context, Error};
//!
//! #[derive(Deserialize)]
//! struct Params {
//!     a: i64,
//!     b: i64,
//! }
//!
//! struct Add;
//!
//! impl Agent for Add {
//!     type Params = Params;
//!     type Output = i64;
//!     const CAPABILITIES: &'static [&'static str] = &["math.add"];
//!
//!     fn run(cx: Context<Params>) -> Result<i64, Error> {
//!         // Outputs of the tasks this one depends on, if any, are added too.
//!         let upstream: i64 = cx.upstream_all::<i64>()?.into_iter().sum();
//!         status::progress(0.5, "adding");
//!         Ok(cx.params.a + cx.params.b + upstream)
//!     }
//! }
//!
//! wasm_orch_sdk::export!(Add);
//! ```
//!
//! Build it as a `cdylib` for the `wasm32-wasip2` target and point a workflow at the `.wasm`:
//!
//! ```toml
//! [agents.add]
//! component = "target/wasm32-wasip2/release/add.wasm"
//!
//! [[tasks]]
//! id = "sum"
//! agent = "add"
//! with = { a = 1, b = 2 }
//! ```
//!
//! What a guest can use while it runs:
//! - [`status`]: progress, partial results and logs, which the host streams as events;
//! - [`blackboard`]: versioned key-value state shared by the tasks of one run;
//! - [`tools`]: calls to tools the host grants this agent (such as `sleep`, `kv`, `http_get`);
//! - [`secrets`]: secrets the tenant's policy grants this agent (redacted from all it emits);
//! - WASI 0.2 through the standard library: its own working directory (files left there are
//!   its artifacts), its declared inputs under `inputs/` and the files of the tasks it depends
//!   on under `upstream/<node>/` (both read-only), a clock, randomness.
//!   No network and no host environment variables; `println!` and `eprintln!` become log events.
//!
//! A panic aborts the task: the host records it as *trapped*, with the panic message.
//!
//! [wasm-orch]: https://github.com/wasm-orch/wasm-orch

extern crate self as wasm_orch_sdk;

pub mod blackboard;
mod context;
mod error;
mod export;
mod host;
pub mod messages;
pub mod secrets;
pub mod status;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod tools;

pub use context::{Context, FailureKind, Task, TaskStatus, Upstream, UpstreamFailure};
pub use error::{Error, ErrorKind};
pub use export::Agent;

/// Parameters type for an agent that takes none: accepts and ignores any JSON.
pub type NoParams = serde::de::IgnoredAny;

/// Bindings generated from the WIT contract. Not a stable API: use the wrappers of this crate.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "sub-agent",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_sub_agent",
        default_bindings_module: "wasm_orch_sdk::wit",
        // The world declares the WASI interfaces a sub-agent may import; their bindings are
        // generated too (Rust's `std` reaches the same interfaces on its own).
        generate_all,
    });
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{describe, run};
}
