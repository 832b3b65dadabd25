//! `step`: one step of a longer job, for durability tests. It adds 1 to the kv key
//! `exec/<run>/<node>` (so a test can count how often each task really ran, across crashes
//! and resumes), and to `counter` when given one; waits `ms` (a host call); writes
//! `step.txt` in its working directory and the blackboard key `result`; and returns its
//! `value` plus the sum of its upstream outputs.

use std::time::Duration;

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, blackboard, tools};

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    value: i64,
    #[serde(default)]
    ms: u64,
    /// Another kv key to add 1 to.
    #[serde(default)]
    counter: Option<String>,
}

struct Step;

fn add(key: &str) -> Result<(), Error> {
    let _: serde_json::Value = tools::invoke(
        "kv",
        &serde_json::json!({ "op": "add", "key": key, "by": 1 }),
    )
    .map_err(Error::unavailable)?;
    Ok(())
}

impl Agent for Step {
    type Params = Params;
    type Output = i64;

    fn run(cx: Context<Params>) -> Result<i64, Error> {
        let task = cx.task();
        add(&format!("exec/{}/{}", task.run_id, task.node))?;
        if let Some(counter) = &cx.params.counter {
            add(counter)?;
        }
        if cx.params.ms > 0 {
            tools::sleep(Duration::from_millis(cx.params.ms)).map_err(Error::unavailable)?;
        }
        let inputs: Vec<i64> = cx.upstream_all()?;
        let total = cx.params.value + inputs.iter().sum::<i64>();
        std::fs::write(
            "step.txt",
            format!("{} = {} + {:?}\n", task.node, cx.params.value, inputs),
        )
        .map_err(Error::failed)?;
        blackboard::put("result", &total)?;
        Ok(total)
    }
}

wasm_orch_sdk::export!(Step);
