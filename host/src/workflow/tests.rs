//! Validation of workflow files: what is accepted, and what each mistake is reported as.

use std::path::Path;

use super::*;

/// A directory with placeholder component files `a.wasm` and `b.wasm` (validation checks that
/// they exist; it does not compile them) and a text file to split.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a.wasm", "b.wasm"] {
        std::fs::write(dir.path().join(name), b"\0asm").expect("write");
    }
    std::fs::write(
        dir.path().join("text.txt"),
        "one two three four five six seven eight",
    )
    .expect("write");
    dir
}

const AGENTS: &str = r#"
[agents.a]
component = "a.wasm"
[agents.b]
component = "b.wasm"
"#;

fn parse_in(dir: &Path, body: &str) -> Result<Workflow, Diagnostics> {
    let text = format!("[workflow]\nname = \"w\"\n{AGENTS}{body}");
    parse_text(dir, &text, &[])
}

fn parse_text(
    dir: &Path,
    text: &str,
    params: &[(String, String)],
) -> Result<Workflow, Diagnostics> {
    match Workflow::parse(text, dir.join("w.toml"), params) {
        Ok(w) => Ok(w),
        Err(Error::InvalidWorkflow(d)) => Err(d),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The single problem of an invalid file: (line, message).
fn problem(dir: &Path, body: &str) -> (usize, String, String) {
    let d = parse_in(dir, body).expect_err("the workflow should be invalid");
    assert_eq!(d.len(), 1, "expected one problem, got: {d}");
    let p = d.iter().next().expect("one");
    (
        p.line().unwrap_or(0),
        p.message().to_owned(),
        p.fix().unwrap_or("").to_owned(),
    )
}

/// The 1-based line of the first occurrence of `needle` in the file `parse_in` builds.
fn line_of(body: &str, needle: &str) -> usize {
    let text = format!("[workflow]\nname = \"w\"\n{AGENTS}{body}");
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

fn deps(w: &Workflow, id: &str) -> Vec<String> {
    let t = w.tasks.iter().find(|t| t.id == id).expect("task");
    t.deps.iter().map(|&d| w.tasks[d].id.clone()).collect()
}

#[test]
fn a_valid_workflow_becomes_a_dag_with_limits_and_params() {
    let dir = scratch();
    let text = r#"
[workflow]
name = "calc"
max_concurrency = 3
tenant = "acme"
defaults = { timeout = "9s" }

[agents.a]
component = "a.wasm"
fuel = 1_000
memory = "2MiB"
max_output = 512
disk = "3MiB"

[[tasks]]
id = "left"
agent = "a"
with = { x = 1, nested = { list = [1, "two"] } }

[[tasks]]
id = "sum"
agent = "a"
depends_on = ["left"]
priority = 5
mutex = "db"
critical = false
"#;
    let w = parse_text(dir.path(), text, &[]).expect("valid");
    assert_eq!(
        (w.name(), w.tenant(), w.max_concurrency()),
        ("calc", "acme", 3)
    );
    assert_eq!(w.task_ids().collect::<Vec<_>>(), ["left", "sum"]);
    assert_eq!(deps(&w, "sum"), ["left"]);
    let limits = w.agents[0].limits;
    assert_eq!(
        (
            limits.fuel,
            limits.memory,
            limits.max_output,
            limits.disk,
            limits.timeout
        ),
        (
            1_000,
            2 << 20,
            512,
            3 << 20,
            std::time::Duration::from_secs(9)
        )
    );
    assert_eq!(
        w.tasks[0].params,
        serde_json::json!({ "x": 1, "nested": { "list": [1, "two"] } })
    );
    let sum = &w.tasks[1];
    assert_eq!(
        (sum.priority, sum.mutex.as_deref(), sum.critical),
        (5, Some("db"), false)
    );
    assert_eq!((w.tasks[0].critical_path, sum.critical_path), (2, 1));
    assert!(w.agents[0].component.ends_with("a.wasm"));
}

#[test]
fn a_cycle_is_reported_with_its_path_at_the_dependency_that_closes_it() {
    let dir = scratch();
    let body = r#"
[[tasks]]
id = "x"
agent = "a"
depends_on = ["z"]

[[tasks]]
id = "y"
agent = "a"
depends_on = ["x"]

[[tasks]]
id = "z"
agent = "a"
depends_on = ["y"]
"#;
    let (line, message, fix) = problem(dir.path(), body);
    assert!(
        message.contains("dependency cycle: x → z → y → x"),
        "{message}"
    );
    assert_eq!(line, line_of(body, "depends_on = [\"z\"]"));
    assert!(fix.contains("remove one"), "{fix}");
}

#[test]
fn a_task_depending_on_itself_is_a_cycle() {
    let dir = scratch();
    let (_, message, _) = problem(
        dir.path(),
        "[[tasks]]\nid = \"me\"\nagent = \"a\"\ndepends_on = [\"me\"]\n",
    );
    assert!(message.contains("dependency cycle: me → me"), "{message}");
}

#[test]
fn an_unknown_agent_is_reported_with_a_suggestion() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"aa\"\n";
    let (line, message, fix) = problem(dir.path(), body);
    assert_eq!(line, line_of(body, "agent = \"aa\""));
    assert!(message.contains("unknown agent `aa`"), "{message}");
    assert!(fix.contains("did you mean `a`"), "{fix}");
}

#[test]
fn an_unknown_dependency_is_reported() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"a\"\ndepends_on = [\"nope\"]\n";
    let (line, message, _) = problem(dir.path(), body);
    assert_eq!(line, line_of(body, "\"nope\""));
    assert!(
        message.contains("depends on unknown task `nope`"),
        "{message}"
    );
}

#[test]
fn a_duplicate_id_names_both_lines() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"a\"\n\n[[tasks]]\nid = \"t\"\nagent = \"b\"\n";
    let (line, message, fix) = problem(dir.path(), body);
    let first = line_of(body, "id = \"t\"");
    assert_eq!(line, first + 4);
    assert!(message.contains("duplicate task id `t`"), "{message}");
    assert!(fix.contains(&format!("line {first}")), "{fix}");
}

