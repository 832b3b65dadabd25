//! The word-count example: a real book split into chunks, counted in parallel by `word-count`
//! sub-agents and merged by `merge`, matches a count done here in plain Rust.

use std::collections::BTreeMap;

use serde_json::Value;
use wasm_orch::events::EventKind;
use wasm_orch::{RunOptions, RunStatus, TaskStatus, Workflow};
use wasm_orch_tests::{Scratch, root};

/// The count the agents should arrive at: maximal runs of alphanumeric characters, lowercased.
fn count_words(text: &str) -> (u64, BTreeMap<String, u64>) {
    let mut counts = BTreeMap::new();
    let mut total = 0;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        total += 1;
    }
    (total, counts)
}

fn as_counts(value: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(value["counts"].clone()).expect("counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_book_is_counted_in_parallel_and_merged_exactly() {
    let scratch = Scratch::new();
    let workflow = Workflow::from_file(root().join("examples/word-count.toml")).expect("valid");
    let done = scratch
        .run_workflow(&scratch.runtime(), &workflow, RunOptions::new())
        .await;
    assert_eq!(done.report.status, RunStatus::Succeeded);

    let text = std::fs::read_to_string(root().join("examples/data/sherlock-holmes.txt"))
        .expect("the book");
    let (total, expected) = count_words(&text);
    assert!(total > 100_000, "a real text");
    let merged = done.report.output("merge").expect("merge output");
    assert_eq!(merged["words"], total);
    assert_eq!(merged["chunks"], 12);
    assert_eq!(merged["distinct"], expected.len());
    assert_eq!(as_counts(&merged), expected);
    assert_eq!(
        merged["top"][0],
        serde_json::json!(["the", expected["the"]])
    );

    // The parts really were counted separately, and they add up.
    let parts: Vec<Value> = (0..12)
        .map(|i| done.report.output(&format!("count[{i}]")).expect("a part"))
        .collect();
    let words: u64 = parts.iter().map(|p| p["words"].as_u64().unwrap_or(0)).sum();
    assert_eq!(words, total);
    let merge = done.report.task("merge").expect("merge");
    assert_eq!(merge.depends_on.len(), 12);

    // Several parts were running at the same time.
    let mut running = 0usize;
    let mut most = 0usize;
    for event in &done.events {
        if let EventKind::TaskStatus(u) = &event.kind {
            match u.status {
                TaskStatus::Running => running += 1,
                s if s.is_final() => running = running.saturating_sub(1),
                _ => {}
            }
            most = most.max(running);
        }
    }
    assert!(most >= 2, "the parts never ran side by side");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_text_can_be_given_as_a_parameter() {
    let scratch = Scratch::new();
    let text = "It was the best of times, it was the worst of times,\nit was the age of wisdom.";
    // The example workflow, beside a text of our own: a workflow reads files under its own
    // directory only.
    let example = std::fs::read_to_string(root().join("examples/word-count.toml")).expect("read");
    let flow = scratch.workflow(
        "word-count.toml",
        &example.replace("../target/guests", "{guests}"),
    );
    std::fs::write(scratch.path().join("dickens.txt"), text).expect("write");
    let params = [("text".to_owned(), "dickens.txt".to_owned())];
    let workflow = Workflow::from_file_with_params(flow, &params).expect("valid");
    let done = scratch
        .run_workflow(&scratch.runtime(), &workflow, RunOptions::new())
        .await;
    let merged = done.report.output("merge").expect("merge output");
    let (total, expected) = count_words(text);
    assert_eq!(merged["words"], total);
    assert_eq!(as_counts(&merged), expected);
    assert_eq!(merged["top"][0], serde_json::json!(["it", 3]));
}
