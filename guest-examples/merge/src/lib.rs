//! `merge`: adds up the word counts of its upstream tasks (the reducer of a word count).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasm_orch_sdk::{Agent, Context, Error, status};

#[derive(Deserialize)]
struct Params {
    /// How many of the most frequent words to list in `top`.
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    10
}

#[derive(Deserialize)]
struct Counts {
    words: u64,
    counts: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Merged {
    words: u64,
    distinct: usize,
    chunks: usize,
    top: Vec<(String, u64)>,
    counts: BTreeMap<String, u64>,
}

struct Merge;

impl Agent for Merge {
    type Params = Params;
    type Output = Merged;
    const CAPABILITIES: &'static [&'static str] = &["text.word-count.merge"];

    fn run(cx: Context<Params>) -> Result<Merged, Error> {
        let parts: Vec<Counts> = cx.upstream_all()?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut words = 0;
        for part in &parts {
            words += part.words;
            for (word, n) in &part.counts {
                *counts.entry(word.clone()).or_insert(0) += n;
            }
        }
        let mut top: Vec<(String, u64)> = counts.iter().map(|(w, n)| (w.clone(), *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(cx.params.top);
        status::progress(1.0, format!("{words} words from {} chunks", parts.len()));
        Ok(Merged {
            words,
            distinct: counts.len(),
            chunks: parts.len(),
            top,
            counts,
        })
    }
}

wasm_orch_sdk::export!(Merge);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Merge;

    #[test]
    fn merges_the_counts_of_every_chunk_and_ranks_the_top() {
        let outcome = TestRun::new(json!({ "top": 2 }))
            .upstream(
                "count[0]",
                json!({ "words": 3, "counts": { "a": 2, "b": 1 } }),
            )
            .upstream(
                "count[1]",
                json!({ "words": 2, "counts": { "b": 1, "c": 1 } }),
            )
            .run::<Merge>();
        let out: Value = outcome.output();
        assert_eq!(out["words"], 5);
        assert_eq!(out["chunks"], 2);
        assert_eq!(out["distinct"], 3);
        assert_eq!(out["top"], json!([["a", 2], ["b", 2]]));
    }
}
