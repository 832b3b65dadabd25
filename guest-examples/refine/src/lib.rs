//! `refine`: a loop's body. Each iteration adds `step` to what the previous one returned
//! (`start` on the first) and says `done` once the value reaches `target`; without a target
//! it never says done, and the loop's `max_iterations` stops it.
//!
//! With `review = true` it is the reviewer at the end of a body of two tasks (a loop over a
//! child workflow): it takes the draft of the task it depends on and says `done` once that
//! reaches `target`; the next iteration's draft goes on from the review.

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    start: i64,
    #[serde(default = "one")]
    step: i64,
    target: Option<i64>,
    #[serde(default)]
    review: bool,
}

fn one() -> i64 {
    1
}

#[derive(Serialize, Deserialize)]
struct Refined {
    value: i64,
    /// Which iteration returned it (1 for the first).
    iteration: u32,
    done: bool,
}

struct Refine;

impl Agent for Refine {
    type Params = Params;
    type Output = Refined;
    const CAPABILITIES: &'static [&'static str] = &["loop.refine"];

    fn run(cx: Context<Params>) -> Result<Refined, Error> {
        if cx.params.review {
            let mut drafts: Vec<Refined> = cx.upstream_all()?;
            let Some(draft) = drafts.pop() else {
                return Err(Error::invalid_input(
                    "a review needs the draft it depends on",
                ));
            };
            let done = cx.params.target.is_some_and(|t| draft.value >= t);
            status::progress(
                1.0,
                format!("review of iteration {}: {}", draft.iteration, draft.value),
            );
            return Ok(Refined { done, ..draft });
        }
        let previous: Option<Refined> = cx.previous()?;
        let (value, iteration) = match previous {
            Some(p) => (
                p.value
                    .checked_add(cx.params.step)
                    .ok_or_else(|| Error::invalid_input("the value overflows"))?,
                p.iteration.saturating_add(1),
            ),
            None => (cx.params.start, 1),
        };
        let done = cx.params.target.is_some_and(|t| value >= t);
        status::progress(1.0, format!("iteration {iteration}: {value}"));
        Ok(Refined {
            value,
            iteration,
            done,
        })
    }
}

wasm_orch_sdk::export!(Refine);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Refine;

    #[test]
    fn each_iteration_goes_on_from_the_previous_and_says_done_at_the_target() {
        let first: Value = TestRun::new(json!({ "start": 1, "step": 2, "target": 5 }))
            .node("loop")
            .run::<Refine>()
            .output();
        assert_eq!(first, json!({ "value": 1, "iteration": 1, "done": false }));
        let third: Value = TestRun::new(json!({ "start": 1, "step": 2, "target": 5 }))
            .node("loop")
            .upstream("loop", json!({ "value": 3, "iteration": 2, "done": false }))
            .run::<Refine>()
            .output();
        assert_eq!(third, json!({ "value": 5, "iteration": 3, "done": true }));
        // Another task's output is not the previous iteration.
        let other: Value = TestRun::new(json!({ "start": 7 }))
            .node("loop")
            .upstream(
                "elsewhere",
                json!({ "value": 100, "iteration": 9, "done": false }),
            )
            .run::<Refine>()
            .output();
        assert_eq!(other["value"], 7);
    }

    #[test]
    fn a_review_passes_the_draft_on_and_says_done_at_the_target() {
        let review = |value: i64| -> Value {
            TestRun::new(json!({ "review": true, "target": 10 }))
                .node("loop.2.review")
                .upstream(
                    "loop.2.draft",
                    json!({ "value": value, "iteration": 2, "done": false }),
                )
                .run::<Refine>()
                .output()
        };
        assert_eq!(
            review(5),
            json!({ "value": 5, "iteration": 2, "done": false })
        );
        assert_eq!(
            review(10),
            json!({ "value": 10, "iteration": 2, "done": true })
        );
        let alone = TestRun::new(json!({ "review": true })).run::<Refine>();
        assert!(alone.error().message().contains("draft"));
    }
}
