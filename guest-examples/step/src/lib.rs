//! `step`: one step of a longer job, for durability tests. It adds 1 to the kv key
//! `exec/<run>/<node>` (so a test can count how often each task really ran, across crashes
//! and resumes), and to `counter` when given one; waits `ms` (a host call); writes
//! `step.txt` in its working directory and the blackboard key `result`; and returns its
//! `value` plus the sum of its upstream outputs, of the previous iteration's in a loop, and of
//! the integers in the file `read` names.

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
    /// A file (e.g. under `inputs/`) of whitespace-separated integers, added to the total.
    #[serde(default)]
    read: Option<String>,
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
        let mut inputs: Vec<i64> = cx.upstream_all()?;
        inputs.extend(cx.previous::<i64>()?);
        if let Some(path) = &cx.params.read {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::invalid_input(format!("cannot read `{path}`: {e}")))?;
            for word in text.split_whitespace() {
                inputs.push(word.parse().map_err(|_| {
                    Error::invalid_input(format!("`{path}` holds `{word}`, not an integer"))
                })?);
            }
        }
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Step;

    /// A `kv` tool that keeps its counts in `store`.
    fn kv(
        store: &Rc<RefCell<BTreeMap<String, i64>>>,
    ) -> impl FnMut(Value) -> Result<Value, wasm_orch_sdk::tools::ToolError> + 'static {
        let store = Rc::clone(store);
        move |input| {
            assert_eq!(input["op"], "add");
            let key = input["key"].as_str().unwrap_or_default().to_owned();
            let mut store = store.borrow_mut();
            let n = store.entry(key).or_default();
            *n += input["by"].as_i64().unwrap_or_default();
            Ok(json!(*n))
        }
    }

    #[test]
    fn counts_its_run_adds_its_upstreams_and_leaves_its_marks() {
        // The only test here that touches files: it works in a directory of its own.
        let dir = std::env::temp_dir().join(format!("step-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::env::set_current_dir(&dir).expect("cd into it");

        let store = Rc::new(RefCell::new(BTreeMap::new()));
        let outcome = TestRun::new(json!({ "value": 10, "ms": 5, "counter": "steps" }))
            .node("s3")
            .upstream("s1", 1)
            .upstream("s2", 2)
            .tool("kv", kv(&store))
            .sleep_tool()
            .run::<Step>();
        assert_eq!(outcome.output::<i64>(), 13);
        assert_eq!(outcome.blackboard["result"], 13);
        let counts = store.borrow();
        assert_eq!(counts["exec/test-run/s3"], 1);
        assert_eq!(counts["steps"], 1);
        let names: Vec<&str> = outcome.tool_calls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["kv", "kv", "sleep"]);
        let written = std::fs::read_to_string(dir.join("step.txt")).expect("step.txt");
        assert_eq!(written, "s3 = 10 + [1, 2]\n");
        // A file of integers it is told to read adds them too.
        std::fs::write(dir.join("nums.txt"), "4 5\n").expect("nums.txt");
        let store = Rc::new(RefCell::new(BTreeMap::new()));
        let outcome = TestRun::new(json!({ "value": 10, "read": "nums.txt" }))
            .upstream("s1", 1)
            .tool("kv", kv(&store))
            .run::<Step>();
        assert_eq!(outcome.output::<i64>(), 20);
        std::fs::write(dir.join("nums.txt"), "4 five\n").expect("nums.txt");
        let outcome = TestRun::new(json!({ "read": "nums.txt" }))
            .tool("kv", kv(&store))
            .run::<Step>();
        assert!(
            outcome
                .error()
                .to_string()
                .contains("`five`, not an integer")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn without_kv_it_is_unavailable() {
        let outcome = TestRun::new(json!({ "value": 1 })).run::<Step>();
        assert_eq!(
            outcome.error().kind(),
            wasm_orch_sdk::ErrorKind::Unavailable
        );
        assert!(
            outcome.blackboard.is_empty(),
            "nothing done before the count"
        );
    }
}
