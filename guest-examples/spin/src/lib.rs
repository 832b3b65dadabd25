//! `spin`: misbehaves by looping forever. The host must stop it (fuel or wall-clock limit).

use std::hint::black_box;

use wasm_orch_sdk::{Agent, Context, Error, NoParams, status};

struct Spin;

impl Agent for Spin {
    type Params = NoParams;
    type Output = ();

    fn run(_cx: Context<NoParams>) -> Result<(), Error> {
        status::progress(0.0, "spinning forever");
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }
}

wasm_orch_sdk::export!(Spin);
