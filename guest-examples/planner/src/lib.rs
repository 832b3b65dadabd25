//! `planner`: turns a query into a plan (the tasks to run below it), by rules; no model is
//! needed to show how a planner agent works. Its agent must be declared `planner = true`: the
//! host then checks the plan as it checks a workflow file and splices it into the run.
//!
//! - arithmetic: "Calculate 1+2 and 3+4, then multiply results" gives two additions that run
//!   at once and a multiplication after both (agents `add` and `mul`);
//! - research: "Research wasm, wasi and components, then write a report and a presentation"
//!   gives one `planner` task per topic ("Investigate wasm": notes, then a summary; a plan two
//!   levels deep), a report after them all, a presentation after the report (agent `scribe`);
//! - pipelines: "fetch → process → analyze → visualize" gives a chain of `scribe` steps.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasm_orch_sdk::{Agent, Context, Error, status};

/// The longest query it reads.
const MAX_QUERY: usize = 4096;
/// The most topics, expressions or steps a plan has.
const MAX_PARTS: usize = 32;

#[derive(Deserialize)]
struct Params {
    query: String,
    /// Passed to the arithmetic tasks (a host `sleep`), to make the schedule visible.
    delay_ms: Option<u64>,
    /// The agent of a pipeline's steps (default `scribe`).
    #[serde(default = "scribe")]
    step_agent: String,
    /// Parameters every pipeline step gets besides its `kind` and `topic`.
    #[serde(default)]
    step_with: serde_json::Map<String, Value>,
}

fn scribe() -> String {
    "scribe".into()
}

/// A plan: what the host splices into the run.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub tasks: Vec<PlanTask>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanTask {
    pub id: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub with: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl PlanTask {
    fn new(id: impl Into<String>, agent: &str, with: Value) -> Self {
        Self {
            id: id.into(),
            agent: agent.to_owned(),
            with,
            depends_on: Vec::new(),
            description: None,
        }
    }

    fn after(mut self, deps: impl IntoIterator<Item = String>) -> Self {
        self.depends_on.extend(deps);
        self
    }

    fn described(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }
}

struct Planner;

impl Agent for Planner {
    type Params = Params;
    type Output = Plan;
    const CAPABILITIES: &'static [&'static str] = &["plan.decompose"];

    fn run(cx: Context<Params>) -> Result<Plan, Error> {
        let query = cx.params.query.trim();
        if query.len() > MAX_QUERY {
            return Err(Error::invalid_input(format!(
                "the query has {} bytes; at most {MAX_QUERY} are read",
                query.len()
            )));
        }
        let lower = query.to_lowercase();
        let plan = if let Some(topic) = strip_word(&lower, "investigate") {
            investigate(topic)
        } else if let Some(rest) = strip_word(&lower, "research") {
            research(rest)?
        } else if lower.contains('→') || lower.contains("->") {
            pipeline(&lower, &cx.params.step_agent, &cx.params.step_with)?
        } else {
            arithmetic(&lower, cx.params.delay_ms)?
        };
        status::progress(1.0, format!("planned {} tasks", plan.tasks.len()));
        Ok(plan)
    }
}

wasm_orch_sdk::export!(Planner);

/// `text` without its first word `word` (and the space after it).
fn strip_word<'t>(text: &'t str, word: &str) -> Option<&'t str> {
    let rest = text.strip_prefix(word)?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// A task id from free text: lowercase letters, digits and `-`.
fn slug(text: &str, taken: &[String]) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let base = slug.trim_end_matches('-').to_owned();
    let base = if base.is_empty() { "part".into() } else { base };
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// `a op b` expressions, in order (`op` is `+` or `*`).
fn expressions(text: &str) -> Vec<(i64, char, i64)> {
    #[derive(Clone, Copy)]
    enum Token {
        Number(i64),
        Op(char),
        Other,
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut digits = String::from(c);
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            tokens.push(digits.parse().map_or(Token::Other, Token::Number));
        } else if matches!(c, '+' | '*' | '×') {
            tokens.push(Token::Op(if c == '+' { '+' } else { '*' }));
        } else if !c.is_whitespace() {
            tokens.push(Token::Other);
        }
    }
    tokens
        .windows(3)
        .filter_map(|w| match w {
            [Token::Number(a), Token::Op(op), Token::Number(b)] => Some((*a, *op, *b)),
            _ => None,
        })
        .collect()
}