#[test]
fn a_missing_component_file_is_reported_at_its_line() {
    let dir = scratch();
    let text = "[workflow]\nname = \"w\"\n[agents.a]\ncomponent = \"missing.wasm\"\n[[tasks]]\nid = \"t\"\nagent = \"a\"\n";
    let d = parse_text(dir.path(), text, &[]).expect_err("invalid");
    let p = d.iter().next().expect("one");
    assert_eq!(p.line(), Some(4));
    assert!(
        p.message().contains("missing.wasm") && p.message().contains("does not exist"),
        "{}",
        p.message()
    );
}

#[test]
fn unknown_keys_are_errors_that_point_at_the_key() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"a\"\ndepend_on = [\"x\"]\n";
    let (line, message, _) = problem(dir.path(), body);
    assert_eq!(line, line_of(body, "depend_on"));
    assert!(message.contains("unknown field `depend_on`"), "{message}");
}

#[test]
fn bad_limits_are_reported_each_at_its_line() {
    let dir = scratch();
    let text = r#"[workflow]
name = "w"
[agents.a]
component = "a.wasm"
memory = "64 potatoes"
timeout = 5
fuel = -1
max_output = "2GiB"
disk = "2048GiB"
[[tasks]]
id = "t"
agent = "a"
"#;
    let d = parse_text(dir.path(), text, &[]).expect_err("invalid");
    let lines: Vec<usize> = d.iter().filter_map(Diagnostic::line).collect();
    assert_eq!(lines, [5, 6, 7, 8, 9], "{d}");
    assert!(
        d.to_string().contains("disk must be at most 1024GiB"),
        "{d}"
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"zz\"\n[[tasks]]\nid = \"u\"\nagent = \"a\"\ndepends_on = [\"v\"]\n";
    let d = parse_in(dir.path(), body).expect_err("invalid");
    assert_eq!(d.len(), 2, "{d}");
    assert!(d.to_string().contains("2 problems found"));
}

#[test]
fn phases_run_in_order_and_serial_phases_run_one_task_at_a_time() {
    let dir = scratch();
    let body = r#"
[[phases]]
name = "research"
[[phases.tasks]]
id = "r1"
agent = "a"
[[phases.tasks]]
id = "r2"
agent = "a"

[[phases]]
name = "write"
parallel = false
[[phases.tasks]]
id = "w1"
agent = "b"
[[phases.tasks]]
id = "w2"
agent = "b"
"#;
    let w = parse_in(dir.path(), body).expect("valid");
    assert!(deps(&w, "r1").is_empty() && deps(&w, "r2").is_empty());
    assert_eq!(deps(&w, "w1"), ["r1", "r2"]);
    assert_eq!(deps(&w, "w2"), ["r1", "r2", "w1"]);
}

#[test]
fn split_fans_a_task_out_and_dependents_need_every_part() {
    let dir = scratch();
    let body = r#"
[[tasks]]
id = "count"
agent = "a"
with = { lang = "en" }
split = { file = "text.txt", parts = 3 }

[[tasks]]
id = "merge"
agent = "b"
depends_on = ["count"]
"#;
    let w = parse_in(dir.path(), body).expect("valid");
    assert_eq!(
        w.task_ids().collect::<Vec<_>>(),
        ["count[0]", "count[1]", "count[2]", "merge"]
    );
    assert_eq!(deps(&w, "merge"), ["count[0]", "count[1]", "count[2]"]);
    let text: String = w.tasks[..3]
        .iter()
        .map(|t| t.params["text"].as_str().expect("a chunk"))
        .collect();
    assert_eq!(text, "one two three four five six seven eight");
    assert_eq!(w.tasks[1].params["lang"], "en");
}

#[test]
fn params_fill_references_and_can_be_overridden() {
    let dir = scratch();
    let text = r#"[workflow]
name = "w"
[params]
n = 2
who = "world"
[agents.a]
component = "a.wasm"
[[tasks]]
id = "t"
agent = "a"
with = { n = "${n}", greeting = "hello ${who}" }
"#;
    let w = parse_text(dir.path(), text, &[]).expect("valid");
    assert_eq!(
        w.tasks[0].params,
        serde_json::json!({ "n": 2, "greeting": "hello world" })
    );
    let overrides = [
        ("n".to_owned(), "40".to_owned()),
        ("who".to_owned(), "you".to_owned()),
    ];
    let w = parse_text(dir.path(), text, &overrides).expect("valid");
    assert_eq!(
        w.tasks[0].params,
        serde_json::json!({ "n": 40, "greeting": "hello you" })
    );
    let unknown = [("m".to_owned(), "1".to_owned())];
    let d = parse_text(dir.path(), text, &unknown).expect_err("unknown param");
    assert!(
        d.to_string().contains("--param `m` is not a parameter"),
        "{d}"
    );
}

#[test]
fn an_unknown_param_reference_is_an_error() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"t\"\nagent = \"a\"\nwith = { x = \"${nope}\" }\n";
    let (line, message, _) = problem(dir.path(), body);
    assert_eq!(line, line_of(body, "\"${nope}\""));
    assert!(message.contains("unknown parameter `nope`"), "{message}");
}

