//! `mul`: the product of its parameters `a` and `b` (those given) and of every upstream output.

use std::time::Duration;

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status, tools};

#[derive(Deserialize)]
struct Params {
    a: Option<i64>,
    b: Option<i64>,
    /// Simulated latency (a host `sleep` call), to make the schedule visible.
    delay_ms: Option<u64>,
}

struct Mul;

impl Agent for Mul {
    type Params = Params;
    type Output = i64;
    const CAPABILITIES: &'static [&'static str] = &["math.mul"];

    fn run(cx: Context<Params>) -> Result<i64, Error> {
        if let Some(ms) = cx.params.delay_ms {
            status::progress(0.0, "thinking");
            tools::sleep(Duration::from_millis(ms))?;
        }
        let factors: Vec<i64> = [cx.params.a, cx.params.b]
            .into_iter()
            .flatten()
            .chain(cx.upstream_all::<i64>()?)
            .collect();
        if factors.is_empty() {
            return Err(Error::invalid_input(
                "nothing to multiply: give `a`, `b` or upstream tasks",
            ));
        }
        let product = factors
            .into_iter()
            .try_fold(1i64, i64::checked_mul)
            .ok_or_else(|| Error::invalid_input("the product overflows a 64-bit integer"))?;
        status::progress(1.0, format!("product = {product}"));
        Ok(product)
    }
}

wasm_orch_sdk::export!(Mul);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::testing::TestRun;
    use wasm_orch_sdk::{ErrorKind, FailureKind, TaskStatus};

    use super::Mul;

    #[test]
    fn multiplies_upstream_outputs() {
        let outcome = TestRun::new(json!({}))
            .upstream("left", 3)
            .upstream("right", 7)
            .run::<Mul>();
        assert_eq!(outcome.output::<i64>(), 21);
        assert_eq!(outcome.progress, vec![(1.0, "product = 21".to_owned())]);
    }

    #[test]
    fn nothing_to_multiply_and_a_failed_upstream_are_invalid_input() {
        let empty = TestRun::new(json!({})).run::<Mul>();
        assert_eq!(empty.error().kind(), ErrorKind::InvalidInput);
        let failed = TestRun::new(json!({ "a": 2 }))
            .upstream_failed("left", TaskStatus::Trapped, FailureKind::Trap, "boom")
            .run::<Mul>();
        assert!(
            failed
                .error()
                .message()
                .contains("`left` ended trapped (trap): boom"),
            "{}",
            failed.error()
        );
    }
}