fn arithmetic(query: &str, delay_ms: Option<u64>) -> Result<Plan, Error> {
    let found = expressions(query);
    if found.is_empty() {
        return Err(Error::invalid_input(
            "nothing to plan: ask for arithmetic (\"Calculate 1+2 and 3+4, then multiply results\"), \
             research (\"Research X and Y, then write a report\") or a pipeline (\"fetch → process\")",
        ));
    }
    if found.len() > MAX_PARTS {
        return Err(Error::invalid_input(format!(
            "{} expressions; a plan has at most {MAX_PARTS}",
            found.len()
        )));
    }
    let mut tasks = Vec::new();
    for (i, (a, op, b)) in found.iter().enumerate() {
        let (name, agent) = if *op == '+' {
            ("sum", "add")
        } else {
            ("product", "mul")
        };
        let mut with = json!({ "a": a, "b": b });
        if let Some(ms) = delay_ms {
            with["delay_ms"] = json!(ms);
        }
        tasks.push(
            PlanTask::new(format!("{name}-{}", i + 1), agent, with)
                .described(format!("{a} {op} {b}")),
        );
    }
    let parts: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let then = query.split_once("then").map(|(_, t)| t);
    let combine = then.and_then(|t| {
        if t.contains("multiply") || t.contains("product") {
            Some(("product", "mul", "the product of the results"))
        } else if t.contains("add") || t.contains("sum") {
            Some(("total", "add", "the sum of the results"))
        } else {
            None
        }
    });
    if let Some((id, agent, what)) = combine {
        let mut with = json!({});
        if let Some(ms) = delay_ms {
            with["delay_ms"] = json!(ms / 2);
        }
        tasks.push(PlanTask::new(id, agent, with).after(parts).described(what));
    }
    Ok(Plan { tasks })
}

/// "wasm, wasi and components, then write a report and a presentation"
fn research(rest: &str) -> Result<Plan, Error> {
    let (topics, then) = match rest.split_once("then") {
        Some((topics, then)) => (topics, then),
        None => (rest, ""),
    };
    let topics: Vec<&str> = topics
        .split([',', ';'])
        .flat_map(|t| t.split(" and "))
        .map(|t| t.trim().trim_end_matches('.'))
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        return Err(Error::invalid_input(
            "research what? name the topics: \"Research X and Y\"",
        ));
    }
    if topics.len() > MAX_PARTS {
        return Err(Error::invalid_input(format!(
            "{} topics; a plan has at most {MAX_PARTS}",
            topics.len()
        )));
    }
    let mut tasks: Vec<PlanTask> = Vec::new();
    let mut taken = Vec::new();
    for topic in &topics {
        let id = format!("research-{}", slug(topic, &taken));
        taken.push(id.clone());
        tasks.push(
            PlanTask::new(
                &id,
                "planner",
                json!({ "query": format!("investigate {topic}") }),
            )
            .described(format!("research {topic}, planned in turn")),
        );
    }
    let all = topics.join(", ");
    let mut last = taken.clone();
    if then.contains("report") || then.is_empty() {
        tasks.push(
            PlanTask::new(
                "report",
                "scribe",
                json!({ "kind": "report", "topic": all }),
            )
            .after(last)
            .described("a report from every topic's summary"),
        );
        last = vec!["report".into()];
    }
    if then.contains("presentation") || then.contains("slides") {
        tasks.push(
            PlanTask::new(
                "presentation",
                "scribe",
                json!({ "kind": "presentation", "topic": all }),
            )
            .after(last)
            .described("slides from the report"),
        );
    }
    Ok(Plan { tasks })
}

/// One topic: notes, then their summary.
fn investigate(topic: &str) -> Plan {
    let topic: String = topic.chars().take(200).collect();
    Plan {
        tasks: vec![
            PlanTask::new(
                "notes",
                "scribe",
                json!({ "kind": "notes", "topic": topic }),
            ),
            PlanTask::new(
                "summary",
                "scribe",
                json!({ "kind": "summary", "topic": topic }),
            )
            .after(["notes".to_owned()]),
        ],
    }
}