#[test]
fn names_that_could_be_paths_are_refused() {
    let dir = scratch();
    let (_, message, _) = problem(dir.path(), "[[tasks]]\nid = \"../escape\"\nagent = \"a\"\n");
    assert!(message.contains("not a valid task id"), "{message}");
}

#[test]
fn a_workflow_without_tasks_is_refused() {
    let dir = scratch();
    let (_, message, _) = problem(dir.path(), "");
    assert!(message.contains("no tasks"), "{message}");
}

#[test]
fn the_critical_path_counts_the_longest_chain_below_each_task() {
    let dir = scratch();
    let body = r#"
[[tasks]]
id = "root"
agent = "a"
[[tasks]]
id = "short"
agent = "a"
depends_on = ["root"]
[[tasks]]
id = "long1"
agent = "a"
depends_on = ["root"]
[[tasks]]
id = "long2"
agent = "a"
depends_on = ["long1"]
"#;
    let w = parse_in(dir.path(), body).expect("valid");
    let cp: Vec<u32> = w.tasks.iter().map(|t| t.critical_path).collect();
    assert_eq!(cp, [3, 1, 2, 1]);
}

#[test]
fn graphs_render_as_dot_and_mermaid() {
    let dir = scratch();
    let body = "[[tasks]]\nid = \"x\"\nagent = \"a\"\n[[tasks]]\nid = \"y\"\nagent = \"b\"\ndepends_on = [\"x\"]\n";
    let w = parse_in(dir.path(), body).expect("valid");
    let dot = w.render(GraphFormat::Dot);
    assert!(dot.starts_with("digraph \"w\""), "{dot}");
    assert!(dot.contains("\"x\" -> \"y\";"), "{dot}");
    let mermaid = w.render(GraphFormat::Mermaid);
    assert!(mermaid.contains("t0 --> t1"), "{mermaid}");
    assert!(mermaid.contains("t1[\"y<br/>b\"]"), "{mermaid}");
}
