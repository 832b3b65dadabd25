//! `hog`: misbehaves by growing its memory without end. The host must deny the growth.

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    /// Size of each allocation, in MiB.
    #[serde(default = "one")]
    chunk_mib: usize,
}

fn one() -> usize {
    1
}

struct Hog;

impl Agent for Hog {
    type Params = Params;
    type Output = usize;

    fn run(cx: Context<Params>) -> Result<usize, Error> {
        let chunk = cx.params.chunk_mib.max(1) << 20;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the memory is really used.
            hoard.push(vec![0xA5; chunk]);
            status::progress(
                0.0,
                format!("holding {} MiB", hoard.len() * cx.params.chunk_mib),
            );
        }
    }
}

wasm_orch_sdk::export!(Hog);
