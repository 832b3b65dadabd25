//! `hostile`: misbehaves in the ways a host must survive: text that would drive a terminal
//! (escape sequences, carriage returns, OSC 52) in its progress, logs, stderr and error; an
//! error message of any size; a tool input of any size; oversized blackboard keys, values and
//! secret names. Each mode is one task's parameters.

use std::io::Write;

use serde::Deserialize;
use wasm_orch_sdk::{Agent, Context, Error, secrets, status, tools};

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
enum Params {
    /// Escape sequences everywhere text goes, then fail with one.
    Escapes,
    /// Fail with an error message of `bytes` bytes.
    HugeError { bytes: usize },
    /// Call `sleep` with an input of `bytes` bytes; succeed with what the host answered.
    HugeToolInput { bytes: usize },
    /// A key, a value and a secret name of `bytes` bytes each; succeed with the answers.
    HugeNames { bytes: usize },
    /// Log one info line, nap a millisecond (a tool call), and succeed.
    Chatty,
}

const NASTY: &str = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\rgone\x08\x08";

struct Hostile;

impl Agent for Hostile {
    type Params = Params;
    type Output = serde_json::Value;

    fn run(cx: Context<Params>) -> Result<serde_json::Value, Error> {
        match cx.params {
            Params::Escapes => {
                status::progress(0.5, format!("progress {NASTY}"));
                status::log(status::Level::Warn, format!("log {NASTY}"));
                let _ = writeln!(std::io::stderr(), "stderr {NASTY}");
                Err(Error::failed(format!("error {NASTY}")))
            }
            Params::HugeError { bytes } => Err(Error::failed("E".repeat(bytes))),
            Params::HugeToolInput { bytes } => {
                let input = format!("{{\"ms\": 1, \"pad\": \"{}\"}}", "x".repeat(bytes));
                let answer = tools::invoke_raw("sleep", &input);
                Ok(serde_json::json!({ "tool": format!("{answer:?}") }))
            }
            Params::HugeNames { bytes } => {
                let long = "k".repeat(bytes);
                // The host's own answers (the SDK's errors name the key themselves).
                use wasm_orch_sdk::wit::wasm_orch::agent::blackboard as raw;
                let key = raw::put(&long, "1");
                let value = raw::put("small", &format!("\"{}\"", "v".repeat(bytes)));
                let secret = secrets::get(&long).map(|_| ()).map_err(|e| e.to_string());
                let (key, value, secret) = (
                    format!("{key:?}"),
                    format!("{value:?}"),
                    format!("{secret:?}"),
                );
                let head = |s: &str| s.chars().take(200).collect::<String>();
                Ok(serde_json::json!({
                    "key": head(&key), "key_len": key.len(),
                    "value": head(&value), "value_len": value.len(),
                    "secret": head(&secret), "secret_len": secret.len(),
                }))
            }
            Params::Chatty => {
                status::log(status::Level::Info, "a chatty line");
                tools::sleep(std::time::Duration::from_millis(1)).map_err(|e| Error::failed(e))?;
                Ok(serde_json::Value::Null)
            }
        }
    }
}

wasm_orch_sdk::export!(Hostile);
