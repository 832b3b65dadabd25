//! `flaky`: fails its first `fail_attempts` attempts as `unavailable` (like a remote API that
//! is briefly down), then succeeds.

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    #[serde(default = "one")]
    fail_attempts: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize)]
struct Fetched {
    attempt: u32,
    data: &'static str,
}

struct Flaky;

impl Agent for Flaky {
    type Params = Params;
    type Output = Fetched;
    const CAPABILITIES: &'static [&'static str] = &["data.fetch"];

    fn run(cx: Context<Params>) -> Result<Fetched, Error> {
        let attempt = cx.task().attempt;
        if attempt <= cx.params.fail_attempts {
            status::warn(format!("attempt {attempt}: the service is not answering"));
            return Err(Error::unavailable(format!(
                "service unavailable (attempt {attempt})"
            )));
        }
        status::progress(1.0, format!("fetched on attempt {attempt}"));
        Ok(Fetched {
            attempt,
            data: "42 records",
        })
    }
}

wasm_orch_sdk::export!(Flaky);
