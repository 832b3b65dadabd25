//! Turns a parsed workflow file into a validated [`Workflow`]: a petgraph DAG of tasks with
//! resolved agents, limits and parameters. Collects every problem instead of stopping at one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Diagnostics, Source};
use super::spec::{FileSpec, LimitsSpec, TaskSpec};
use super::template::{Params, substitute, substitute_str};
use super::units::{parse_duration, parse_size};
use super::{AgentDef, Limits, TaskDef, Workflow};

/// The most tasks a file may expand to (splits included).
const MAX_TASKS: usize = 100_000;
/// The most parts a `split` may have.
const MAX_SPLIT_PARTS: i64 = 10_000;
/// Files a run writes beside its task directories; no branch may take these names.
const RESERVED_BRANCHES: [&str; 2] = ["results.json", "events.jsonl"];

pub(crate) fn validate(
    source: Arc<Source>,
    overrides: &[(String, String)],
) -> Result<Workflow, Diagnostics> {
    let spec: FileSpec = match toml::from_str(&source.text) {
        Ok(spec) => spec,
        Err(e) => return Err(Diagnostics(vec![toml_error(&source, &e)])),
    };
    let mut v = Validator {
        source: source.clone(),
        base_dir: source
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        errors: Vec::new(),
    };
    let workflow = v.workflow(spec, overrides);
    if v.errors.is_empty() {
        workflow.ok_or_else(|| Diagnostics(Vec::new()))
    } else {
        v.errors.sort_by_key(|d| (d.line(), d.column()));
        Err(Diagnostics(v.errors))
    }
}

fn toml_error(source: &Source, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_owned();
    let help = if message.starts_with("unknown field") {
        "remove the key or fix its spelling (the message lists the keys allowed here)"
    } else if message.starts_with("missing field") {
        "add the missing key to this table"
    } else {
        "fix the TOML syntax at this place"
    };
    match e.span() {
        Some(span) => source.error(span, message).help(help),
        None => source.error_in_file(message).help(help),
    }
}

/// A task after `split` expansion, before dependencies are resolved.
struct Draft {
    id: String,
    id_span: Range<usize>,
    /// The id written in the file: dependents naming it depend on every part of a split.
    group: String,
    agent: Spanned<String>,
    params: Json,
    depends_on: Vec<Spanned<String>>,
    phase: Option<usize>,
    priority: i64,
    mutex: Option<String>,
    critical: bool,
    description: Option<String>,
}

struct Validator {
    source: Arc<Source>,
    base_dir: PathBuf,
    errors: Vec<Diagnostic>,
}

