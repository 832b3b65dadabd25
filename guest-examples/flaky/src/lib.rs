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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::ErrorKind;
    use wasm_orch_sdk::testing::TestRun;

    use super::Flaky;

    #[test]
    fn is_unavailable_on_its_first_attempts_then_fetches() {
        for attempt in 1..=2 {
            let outcome = TestRun::new(json!({ "fail_attempts": 2 }))
                .attempt(attempt)
                .run::<Flaky>();
            let error = outcome.error();
            assert_eq!(error.kind(), ErrorKind::Unavailable);
            assert!(error.message().contains(&format!("attempt {attempt}")));
            assert_eq!(outcome.logs.len(), 1, "a warning per failed attempt");
        }
        let outcome = TestRun::new(json!({ "fail_attempts": 2 }))
            .attempt(3)
            .run::<Flaky>();
        assert_eq!(
            outcome.output::<Value>(),
            json!({ "attempt": 3, "data": "42 records" })
        );
        assert_eq!(outcome.progress, [(1.0, "fetched on attempt 3".to_owned())]);
    }

    #[test]
    fn fails_once_by_default() {
        let first = TestRun::new(json!({})).attempt(1).run::<Flaky>();
        assert_eq!(first.error().kind(), ErrorKind::Unavailable);
        let second = TestRun::new(json!({})).attempt(2).run::<Flaky>();
        assert_eq!(second.output::<Value>()["attempt"], 2);
    }
}
