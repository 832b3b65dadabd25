//! `bloat`: misbehaves by returning a huge output; the host must reject it.

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error};

#[derive(Deserialize)]
struct Params {
    #[serde(default = "default_mib")]
    mib: usize,
}

fn default_mib() -> usize {
    8
}

struct Bloat;

impl Agent for Bloat {
    type Params = Params;
    type Output = String;

    fn run(cx: Context<Params>) -> Result<String, Error> {
        Ok("x".repeat(cx.params.mib << 20))
    }
}

wasm_orch_sdk::export!(Bloat);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::testing::TestRun;

    use super::Bloat;

    #[test]
    fn returns_as_many_mebibytes_as_asked() {
        let out: String = TestRun::new(json!({ "mib": 2 })).run::<Bloat>().output();
        assert_eq!(out.len(), 2 << 20);
        assert!(out.bytes().all(|b| b == b'x'));
    }
}
