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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::ErrorKind;
    use wasm_orch_sdk::testing::TestRun;

    use super::Secretive;

    const TOKEN: &str = "s3cr3t-t0ken";

    #[test]
    fn uses_the_secret_as_a_bearer_token_and_tries_to_leak_it_everywhere() {
        // The only test here that writes a file: it works in a directory of its own.
        let dir = std::env::temp_dir().join(format!("secretive-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::env::set_current_dir(&dir).expect("cd into it");

        let outcome = TestRun::new(json!({ "name": "api", "url": "http://127.0.0.1:9/x" }))
            .secret("api", TOKEN)
            .tool("http_get", |input| {
                Ok(json!({ "status": 200, "auth": input["headers"]["authorization"] }))
            })
            .run::<Secretive>();
        let out: Value = outcome.output();
        assert_eq!(out["leaked"], format!("output: the secret is {TOKEN}"));
        assert_eq!(out["answer"]["auth"], format!("Bearer {TOKEN}"));
        assert_eq!(outcome.secrets_read, ["api"]);
        assert!(outcome.logs[0].1.contains(TOKEN));
        assert!(outcome.progress[0].1.contains(TOKEN));
        assert_eq!(outcome.partials[0]["secret"], TOKEN);
        assert_eq!(outcome.blackboard["leak"]["secret"], TOKEN);
        let file = std::fs::read_to_string(dir.join("leak.txt")).expect("leak.txt");
        assert!(file.contains(TOKEN));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_ungranted_secret_fails_the_task_before_anything_leaks() {
        let outcome = TestRun::new(json!({ "name": "api" })).run::<Secretive>();
        assert_eq!(outcome.error().kind(), ErrorKind::Failed);
        assert!(outcome.error().message().contains("not granted"));
        assert!(outcome.logs.is_empty() && outcome.blackboard.is_empty());
    }
}
