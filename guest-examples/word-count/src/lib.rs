//! `word-count`: counts the words of one chunk of text (the mapper of a word count).
//!
//! A word is a maximal run of alphanumeric characters, lowercased.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    text: String,
}

#[derive(Serialize)]
struct Counts {
    words: u64,
    counts: BTreeMap<String, u64>,
}

struct WordCount;

impl Agent for WordCount {
    type Params = Params;
    type Output = Counts;
    const CAPABILITIES: &'static [&'static str] = &["text.word-count"];

    fn run(cx: Context<Params>) -> Result<Counts, Error> {
        let text = cx.params.text;
        let lines: Vec<&str> = text.lines().collect();
        let mut counts = BTreeMap::new();
        let mut words = 0u64;
        for (i, line) in lines.iter().enumerate() {
            for word in line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                *counts.entry(word.to_lowercase()).or_insert(0) += 1;
                words += 1;
            }
            if i % 50 == 49 {
                status::progress(
                    (i + 1) as f32 / lines.len() as f32,
                    format!("{words} words"),
                );
            }
        }
        status::progress(1.0, format!("{words} words, {} distinct", counts.len()));
        Ok(Counts { words, counts })
    }
}

wasm_orch_sdk::export!(WordCount);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::WordCount;

    #[test]
    fn counts_lowercased_words_and_reports_progress() {
        let outcome =
            TestRun::new(json!({ "text": "The cat, the HAT.\nA cat!" })).run::<WordCount>();
        let out: Value = outcome.output();
        assert_eq!(out["words"], 6);
        assert_eq!(
            out["counts"],
            json!({ "a": 1, "cat": 2, "hat": 1, "the": 2 })
        );
        assert_eq!(outcome.progress.last().map(|p| p.0), Some(1.0));
    }
}
