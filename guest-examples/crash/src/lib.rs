//! `crash`: misbehaves by panicking with a message; the host records a trap with that message.

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    #[serde(default = "default_message")]
    message: String,
}

fn default_message() -> String {
    "the crash agent crashed, as designed".to_owned()
}

struct Crash;

impl Agent for Crash {
    type Params = Params;
    type Output = ();

    fn run(cx: Context<Params>) -> Result<(), Error> {
        status::progress(0.5, "about to crash");
        panic!("{}", cx.params.message);
    }
}

wasm_orch_sdk::export!(Crash);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::testing::TestRun;

    use super::Crash;

    #[test]
    #[should_panic(expected = "boom at step 3")]
    fn panics_with_the_message_it_was_given() {
        TestRun::new(json!({ "message": "boom at step 3" })).run::<Crash>();
    }

    #[test]
    #[should_panic(expected = "the crash agent crashed, as designed")]
    fn panics_with_its_own_message_by_default() {
        TestRun::new(json!({})).run::<Crash>();
    }
}
