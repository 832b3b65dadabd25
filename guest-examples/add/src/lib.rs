//! `add`: the sum of its parameters `a` and `b` and of every upstream output.

use std::time::Duration;

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    a: i64,
    #[serde(default)]
    b: i64,
    /// Simulated latency (a host `sleep` call), to make the schedule visible.
    delay_ms: Option<u64>,
}

struct Add;

impl Agent for Add {
    type Params = Params;
    type Output = i64;
    const CAPABILITIES: &'static [&'static str] = &["math.add"];

    fn run(cx: Context<Params>) -> Result<i64, Error> {
        if let Some(ms) = cx.params.delay_ms {
            status::progress(0.0, "thinking");
            tools::sleep(Duration::from_millis(ms))?;
        }
        let sum = [cx.params.a, cx.params.b]
            .into_iter()
            .chain(cx.upstream_all::<i64>()?)
            .try_fold(0i64, i64::checked_add)
            .ok_or_else(|| Error::invalid_input("the sum overflows a 64-bit integer"))?;
        status::progress(1.0, format!("sum = {sum}"));
        Ok(sum)
    }
}

wasm_orch_sdk::export!(Add);
