//! `wait`: waits `ms` milliseconds in a host tool call, like an agent awaiting a remote API.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
struct Params {
    ms: u64,
}

#[derive(Serialize)]
struct Waited {
    waited_ms: u64,
}

struct Wait;

impl Agent for Wait {
    type Params = Params;
    type Output = Waited;
    const CAPABILITIES: &'static [&'static str] = &["io.wait"];

    fn run(cx: Context<Params>) -> Result<Waited, Error> {
        status::progress(0.0, format!("waiting {} ms", cx.params.ms));
        tools::sleep(Duration::from_millis(cx.params.ms))?;
        status::progress(1.0, "done");
        Ok(Waited {
            waited_ms: cx.params.ms,
        })
    }
}

wasm_orch_sdk::export!(Wait);