impl Validator {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        let d = self.source.error(span, message).help(help);
        self.errors.push(d);
    }

    fn workflow(&mut self, spec: FileSpec, overrides: &[(String, String)]) -> Option<Workflow> {
        let section_span = spec.workflow.span();
        let section = spec.workflow.get_ref();
        let name = section.name.get_ref().clone();
        self.check_name(&section.name, "workflow name");
        let tenant = match &section.tenant {
            Some(t) => {
                self.check_name(t, "tenant");
                t.get_ref().clone()
            }
            None => "default".to_owned(),
        };
        let max_concurrency = match &section.max_concurrency {
            Some(m) if (1..=100_000).contains(m.get_ref()) => *m.get_ref() as usize,
            Some(m) => {
                self.err(
                    m.span(),
                    format!(
                        "max_concurrency must be between 1 and 100000, not {}",
                        m.get_ref()
                    ),
                    "set how many tasks may run at once, e.g. `max_concurrency = 8`",
                );
                1
            }
            None => super::DEFAULT_MAX_CONCURRENCY,
        };
        let defaults = match &section.defaults {
            Some(d) => self.limits(d, Limits::default()),
            None => Limits::default(),
        };

        let params = self.params(&spec.params, overrides);
        let agents = self.agents(&spec, defaults);
        let drafts = self.drafts(&spec, &params);
        if drafts.is_empty() && self.errors.is_empty() {
            self.err(
                section_span,
                "the workflow has no tasks",
                "add at least one [[tasks]] table (or [[phases]] with tasks)",
            );
        }
        if drafts.len() > MAX_TASKS {
            self.errors.push(
                self.source
                    .error_in_file(format!(
                        "the workflow expands to {} tasks, more than the limit of {MAX_TASKS}",
                        drafts.len()
                    ))
                    .help("use fewer or smaller splits"),
            );
            return None;
        }
        for d in &drafts {
            let branch = format!("{name}.{}", d.id);
            if RESERVED_BRANCHES.contains(&branch.as_str()) {
                self.err(
                    d.id_span.clone(),
                    format!("task `{}` would have the branch `{branch}`, a name the run's own files use", d.id),
                    "rename the task or the workflow",
                );
            }
        }
        let tasks = self.tasks(drafts, &agents, &spec);
        if !self.errors.is_empty() {
            return None;
        }
        let graph = self.graph(&tasks)?;
        let mut tasks: Vec<TaskDef> = tasks.into_iter().map(|(t, _)| t).collect();
        compute_critical_paths(&graph, &mut tasks);
        Some(Workflow {
            name,
            description: section.description.clone(),
            tenant,
            max_concurrency,
            agents,
            tasks,
            graph,
            source: self.source.clone(),
        })
    }

    fn check_name(&mut self, name: &Spanned<String>, what: &str) {
        if !is_valid_name(name.get_ref()) {
            self.err(
                name.span(),
                format!("`{}` is not a valid {what}", name.get_ref()),
                "use 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_`",
            );
        }
    }

    fn limits(&mut self, spec: &LimitsSpec, base: Limits) -> Limits {
        let mut limits = base;
        if let Some(fuel) = &spec.fuel {
            match u64::try_from(*fuel.get_ref()) {
                Ok(f) if f > 0 => limits.fuel = f,
                _ => self.err(
                    fuel.span(),
                    format!("fuel must be a positive number, not {}", fuel.get_ref()),
                    "give the fuel budget of one task, e.g. `fuel = 50_000_000`",
                ),
            }
        }
        if let Some(memory) = &spec.memory {
            match self.size(memory) {
                Some(m) if (64 << 10..=4 << 30).contains(&m) => limits.memory = m,
                Some(m) => self.err(
                    memory.span(),
                    format!("memory must be between 64KiB and 4GiB, not {m} bytes"),
                    "give the most memory one task may use, e.g. `memory = \"64MiB\"`",
                ),
                None => {}
            }
        }
        if let Some(timeout) = &spec.timeout {
            let parsed = match timeout.get_ref() {
                toml::Value::String(s) => parse_duration(s),
                other => Err(format!(
                    "a timeout is a string with a unit, not a {}",
                    other.type_str()
                )),
            };
            match parsed {
                Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(7 * 24 * 3600) => {
                    limits.timeout = d;
                }
                Ok(_) => self.err(
                    timeout.span(),
                    "timeout must be more than zero and at most 7 days",
                    "give the wall-clock limit of one task, e.g. `timeout = \"30s\"`",
                ),
                Err(e) => self.err(timeout.span(), e, "write it like `timeout = \"5s\"`"),
            }
        }
        if let Some(out) = &spec.max_output {
            match self.size(out) {
                Some(m) if (1..=1 << 30).contains(&m) => limits.max_output = m,
                Some(m) => self.err(
                    out.span(),
                    format!("max_output must be between 1 byte and 1GiB, not {m} bytes"),
                    "give the largest output a task may return, e.g. `max_output = \"1MiB\"`",
                ),
                None => {}
            }
        }
        limits
    }

    fn size(&mut self, value: &Spanned<toml::Value>) -> Option<u64> {
        let parsed = match value.get_ref() {
            toml::Value::Integer(i) => {
                u64::try_from(*i).map_err(|_| "a size cannot be negative".to_owned())
            }
            toml::Value::String(s) => parse_size(s),
            other => Err(format!(
                "a size is a number of bytes or a string, not a {}",
                other.type_str()
            )),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(
                    value.span(),
                    e,
                    "write a size like \"64MiB\" or a number of bytes",
                );
                None
            }
        }
    }

    fn params(
        &mut self,
        declared: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        overrides: &[(String, String)],
    ) -> Params {
        let mut params = Params::new();
        for (name, value) in declared {
            self.check_name(name, "parameter name");
            match substitute(value.get_ref(), &Params::new()) {
                Ok(v) => {
                    params.insert(name.get_ref().clone(), v);
                }
                Err(e) => self.err(value.span(), e, "parameter defaults cannot use `${...}`"),
            }
        }
        for (name, text) in overrides {
            if !params.contains_key(name) {
                let declared: Vec<&str> = params.keys().map(String::as_str).collect();
                let help = if declared.is_empty() {
                    format!("declare it in a [params] table, e.g. `{name} = \"default\"`")
                } else {
                    format!(
                        "declared parameters: {}; or declare `{name}` in [params]",
                        declared.join(", ")
                    )
                };
                self.errors.push(
                    self.source
                        .error_in_file(format!(
                            "--param `{name}` is not a parameter of this workflow"
                        ))
                        .help(help),
                );
                continue;
            }
            params.insert(name.clone(), parse_param_value(text));
        }
        params
    }

    fn agents(&mut self, spec: &FileSpec, defaults: Limits) -> Vec<AgentDef> {
        let mut agents = Vec::new();
        for (name, agent) in &spec.agents {
            self.check_name(name, "agent name");
            let mut path = self.base_dir.join(agent.component.get_ref());
            if path.is_file() {
                // Reports and messages show the real path, not `examples/../target/...`.
                path = std::fs::canonicalize(&path).unwrap_or(path);
            } else {
                let why = if path.exists() {
                    "is not a file"
                } else {
                    "does not exist"
                };
                self.err(
                    agent.component.span(),
                    format!(
                        "component file `{}` of agent `{}` {why}",
                        path.display(),
                        name.get_ref()
                    ),
                    "paths are relative to the workflow file; build the component or fix the path",
                );
            }
            let limits = self.limits(&agent.limits(), defaults);
            let mut tools = Vec::new();
            for tool in &agent.tools {
                if tools.iter().any(|(t, _): &(String, _)| t == tool.get_ref()) {
                    self.err(
                        tool.span(),
                        format!("tool `{}` is listed twice", tool.get_ref()),
                        "list each tool once",
                    );
                }
                tools.push((tool.get_ref().clone(), tool.span()));
            }
            agents.push(AgentDef {
                name: name.get_ref().clone(),
                description: agent.description.clone(),
                component: path,
                component_span: agent.component.span(),
                limits,
                tools,
                workdir: agent.workdir.unwrap_or(true),
            });
        }
        agents
    }

    fn drafts(&mut self, spec: &FileSpec, params: &Params) -> Vec<Draft> {
        let mut drafts = Vec::new();
        for task in &spec.tasks {
            self.expand(task, None, params, &mut drafts);
        }
        for (i, phase) in spec.phases.iter().enumerate() {
            self.check_name(&phase.name, "phase name");
            if phase.tasks.is_empty() {
                self.err(
                    phase.name.span(),
                    format!("phase `{}` has no tasks", phase.name.get_ref()),
                    "add [[phases.tasks]] to it or remove it",
                );
            }
            for task in &phase.tasks {
                self.expand(task, Some(i), params, &mut drafts);
            }
        }
        drafts
    }

    fn expand(
        &mut self,
        task: &TaskSpec,
        phase: Option<usize>,
        params: &Params,
        out: &mut Vec<Draft>,
    ) {
        self.check_name(&task.id, "task id");
        let mut with = serde_json::Map::new();
        for (key, value) in &task.with {
            match substitute(value.get_ref(), params) {
                Ok(v) => {
                    with.insert(key.clone(), v);
                }
                Err(e) => self.err(
                    value.span(),
                    e,
                    "declare the parameter in [params] or escape the dollar as `$${`",
                ),
            }
        }
        let priority = match &task.priority {
            Some(p) if (-1_000_000..=1_000_000).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => {
                self.err(
                    p.span(),
                    "priority must be between -1000000 and 1000000",
                    "higher runs first; the default is 0",
                );
                0
            }
            None => 0,
        };
        if let Some(m) = &task.mutex {
            self.check_name(m, "mutex name");
        }
        let draft = |id: String, id_span: Range<usize>, params: Json| Draft {
            id,
            id_span,
            group: task.id.get_ref().clone(),
            agent: task.agent.clone(),
            params,
            depends_on: task.depends_on.clone(),
            phase,
            priority,
            mutex: task.mutex.as_ref().map(|m| m.get_ref().clone()),
            critical: task.critical.unwrap_or(true),
            description: task.description.clone(),
        };
        let Some(split) = &task.split else {
            out.push(draft(
                task.id.get_ref().clone(),
                task.id.span(),
                Json::Object(with),
            ));
            return;
        };
        let into = split
            .get_ref()
            .into
            .clone()
            .unwrap_or_else(|| "text".to_owned());
        if with.contains_key(&into) {
            self.err(
                split.span(),
                format!("`split` passes each part as parameter `{into}`, which `with` also sets"),
                "remove it from `with`, or name another parameter with `into = \"...\"`",
            );
            return;
        }
        let parts = *split.get_ref().parts.get_ref();
        if !(1..=MAX_SPLIT_PARTS).contains(&parts) {
            self.err(
                split.get_ref().parts.span(),
                format!("parts must be between 1 and {MAX_SPLIT_PARTS}, not {parts}"),
                "give how many tasks to fan out to, e.g. `parts = 8`",
            );
            return;
        }
        let file = &split.get_ref().file;
        let rel = match substitute_str(file.get_ref(), params) {
            Ok(rel) => rel,
            Err(e) => {
                self.err(file.span(), e, "declare the parameter in [params]");
                return;
            }
        };
        let path = self.base_dir.join(&rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.err(
                    file.span(),
                    format!("cannot read `{}` to split it: {e}", path.display()),
                    "paths are relative to the workflow file; the file must be UTF-8 text",
                );
                return;
            }
        };
        for (i, part) in split_text(&text, parts as usize).into_iter().enumerate() {
            let mut params = with.clone();
            params.insert(into.clone(), Json::String(part.to_owned()));
            out.push(draft(
                format!("{}[{i}]", task.id.get_ref()),
                task.id.span(),
                Json::Object(params),
            ));
        }
    }

    /// Resolves agents and dependencies. Returns each task with the spans of its dependency
    /// edges (for pointing at the entry that closes a cycle).
    fn tasks(
        &mut self,
        drafts: Vec<Draft>,
        agents: &[AgentDef],
        spec: &FileSpec,
    ) -> Vec<(TaskDef, Vec<Range<usize>>)> {
        // Ids must be unique; a group name (the id written in the file) refers to all its parts.
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut seen_groups: HashMap<&str, Range<usize>> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if let Some(first) = seen_groups.get(d.group.as_str())
                && *first != d.id_span
            {
                let line = self.source.error(first.clone(), "").line().unwrap_or(0);
                self.err(
                    d.id_span.clone(),
                    format!("duplicate task id `{}`", d.group),
                    format!("the id is first used on line {line}; give each task its own id"),
                );
                continue;
            }
            seen_groups.insert(&d.group, d.id_span.clone());
            if index.insert(&d.id, i).is_some() {
                self.err(
                    d.id_span.clone(),
                    format!("duplicate task id `{}`", d.id),
                    "give each task its own id",
                );
            }
            groups.entry(&d.group).or_default().push(i);
        }
        // Phases run in order: each task of a phase depends on every task of the phase before;
        // in a serial phase, each task also depends on the task before it.
        let mut phase_members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if let Some(p) = d.phase {
                phase_members.entry(p).or_default().push(i);
            }
        }
        let mut implicit: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
        let mut previous_phase: Option<&Vec<usize>> = None;
        for (p, members) in &phase_members {
            for (k, &i) in members.iter().enumerate() {
                if let Some(prev) = previous_phase {
                    implicit[i].extend(prev.iter().copied());
                }
                if !spec.phases[*p].parallel {
                    // Depend on every part of the previous task written in this phase.
                    let prev_group = members[..k]
                        .iter()
                        .rev()
                        .map(|&j| &drafts[j].group)
                        .find(|g| **g != drafts[i].group);
                    if let Some(g) = prev_group {
                        implicit[i].extend(groups.get(g.as_str()).into_iter().flatten().copied());
                    }
                }
            }
            previous_phase = Some(members);
        }

        let agent_index: HashMap<&str, usize> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        let mut tasks = Vec::with_capacity(drafts.len());
        for (i, d) in drafts.iter().enumerate() {
            let agent = match agent_index.get(d.agent.get_ref().as_str()) {
                Some(&a) => a,
                None => {
                    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
                    let help = match closest(d.agent.get_ref(), &names) {
                        Some(near) => format!(
                            "did you mean `{near}`? Or declare [agents.{}] with its component",
                            d.agent.get_ref()
                        ),
                        None if names.is_empty() => format!(
                            "declare it: [agents.{}] with `component = \"path/to/agent.wasm\"`",
                            d.agent.get_ref()
                        ),
                        None => format!(
                            "declared agents: {}; or declare [agents.{}]",
                            names.join(", "),
                            d.agent.get_ref()
                        ),
                    };
                    // Report once per written task, not once per split part.
                    if drafts[..i].iter().all(|p| p.group != d.group) {
                        self.err(
                            d.agent.span(),
                            format!(
                                "task `{}` uses unknown agent `{}`",
                                d.group,
                                d.agent.get_ref()
                            ),
                            help,
                        );
                    }
                    0
                }
            };
            let mut deps: Vec<usize> = Vec::new();
            let mut spans: Vec<Range<usize>> = Vec::new();
            for dep in &d.depends_on {
                let targets = groups
                    .get(dep.get_ref().as_str())
                    .map(Vec::as_slice)
                    .or_else(|| index.get(dep.get_ref().as_str()).map(std::slice::from_ref));
                match targets {
                    Some(targets) => {
                        for &t in targets {
                            if !deps.contains(&t) {
                                deps.push(t);
                                spans.push(dep.span());
                            }
                        }
                    }
                    None => {
                        let ids: Vec<&str> = groups.keys().copied().collect();
                        let help = match closest(dep.get_ref(), &ids) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => "name the id of another task in this file".to_owned(),
                        };
                        if drafts[..i].iter().all(|p| p.group != d.group) {
                            self.err(
                                dep.span(),
                                format!(
                                    "task `{}` depends on unknown task `{}`",
                                    d.group,
                                    dep.get_ref()
                                ),
                                help,
                            );
                        }
                    }
                }
            }
            for &t in &implicit[i] {
                if !deps.contains(&t) {
                    deps.push(t);
                    spans.push(d.id_span.clone());
                }
            }
            tasks.push((
                TaskDef {
                    id: d.id.clone(),
                    agent,
                    description: d.description.clone(),
                    params: d.params.clone(),
                    deps,
                    priority: d.priority,
                    mutex: d.mutex.clone(),
                    critical: d.critical,
                    critical_path: 1,
                },
                spans,
            ));
        }
        tasks
    }

    fn graph(&mut self, tasks: &[(TaskDef, Vec<Range<usize>>)]) -> Option<DiGraph<(), ()>> {
        let mut graph = DiGraph::with_capacity(tasks.len(), tasks.len());
        for _ in tasks {
            graph.add_node(());
        }
        for (i, (task, _)) in tasks.iter().enumerate() {
            for &dep in &task.deps {
                graph.add_edge(NodeIndex::new(dep), NodeIndex::new(i), ());
            }
        }
        if toposort(&graph, None).is_ok() {
            return Some(graph);
        }
        for scc in tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            // Edges run from a dependency to its dependent; show the cycle as a chain of
            // "depends on" (a → b: a depends on b), from its first task in file order.
            let cycle = find_cycle(&graph, &scc);
            let mut chain = vec![cycle[0]];
            chain.extend(cycle[1..].iter().rev());
            let mut shown: Vec<&str> = chain.iter().map(|&n| tasks[n].0.id.as_str()).collect();
            shown.push(shown[0]);
            let (task, spans) = &tasks[chain[0]];
            let depends_on = chain.get(1).copied().unwrap_or(chain[0]);
            let span = task
                .deps
                .iter()
                .position(|&d| d == depends_on)
                .map(|p| spans[p].clone())
                .unwrap_or(0..0);
            self.err(
                span,
                format!("dependency cycle: {}", shown.join(" → ")),
                "each arrow reads \"depends on\"; remove one of these dependencies",
            );
        }
        None
    }
}

