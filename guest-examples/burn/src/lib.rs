//! `burn`: spends CPU on `iterations` rounds of arithmetic, reporting progress: a CPU-bound
//! agent whose fuel cost is the same every time.

use std::hint::black_box;

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    iterations: u64,
}

#[derive(Serialize)]
struct Burned {
    iterations: u64,
    checksum: u64,
}

struct Burn;

impl Agent for Burn {
    type Params = Params;
    type Output = Burned;
    const CAPABILITIES: &'static [&'static str] = &["cpu.burn"];

    fn run(cx: Context<Params>) -> Result<Burned, Error> {
        let n = cx.params.iterations;
        let step = (n / 10).max(1);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..n {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = black_box(x);
            if i % step == step - 1 {
                status::progress((i + 1) as f32 / n as f32, "burning");
            }
        }
        Ok(Burned {
            iterations: n,
            checksum: x,
        })
    }
}

wasm_orch_sdk::export!(Burn);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Burn;

    #[test]
    fn the_same_work_gives_the_same_checksum_and_ten_progress_reports() {
        let run = || TestRun::new(json!({ "iterations": 10_000 })).run::<Burn>();
        let (a, b) = (run(), run());
        let out: Value = a.output();
        assert_eq!(out["iterations"], 10_000);
        assert_eq!(out, b.output::<Value>());
        assert_eq!(a.progress.len(), 10);
        assert_eq!(a.progress[9].0, 1.0);
        let other: Value = TestRun::new(json!({ "iterations": 10_001 }))
            .run::<Burn>()
            .output();
        assert_ne!(out["checksum"], other["checksum"]);
    }
}
