//! `noop`: does nothing, so what a run of it costs is the host's own per-task overhead.

use wasm_orch_sdk::{Agent, Context, Error, NoParams};

struct Noop;

impl Agent for Noop {
    type Params = NoParams;
    type Output = ();

    fn run(_cx: Context<NoParams>) -> Result<(), Error> {
        Ok(())
    }
}

wasm_orch_sdk::export!(Noop);