/// "fetch → process → analyze → visualize": a chain.
fn pipeline(
    query: &str,
    agent: &str,
    with: &serde_json::Map<String, Value>,
) -> Result<Plan, Error> {
    let steps: Vec<&str> = query
        .split(['→'])
        .flat_map(|s| s.split("->"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if steps.len() > MAX_PARTS {
        return Err(Error::invalid_input(format!(
            "{} steps; a plan has at most {MAX_PARTS}",
            steps.len()
        )));
    }
    let mut tasks: Vec<PlanTask> = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for step in steps {
        let id = slug(step, &taken);
        let mut params = with.clone();
        params.insert("kind".into(), json!(id));
        params.insert("topic".into(), json!(step));
        let task = PlanTask::new(&id, agent, Value::Object(params));
        let task = match taken.last() {
            Some(previous) => task.after([previous.clone()]),
            None => task,
        };
        taken.push(id);
        tasks.push(task);
    }
    Ok(Plan { tasks })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_orch_sdk::ErrorKind;
    use wasm_orch_sdk::testing::TestRun;

    use super::{Plan, Planner};

    fn plan(query: &str) -> Plan {
        TestRun::new(json!({ "query": query }))
            .run::<Planner>()
            .output()
    }

    fn shape(plan: &Plan) -> Vec<(String, String, Vec<String>)> {
        plan.tasks
            .iter()
            .map(|t| (t.id.clone(), t.agent.clone(), t.depends_on.clone()))
            .collect()
    }

    fn s(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_additions_then_a_multiplication_of_both() {
        let p = plan("Calculate 1+2 and 3+4, then multiply results");
        assert_eq!(
            shape(&p),
            vec![
                ("sum-1".into(), "add".into(), vec![]),
                ("sum-2".into(), "add".into(), vec![]),
                ("product".into(), "mul".into(), s(&["sum-1", "sum-2"])),
            ]
        );
        assert_eq!(p.tasks[0].with, json!({ "a": 1, "b": 2 }));
        assert_eq!(p.tasks[1].with, json!({ "a": 3, "b": 4 }));
    }

    #[test]
    fn research_plans_a_planner_per_topic_then_a_report_then_slides() {
        let p = plan("Research WASM, WASI and components, then write a report and a presentation");
        let ids: Vec<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "research-wasm",
                "research-wasi",
                "research-components",
                "report",
                "presentation"
            ]
        );
        assert_eq!(p.tasks[0].agent, "planner");
        assert_eq!(p.tasks[0].with, json!({ "query": "investigate wasm" }));
        assert_eq!(
            p.tasks[3].depends_on,
            s(&["research-wasm", "research-wasi", "research-components"])
        );
        assert_eq!(p.tasks[4].depends_on, s(&["report"]));
        let inner = plan("investigate wasm");
        assert_eq!(
            shape(&inner),
            vec![
                ("notes".into(), "scribe".into(), vec![]),
                ("summary".into(), "scribe".into(), s(&["notes"])),
            ]
        );
    }

    #[test]
    fn a_pipeline_is_a_chain() {
        let p = plan("fetch → process -> analyze → visualize");
        assert_eq!(
            shape(&p),
            vec![
                ("fetch".into(), "scribe".into(), vec![]),
                ("process".into(), "scribe".into(), s(&["fetch"])),
                ("analyze".into(), "scribe".into(), s(&["process"])),
                ("visualize".into(), "scribe".into(), s(&["analyze"])),
            ]
        );
    }

    #[test]
    fn a_query_it_cannot_plan_is_invalid_input_with_examples() {
        let out = TestRun::new(json!({ "query": "make me a sandwich" })).run::<Planner>();
        assert_eq!(out.error().kind(), ErrorKind::InvalidInput);
        assert!(out.error().message().contains("Calculate 1+2"));
        let long = "1+1 ".repeat(2000);
        let out = TestRun::new(json!({ "query": long })).run::<Planner>();
        assert_eq!(out.error().kind(), ErrorKind::InvalidInput);
    }
}
