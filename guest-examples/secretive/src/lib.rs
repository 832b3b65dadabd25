//! `secretive`: reads the secret `name` (after `delay_ms`, waited with the `sleep` tool),
//! uses it as a bearer token in an `http_get` call to
//! `url` (when given), then tries to leak it through everything a task can emit: stdout,
//! stderr, a log line, progress, a partial result, a blackboard value, a file in its working
//! directory, its output, and (with `fail = true`) its error message. The host must redact
//! it from all of them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasm_orch_sdk::{Agent, Context, Error, blackboard, secrets, status, tools};

#[derive(Deserialize)]
struct Params {
    name: String,
    url: Option<String>,
    #[serde(default)]
    fail: bool,
    delay_ms: Option<u64>,
}

#[derive(Serialize)]
struct Output {
    leaked: String,
    /// What the server answered to the call made with the secret.
    answer: Option<Value>,
}

struct Secretive;

impl Agent for Secretive {
    type Params = Params;
    type Output = Output;

    fn run(cx: Context<Params>) -> Result<Output, Error> {
        if let Some(ms) = cx.params.delay_ms {
            tools::sleep(std::time::Duration::from_millis(ms))?;
        }
        let secret = secrets::get(&cx.params.name).map_err(Error::failed)?;
        let answer = match &cx.params.url {
            Some(url) => Some(
                tools::invoke::<Value, Value>(
                    "http_get",
                    &json!({ "url": url, "headers": { "authorization": format!("Bearer {secret}") } }),
                )
                .map_err(Error::unavailable)?,
            ),
            None => None,
        };
        println!("stdout: the secret is {secret}");
        eprintln!("stderr: the secret is {secret}");
        status::info(format!("log: the secret is {secret}"));
        status::progress(0.5, format!("progress: the secret is {secret}"));
        status::partial(&json!({ "secret": secret, "nested": [format!("x{secret}x")] }));
        blackboard::put("leak", &json!({ "secret": secret }))?;
        std::fs::write("leak.txt", format!("file: the secret is {secret}\n"))?;
        if cx.params.fail {
            return Err(Error::failed(format!("error: the secret is {secret}")));
        }
        Ok(Output {
            leaked: format!("output: the secret is {secret}"),
            answer,
        })
    }
}

wasm_orch_sdk::export!(Secretive);