/// A cycle within one strongly connected component, as nodes in edge order, starting at its
/// lowest-numbered node.
fn find_cycle(graph: &DiGraph<(), ()>, scc: &[NodeIndex]) -> Vec<usize> {
    let members: HashSet<NodeIndex> = scc.iter().copied().collect();
    let start = scc.iter().copied().min().unwrap_or(scc[0]);
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.neighbors(n) {
            if next == start {
                let mut path = vec![n.index()];
                let mut cur = n;
                while let Some(&p) = parent.get(&cur) {
                    path.push(p.index());
                    cur = p;
                }
                path.reverse();
                return path;
            }
            if members.contains(&next) && !parent.contains_key(&next) && next != start {
                parent.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    vec![start.index()]
}

/// Longest chain of tasks from each task to the end of the workflow, itself included.
fn compute_critical_paths(graph: &DiGraph<(), ()>, tasks: &mut [TaskDef]) {
    let Ok(order) = toposort(graph, None) else {
        return;
    };
    for n in order.into_iter().rev() {
        let longest = graph
            .neighbors(n)
            .map(|m| tasks[m.index()].critical_path)
            .max()
            .unwrap_or(0);
        tasks[n.index()].critical_path = longest + 1;
    }
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A `--param` value: a TOML literal (`42`, `true`, `"text"`, `[1, 2]`) or else plain text.
fn parse_param_value(text: &str) -> Json {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| substitute(&v, &Params::new()).ok());
    parsed.unwrap_or_else(|| Json::String(text.to_owned()))
}

/// Splits text into at most `parts` pieces of similar size, cutting only at whitespace.
pub(crate) fn split_text(text: &str, parts: usize) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 1..parts {
        let mut cut = text.len() * i / parts;
        if cut <= start {
            continue;
        }
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        cut = text[cut..]
            .find(char::is_whitespace)
            .map_or(text.len(), |off| cut + off);
        if cut > start && cut < text.len() {
            pieces.push(&text[start..cut]);
            start = cut;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_only_at_whitespace_and_keeps_every_byte() {
        let text = "one two three four five six seven eight nine ten";
        for parts in 1..12 {
            let pieces = split_text(text, parts);
            assert!(pieces.len() <= parts);
            assert_eq!(pieces.concat(), text);
            let words: usize = pieces.iter().map(|p| p.split_whitespace().count()).sum();
            assert_eq!(words, 10, "a word was cut with {parts} parts: {pieces:?}");
        }
        assert_eq!(
            split_text("héllo wörld ünïcode", 3).concat(),
            "héllo wörld ünïcode"
        );
    }

    #[test]
    fn names_allow_ids_but_not_paths() {
        assert!(is_valid_name("left"));
        assert!(is_valid_name("step_2.a-b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("../etc"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(".hidden"));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(closest("mull", &["add", "mul"]), Some("mul"));
        assert_eq!(closest("zebra", &["add", "mul"]), None);
    }

    #[test]
    fn param_values_are_typed_when_they_look_typed() {
        assert_eq!(parse_param_value("42"), Json::from(42));
        assert_eq!(parse_param_value("true"), Json::from(true));
        assert_eq!(parse_param_value("hello world"), Json::from("hello world"));
        assert_eq!(parse_param_value("\"7\""), Json::from("7"));
    }
}
