//! `scribe`: writes a short text for one step of work (notes, a summary, a report, slides, or
//! any pipeline step) from its topic and what its upstream tasks wrote. Deterministic, so a
//! planned workflow's results can be checked; a stand-in for a model.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_orch_sdk::{Agent, Context, Error, status};

/// How much of each upstream text it quotes.
const QUOTED: usize = 160;

#[derive(Deserialize)]
struct Params {
    kind: String,
    #[serde(default)]
    topic: String,
}

#[derive(Serialize)]
struct Written {
    kind: String,
    topic: String,
    text: String,
    /// The upstream tasks it drew on, in order.
    from: Vec<String>,
}

struct Scribe;

impl Agent for Scribe {
    type Params = Params;
    type Output = Written;
    const CAPABILITIES: &'static [&'static str] = &["text.write"];

    fn run(cx: Context<Params>) -> Result<Written, Error> {
        let Params { kind, topic } = &cx.params;
        let kind: String = kind.chars().take(40).collect();
        let topic: String = topic.chars().take(200).collect();
        let mut from = Vec::new();
        let mut quotes = Vec::new();
        for up in cx.upstream_outcomes::<Value>()? {
            if let Ok(output) = up.outcome {
                let text = output["text"].as_str().unwrap_or_default();
                quotes.push(text.chars().take(QUOTED).collect::<String>());
                from.push(up.node);
            }
        }
        let text = match kind.as_str() {
            "notes" => format!("Notes on {topic}: what it is, who uses it, what limits it."),
            "summary" => format!("{topic}, in short: {}", quotes.join(" ")),
            "report" => format!(
                "Report on {topic}, from {} findings. {}",
                quotes.len(),
                quotes.join(" | ")
            ),
            "presentation" => format!("{} slides on {topic}.", quotes.len() + 2),
            step => format!("{step} {topic}: done after {}", from.join(", ")),
        };
        status::progress(1.0, format!("{kind} written"));
        Ok(Written {
            kind,
            topic,
            text,
            from,
        })
    }
}

wasm_orch_sdk::export!(Scribe);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Scribe;

    #[test]
    fn writes_from_its_topic_and_what_came_before() {
        let notes: Value = TestRun::new(json!({ "kind": "notes", "topic": "wasm" }))
            .run::<Scribe>()
            .output();
        assert!(
            notes["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Notes on wasm"))
        );
        let report: Value = TestRun::new(json!({ "kind": "report", "topic": "wasm, wasi" }))
            .upstream("a", json!({ "text": "first" }))
            .upstream("b", json!({ "text": "second" }))
            .run::<Scribe>()
            .output();
        assert_eq!(report["from"], json!(["a", "b"]));
        assert_eq!(
            report["text"],
            "Report on wasm, wasi, from 2 findings. first | second"
        );
    }
}
