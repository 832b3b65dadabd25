//! Turns a parsed workflow file into a validated [`Workflow`]: a petgraph DAG of tasks with
//! resolved agents (inline or from a registry), limits, parameters and failure handling.
//! Collects every problem instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;
use toml::Spanned;

use super::agents::{self, limits};
use super::spec::{FileSpec, TaskSpec};
use super::template::{Params, substitute, substitute_str};
use super::{AgentDef, Target, TaskDef, Workflow};
use crate::config::{Checker, Diagnostics, Source, parse_toml};
use crate::model::limits::{Limits, MessageLimits};
use crate::model::policy::OnUpstreamFailure;
use crate::policy::{self, RetryOverride, StallOverride};

/// The most tasks a file may expand to (splits included).
const MAX_TASKS: usize = 100_000;
/// The most parts a `split` may have.
const MAX_SPLIT_PARTS: i64 = 10_000;
/// Files a run writes beside its task directories; no branch may take these names.
const RESERVED_BRANCHES: [&str; 2] = ["results.json", "events.jsonl"];

/// The directory a workflow file's relative paths start from, absolute and canonical: a file
/// given by a bare name lives in the current directory (never "no directory at all", which
/// would confine nothing).
fn base_dir(file: &Path) -> PathBuf {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&parent).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| cwd.join(&parent))
            .unwrap_or(parent)
    })
}

/// `path`, resolved (symlinks followed), if it is under `root` (canonical); else why not.
fn confined(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(format!(
            "`{}` is outside the workflow's directory `{}`",
            real.display(),
            root.display()
        ))
    }
}

/// How deep child workflows may nest.
const MAX_NESTING: usize = 8;

/// A parameter's value as a `--param` literal (what a child workflow's parameters are given as).
fn literal(value: &Json) -> String {
    toml::Value::try_from(value).map_or_else(|_| value.to_string(), |v| v.to_string())
}

/// The largest file a `split` reads.
const MAX_SPLIT_FILE: u64 = 64 << 20;

pub(crate) fn validate(
    source: Arc<Source>,
    overrides: &[(String, String)],
    tenant: Option<&str>,
) -> Result<Workflow, Diagnostics> {
    validate_within(source, overrides, tenant, &[])
}

/// [`validate`] for a file included (as a child workflow) by the files of `within`.
fn validate_within(
    source: Arc<Source>,
    overrides: &[(String, String)],
    tenant: Option<&str>,
    within: &[PathBuf],
) -> Result<Workflow, Diagnostics> {
    let spec: FileSpec = parse_toml(&source)?;
    let mut v = Validator {
        base_dir: base_dir(&source.path),
        within: within.to_vec(),
        c: Checker::new(source),
    };
    let workflow = v.workflow(spec, overrides, tenant);
    v.c.finish()?;
    workflow.ok_or_else(|| Diagnostics(Vec::new()))
}

/// A task after `split` expansion, before its agent and dependencies are resolved.
struct Draft<'s> {
    id: String,
    id_span: Range<usize>,
    /// The id written in the file: dependents naming it depend on every part of a split.
    group: String,
    spec: &'s TaskSpec,
    params: Json,
    phase: Option<usize>,
    priority: i64,
    inputs: Vec<PathBuf>,
}

struct Validator {
    c: Checker,
    base_dir: PathBuf,
    /// The files that include this one as a child workflow, outermost first.
    within: Vec<PathBuf>,
}

impl Validator {
    fn workflow(
        &mut self,
        spec: FileSpec,
        overrides: &[(String, String)],
        for_tenant: Option<&str>,
    ) -> Option<Workflow> {
        let section_span = spec.workflow.span();
        let section = spec.workflow.get_ref();
        let c = &mut self.c;
        let name = section.name.get_ref().clone();
        c.name(&section.name, "workflow name");
        let tenant = match (&section.tenant, for_tenant) {
            // A service that authenticated its caller runs the file as the caller's.
            (_, Some(t)) => t.to_owned(),
            (Some(t), None) => {
                c.name(t, "tenant");
                t.get_ref().clone()
            }
            (None, None) => "default".to_owned(),
        };
        let max_tasks = section
            .max_tasks
            .as_ref()
            .map(|m| (m.span(), c.int(m, 1..=MAX_TASKS as i64, "max_tasks")));
        let max_plan_depth = match &section.max_plan_depth {
            Some(m) => c.int(m, 0..=16, "max_plan_depth").unwrap_or(0) as u32,
            None => super::DEFAULT_MAX_PLAN_DEPTH,
        };
        let mut messages = MessageLimits::default();
        if let Some(m) = &section.messages {
            if let Some(v) = &m.max_bytes {
                match c.size(v) {
                    Some(n @ 2..=0x0100_0000) => messages.max_bytes = n as usize,
                    Some(_) => c.err(
                        v.span(),
                        "a message body may have at most 16MiB, and no less than 2 bytes",
                        "write a size like \"64KiB\"",
                    ),
                    None => {}
                }
            }
            if let Some(v) = &m.max_per_task {
                messages.max_sent = c.int(v, 0..=1_000_000, "max_per_task").unwrap_or(0) as u64;
            }
            if let Some(v) = &m.per_second {
                messages.per_second = c.int(v, 1..=1_000_000, "per_second").unwrap_or(1) as u32;
            }
            if let Some(v) = &m.max_unread {
                match c.size(v) {
                    Some(n @ 1..=0x4000_0000) => messages.max_unread_bytes = n as usize,
                    Some(_) => c.err(
                        v.span(),
                        "a run's unread messages may take at most 1GiB, and more than nothing",
                        "write a size like \"64MiB\"",
                    ),
                    None => {}
                }
            }
            if let Some(v) = &m.inbox {
                messages.inbox = c.int(v, 1..=100_000, "inbox").unwrap_or(1) as usize;
            }
        }
        let max_concurrency = match &section.max_concurrency {
            Some(m) => c.int(m, 1..=100_000, "max_concurrency").unwrap_or(1) as usize,
            None => super::DEFAULT_MAX_CONCURRENCY,
        };
        let defaults = match &section.defaults {
            Some(d) => limits(c, d, Limits::default()),
            None => Limits::default(),
        };
        let retry = section
            .retry
            .as_ref()
            .map(|r| policy::retry(c, r))
            .unwrap_or_default();
        let stall = policy::stall(
            c,
            section.stall_timeout.as_ref(),
            section.on_blocked.as_ref(),
            section.diagnostic_agent.as_ref(),
        );
        let error_budget = section
            .error_budget
            .as_ref()
            .and_then(|e| policy::error_budget(c, e));
        let budget = section
            .budget
            .as_ref()
            .map(|b| policy::budget(c, b))
            .unwrap_or_default();
        let mut mutexes = HashMap::new();
        for (m, capacity) in &spec.mutexes {
            c.name(m, "mutex name");
            let n = c
                .int(capacity, 1..=100_000, "a mutex group's capacity")
                .unwrap_or(1);
            mutexes.insert(m.get_ref().clone(), n as usize);
        }

        let params = self.params(&spec.params, overrides);
        let agents = self.agents(&spec, section.registry.as_ref(), defaults);
        let drafts = self.drafts(&spec, &params);
        if drafts.is_empty() && self.c.errors.is_empty() {
            self.c.err(
                section_span,
                "the workflow has no tasks",
                "add at least one [[tasks]] table (or [[phases]] with tasks)",
            );
        }
        if drafts.len() > MAX_TASKS {
            self.c.err_in_file(
                format!(
                    "the workflow expands to {} tasks, more than the limit of {MAX_TASKS}",
                    drafts.len()
                ),
                "use fewer or smaller splits",
            );
            return None;
        }
        for d in &drafts {
            let branch = format!("{name}.{}", d.id);
            if RESERVED_BRANCHES.contains(&branch.as_str()) {
                self.c.err(
                    d.id_span.clone(),
                    format!(
                        "task `{}` would have the branch `{branch}`, a name the run's own files use",
                        d.id
                    ),
                    "rename the task or the workflow",
                );
            }
        }
        let children = self.children(&drafts, &tenant);
        let tasks = self.tasks(&drafts, &agents, &spec, &tenant);
        if let Some(agent) = &stall.diagnostic_agent
            && !agents.iter().any(|a| &a.name == agent)
            && let Some(span) = section.diagnostic_agent.as_ref().map(Spanned::span)
        {
            self.c.err(
                span,
                format!("diagnostic agent `{agent}` is not an agent of this workflow"),
                "declare it, or name one that is",
            );
        }
        if !self.c.errors.is_empty() {
            return None;
        }
        let graph = self.graph(&tasks)?;
        let tasks: Vec<TaskDef> = tasks.into_iter().map(|(t, _)| t).collect();
        let mut agents = agents;
        let mut child_files = Vec::new();
        let (mut tasks, graph) = if children.is_empty() {
            (tasks, graph)
        } else {
            let tasks = super::children::inline(
                tasks,
                &mut agents,
                &mut mutexes,
                &mut child_files,
                children,
            );
            let graph = self.inlined(&tasks, &drafts)?;
            (tasks, graph)
        };
        compute_critical_paths(&graph, &mut tasks);
        let max_tasks = match max_tasks {
            Some((span, Some(max))) => {
                let max = max as usize;
                if max < tasks.len() {
                    self.c.err(
                        span,
                        format!("max_tasks is {max}, but the file has {} tasks", tasks.len()),
                        "raise it: it bounds what plans may add to the file's own tasks",
                    );
                    return None;
                }
                max
            }
            _ => tasks.len() + super::DEFAULT_MAX_TASKS,
        };
        Some(Workflow {
            name,
            description: section.description.clone(),
            tenant,
            max_concurrency,
            agents,
            tasks,
            graph,
            mutexes,
            retry,
            stall,
            error_budget,
            budget,
            source: Arc::clone(&self.c.source),
            overrides: Vec::new(),
            max_tasks,
            max_plan_depth,
            messages,
            children: child_files,
        })
    }

    fn params(
        &mut self,
        declared: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        overrides: &[(String, String)],
    ) -> Params {
        let mut params = Params::new();
        for (name, value) in declared {
            self.c.name(name, "parameter name");
            match substitute(value.get_ref(), &Params::new()) {
                Ok(v) => {
                    params.insert(name.get_ref().clone(), v);
                }
                Err(e) => self
                    .c
                    .err(value.span(), e, "parameter defaults cannot use `${...}`"),
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
                self.c.err_in_file(
                    format!("--param `{name}` is not a parameter of this workflow"),
                    help,
                );
                continue;
            }
            params.insert(name.clone(), parse_param_value(text));
        }
        params
    }

    /// The workflow's own agents, then those of its registry (a name may not be in both).
    fn agents(
        &mut self,
        spec: &FileSpec,
        registry: Option<&Spanned<String>>,
        defaults: Limits,
    ) -> Vec<AgentDef> {
        let mut all = agents::agents(&mut self.c, &self.base_dir, &spec.agents, defaults, false);
        if let Some(file) = registry {
            let path = self.base_dir.join(file.get_ref());
            for agent in agents::registry(&mut self.c, &path, file.span()) {
                if let Some(own) = spec.agents.keys().find(|k| *k.get_ref() == agent.name) {
                    self.c.err(
                        own.span(),
                        format!(
                            "agent `{}` is also in the registry `{}`",
                            agent.name,
                            path.display()
                        ),
                        "rename one of them, or remove this one to use the registry's",
                    );
                    continue;
                }
                all.push(agent);
            }
        }
        all
    }

    fn drafts<'s>(&mut self, spec: &'s FileSpec, params: &Params) -> Vec<Draft<'s>> {
        let mut drafts = Vec::new();
        for task in &spec.tasks {
            self.expand(task, None, params, &mut drafts);
        }
        for (i, phase) in spec.phases.iter().enumerate() {
            self.c.name(&phase.name, "phase name");
            if phase.tasks.is_empty() {
                self.c.err(
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

    fn expand<'s>(
        &mut self,
        task: &'s TaskSpec,
        phase: Option<usize>,
        params: &Params,
        out: &mut Vec<Draft<'s>>,
    ) {
        let c = &mut self.c;
        c.name(&task.id, "task id");
        let mut with = serde_json::Map::new();
        for (key, value) in &task.with {
            match substitute(value.get_ref(), params) {
                Ok(v) => {
                    with.insert(key.clone(), v);
                }
                Err(e) => c.err(
                    value.span(),
                    e,
                    "declare the parameter in [params] or escape the dollar as `$${`",
                ),
            }
        }
        let priority = task
            .priority
            .as_ref()
            .and_then(|p| c.int(p, -1_000_000..=1_000_000, "priority"))
            .unwrap_or(0);
        if let Some(m) = &task.mutex {
            c.name(m, "mutex name");
        }
        let inputs = inputs(c, &self.base_dir, &task.inputs, params);
        let draft = |id: String, params: Json| Draft {
            id,
            id_span: task.id.span(),
            group: task.id.get_ref().clone(),
            spec: task,
            params,
            phase,
            priority,
            inputs: inputs.clone(),
        };
        let Some(split) = &task.split else {
            out.push(draft(task.id.get_ref().clone(), Json::Object(with)));
            return;
        };
        let into = split
            .get_ref()
            .into
            .clone()
            .unwrap_or_else(|| "text".to_owned());
        if with.contains_key(&into) {
            c.err(
                split.span(),
                format!("`split` passes each part as parameter `{into}`, which `with` also sets"),
                "remove it from `with`, or name another parameter with `into = \"...\"`",
            );
            return;
        }
        let Some(parts) = c.int(&split.get_ref().parts, 1..=MAX_SPLIT_PARTS, "parts") else {
            return;
        };
        let file = &split.get_ref().file;
        let rel = match substitute_str(file.get_ref(), params) {
            Ok(rel) => rel,
            Err(e) => {
                c.err(file.span(), e, "declare the parameter in [params]");
                return;
            }
        };
        let path = match confined(&self.base_dir, &self.base_dir.join(&rel)) {
            Ok(path) => path,
            Err(why) => {
                c.err(
                    file.span(),
                    format!("cannot split `{rel}`: {why}"),
                    "a split reads a text file under the workflow file's directory",
                );
                return;
            }
        };
        let size = std::fs::metadata(&path).map(|m| (m.is_file(), m.len()));
        if !matches!(size, Ok((true, n)) if n <= MAX_SPLIT_FILE) {
            c.err(
                file.span(),
                format!(
                    "cannot split `{rel}`: it is not a regular file of at most {}",
                    crate::config::format_size(MAX_SPLIT_FILE)
                ),
                "split a text file (larger inputs belong in `inputs`, read by the guest)",
            );
            return;
        }
        let text = match crate::config::read_text(&path, MAX_SPLIT_FILE) {
            Ok(text) => text,
            Err(e) => {
                c.err(
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
                Json::Object(params),
            ));
        }
    }

    /// Each child workflow a task names (`workflow = "sub.toml"`), validated as a file of its
    /// own (its problems name it), with the task's `with` as its parameters, for the same
    /// tenant; by the task's place.
    fn children(&mut self, drafts: &[Draft<'_>], tenant: &str) -> Vec<(usize, Workflow)> {
        let mut found = Vec::new();
        for (i, d) in drafts.iter().enumerate() {
            let Some(file) = &d.spec.workflow else {
                continue;
            };
            let spec = d.spec;
            let conflicts = [
                (
                    spec.agent.is_some() || spec.capability.is_some(),
                    "`agent` or `capability`",
                ),
                (spec.split.is_some(), "`split`"),
                (!spec.inputs.is_empty(), "`inputs`"),
            ];
            if let Some((_, what)) = conflicts.iter().find(|(conflict, _)| *conflict) {
                self.c.err(
                    file.span(),
                    format!(
                        "task `{}` runs workflow `{}`, and a task that runs a workflow takes no {what}",
                        d.group,
                        file.get_ref()
                    ),
                    "give the child workflow's own tasks what they need, in its file",
                );
                continue;
            }
            if self.within.len() >= MAX_NESTING {
                self.c.err(
                    file.span(),
                    format!("child workflows nest at most {MAX_NESTING} deep"),
                    "flatten some of them into their parent",
                );
                continue;
            }
            let path = match confined(&self.base_dir, &self.base_dir.join(file.get_ref())) {
                Ok(path) => path,
                Err(why) => {
                    self.c.err(
                        file.span(),
                        format!("cannot run workflow `{}`: {why}", file.get_ref()),
                        "a child workflow is a file under this file's directory",
                    );
                    continue;
                }
            };
            let own = std::fs::canonicalize(&self.c.source.path)
                .unwrap_or_else(|_| self.c.source.path.clone());
            if path == own || self.within.contains(&path) {
                let mut chain: Vec<String> = self
                    .within
                    .iter()
                    .chain([&own, &path])
                    .map(|p| p.display().to_string())
                    .collect();
                chain.dedup();
                self.c.err(
                    file.span(),
                    format!("workflow files include each other: {}", chain.join(" → ")),
                    "a child workflow may not run one of the workflows that include it",
                );
                continue;
            }
            let text = match crate::config::read_text(&path, crate::config::MAX_CONFIG_BYTES) {
                Ok(text) => text,
                Err(e) => {
                    self.c.err(
                        file.span(),
                        format!("cannot read workflow `{}`: {e}", path.display()),
                        "paths are relative to this file",
                    );
                    continue;
                }
            };
            let overrides: Vec<(String, String)> = d
                .params
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), literal(v)))
                .collect();
            let mut within = self.within.clone();
            within.push(own);
            match validate_within(Source::new(&path, text), &overrides, Some(tenant), &within) {
                Ok(child)
                    if d.spec.looping.is_some() && child.agents.iter().any(|a| a.planner) =>
                {
                    self.c.err(
                        file.span(),
                        format!(
                            "task `{}` loops over workflow `{}`, which has planner agents: a loop's body is the same tasks each time",
                            d.group,
                            file.get_ref()
                        ),
                        "run the planner outside the loop (in the parent, or in a child workflow that is not looped over)",
                    )
                }
                Ok(mut child) => {
                    child.overrides = overrides;
                    if let Some(looping) = &d.spec.looping
                        && !self.loop_body(&child, &d.group, file.get_ref(), looping.span())
                    {
                        continue;
                    }
                    found.push((i, child));
                }
                Err(problems) => {
                    self.c.err(
                        file.span(),
                        format!(
                            "child workflow `{}` of task `{}` is invalid (its problems follow)",
                            file.get_ref(),
                            d.group
                        ),
                        "fix the child workflow's file",
                    );
                    self.c.errors.extend(problems.0);
                }
            }
        }
        found
    }

    /// Whether `body`, the child workflow `file` of task `task`, may be a loop's body: it ends
    /// in one task (whose output says whether the loop goes on) and holds no loop over a
    /// child workflow of its own.
    fn loop_body(
        &mut self,
        body: &Workflow,
        task: &str,
        file: &str,
        span: std::ops::Range<usize>,
    ) -> bool {
        let last: Vec<&str> = body
            .graph
            .node_indices()
            .filter(|&n| body.graph.neighbors(n).next().is_none())
            .map(|n| body.tasks[n.index()].id.as_str())
            .collect();
        if last.len() != 1 {
            self.c.err(
                span,
                format!(
                    "task `{task}` loops over workflow `{file}`, which ends in {} tasks ({}); a loop's body ends in one task, whose output says whether to go on",
                    last.len(),
                    last.iter().take(6).map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                ),
                "add a last task to the body that depends on the others and says `\"done\": true` when the loop should stop",
            );
            return false;
        }
        if let Some(inner) = body.tasks.iter().find_map(|t| t.iteration.as_ref()) {
            self.c.err(
                span,
                format!(
                    "task `{task}` loops over workflow `{file}`, which has a loop over a child workflow of its own (`{}`)",
                    inner.looped
                ),
                "loops over child workflows do not nest: make the inner one a loop of one task, or run it from the parent",
            );
            return false;
        }
        true
    }

    /// The graph of tasks with child workflows inlined, once their ids are checked unique.
    fn inlined(&mut self, tasks: &[TaskDef], drafts: &[Draft<'_>]) -> Option<DiGraph<(), ()>> {
        if tasks.len() > MAX_TASKS {
            self.c.err_in_file(
                format!(
                    "the workflow and its child workflows expand to {} tasks, more than the limit of {MAX_TASKS}",
                    tasks.len()
                ),
                "use fewer or smaller child workflows",
            );
            return None;
        }
        let mut seen = HashSet::new();
        for t in tasks {
            if !seen.insert(t.id.as_str()) {
                let span = drafts
                    .iter()
                    .find(|d| d.spec.workflow.is_some() && t.id.starts_with(&format!("{}.", d.id)))
                    .and_then(|d| d.spec.workflow.as_ref().map(Spanned::span))
                    .unwrap_or(0..0);
                self.c.err(
                    span,
                    format!("task id `{}` is used twice once child workflows are inlined", t.id),
                    "a child's tasks are named `<task>.<id>`: rename the task or the one it collides with",
                );
                return None;
            }
        }
        let graph = dag(tasks.iter().map(|t| t.deps.as_slice()));
        if toposort(&graph, None).is_err() {
            self.c.err_in_file(
                "the child workflows close a dependency cycle",
                "check what the tasks that run workflows depend on",
            );
            return None;
        }
        Some(graph)
    }

    /// What runs a task: its agent, or the agents (allowed for the tenant) with its capability.
    fn target(&mut self, d: &Draft<'_>, agents: &[AgentDef], tenant: &str) -> Option<Target> {
        let c = &mut self.c;
        let allowed = |a: &AgentDef| {
            a.tenants
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == tenant))
        };
        match (&d.spec.agent, &d.spec.capability) {
            (Some(agent), None) => {
                let Some(index) = agents.iter().position(|a| &a.name == agent.get_ref()) else {
                    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
                    let help = match closest(agent.get_ref(), &names) {
                        Some(near) => format!(
                            "did you mean `{near}`? Or declare [agents.{}] with its component",
                            agent.get_ref()
                        ),
                        None if names.is_empty() => format!(
                            "declare it: [agents.{}] with `component = \"path/to/agent.wasm\"`",
                            agent.get_ref()
                        ),
                        None => format!(
                            "declared agents: {}; or declare [agents.{}]",
                            names.join(", "),
                            agent.get_ref()
                        ),
                    };
                    c.err(
                        agent.span(),
                        format!(
                            "task `{}` uses unknown agent `{}`",
                            d.group,
                            agent.get_ref()
                        ),
                        help,
                    );
                    return None;
                };
                if !allowed(&agents[index]) {
                    c.err(
                        agent.span(),
                        format!("tenant `{tenant}` may not use agent `{}`", agent.get_ref()),
                        "the agent registry lists the tenants allowed to use it",
                    );
                    return None;
                }
                Some(Target::Agent(index))
            }
            (None, Some(capability)) => {
                let providers: Vec<usize> = (0..agents.len())
                    .filter(|&i| agents[i].capabilities.contains(capability.get_ref()))
                    .collect();
                let usable: Vec<usize> = providers
                    .iter()
                    .copied()
                    .filter(|&i| allowed(&agents[i]))
                    .collect();
                if usable.is_empty() {
                    let help = if providers.is_empty() {
                        "give an agent `capabilities = [...]` that includes it".to_owned()
                    } else {
                        let names: Vec<&str> =
                            providers.iter().map(|&i| agents[i].name.as_str()).collect();
                        format!(
                            "{} provide it, but not for tenant `{tenant}`",
                            names.join(", ")
                        )
                    };
                    c.err(
                        capability.span(),
                        format!(
                            "no agent provides capability `{}` to tenant `{tenant}`",
                            capability.get_ref()
                        ),
                        help,
                    );
                    return None;
                }
                Some(Target::Capability {
                    name: capability.get_ref().clone(),
                    agents: usable,
                })
            }
            (Some(agent), Some(_)) => {
                c.err(
                    agent.span(),
                    format!("task `{}` names both an agent and a capability", d.group),
                    "keep one: `agent` runs that agent, `capability` lets the runtime choose",
                );
                None
            }
            // A child workflow: its tasks take its place (see `children`).
            (None, None) if d.spec.workflow.is_some() => Some(Target::Capability {
                name: "workflow".into(),
                agents: Vec::new(),
            }),
            (None, None) => {
                c.err(
                    d.id_span.clone(),
                    format!("task `{}` names no agent", d.group),
                    "add `agent = \"...\"`, `capability = \"...\"` or `workflow = \"...\"`",
                );
                None
            }
        }
    }

    /// Resolves agents, settings and dependencies. Returns each task with the spans of its
    /// dependency edges (for pointing at the entry that closes a cycle).
    fn tasks(
        &mut self,
        drafts: &[Draft<'_>],
        agents: &[AgentDef],
        spec: &FileSpec,
        tenant: &str,
    ) -> Vec<(TaskDef, Vec<Range<usize>>)> {
        // Ids must be unique; a group name (the id written in the file) refers to all its parts.
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut first_use: HashMap<&str, Range<usize>> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if let Some(first) = first_use.get(d.group.as_str())
                && *first != d.id_span
            {
                let line = self.c.source.error(first.clone(), "").line().unwrap_or(0);
                self.c.err(
                    d.id_span.clone(),
                    format!("duplicate task id `{}`", d.group),
                    format!("the id is first used on line {line}; give each task its own id"),
                );
                continue;
            }
            first_use.insert(&d.group, d.id_span.clone());
            groups.entry(&d.group).or_default().push(i);
        }
        let index: HashMap<&str, usize> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i))
            .collect();
        let implicit = phase_dependencies(drafts, spec, &groups);

        let mut tasks = Vec::with_capacity(drafts.len());
        // What each task written resolves to (its target and settings), shared by its split parts.
        type Resolved = (
            Option<Target>,
            (RetryOverride, StallOverride, OnUpstreamFailure),
        );
        let mut resolved: HashMap<&str, Resolved> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            // Resolve (and report) once per task written, not once per split part.
            let first = !resolved.contains_key(d.group.as_str());
            let (target, settings) = if first {
                let r = (
                    self.target(d, agents, tenant),
                    self.settings(d.spec, agents),
                );
                resolved.insert(&d.group, r.clone());
                r
            } else {
                resolved[d.group.as_str()].clone()
            };
            let mut deps: Vec<usize> = Vec::new();
            let mut spans: Vec<Range<usize>> = Vec::new();
            // Split tasks may depend on thousands of parts: a set keeps the check linear.
            let mut seen: HashSet<usize> = HashSet::new();
            for dep in &d.spec.depends_on {
                let found = groups
                    .get(dep.get_ref().as_str())
                    .map(Vec::as_slice)
                    .or_else(|| index.get(dep.get_ref().as_str()).map(std::slice::from_ref));
                match found {
                    Some(found) => {
                        for &t in found {
                            if seen.insert(t) {
                                deps.push(t);
                                spans.push(dep.span());
                            }
                        }
                    }
                    None if first => {
                        let ids: Vec<&str> = groups.keys().copied().collect();
                        let help = match closest(dep.get_ref(), &ids) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => "name the id of another task in this file".to_owned(),
                        };
                        self.c.err(
                            dep.span(),
                            format!(
                                "task `{}` depends on unknown task `{}`",
                                d.group,
                                dep.get_ref()
                            ),
                            help,
                        );
                    }
                    None => {}
                }
            }
            for &t in &implicit[i] {
                if seen.insert(t) {
                    deps.push(t);
                    spans.push(d.id_span.clone());
                }
            }
            let Some(target) = target else { continue };
            let max_iterations = d.spec.looping.as_ref().and_then(|l| {
                let n = &l.get_ref().max_iterations;
                // Checked once for a split's parts.
                let max = if first {
                    self.c.int(n, 1..=1_000, "max_iterations")?
                } else {
                    (*n.get_ref()).clamp(1, 1_000)
                } as u32;
                if first && let Some(&a) = target.agents().iter().find(|&&a| agents[a].planner) {
                    self.c.err(
                        l.span(),
                        format!(
                            "task `{}` loops, but agent `{}` is a planner (its output is a plan, not an iteration's)",
                            d.group, agents[a].name
                        ),
                        "loop over a task whose agent is not a planner",
                    );
                }
                Some(max)
            });
            if first
                && !d.inputs.is_empty()
                && let Some(&a) = target.agents().iter().find(|&&a| !agents[a].workdir)
            {
                self.c.err(
                    d.spec.inputs[0].span(),
                    format!(
                        "task `{}` is given input files, but agent `{}` has no filesystem (`workdir = false`)",
                        d.group, agents[a].name
                    ),
                    "remove `inputs`, or let the agent have a working directory",
                );
            }
            let on_message = match &d.spec.start {
                Some(start) if first => {
                    let on_message = self.c.choice(start, &["ready", "on-message"], "start")
                        == Some("on-message");
                    if on_message && !d.spec.depends_on.is_empty() {
                        self.c.err(
                            start.span(),
                            format!(
                                "task `{}` starts on a message, so it cannot also wait for the tasks it depends on",
                                d.group
                            ),
                            "remove `depends_on`, or `start = \"on-message\"`",
                        );
                    }
                    on_message
                }
                Some(start) => start.get_ref() == "on-message",
                None => false,
            };
            let (retry, stall, on_upstream_failure) = settings;
            tasks.push((
                TaskDef {
                    id: d.id.clone(),
                    target,
                    description: d.spec.description.clone(),
                    params: d.params.clone(),
                    deps,
                    priority: d.priority,
                    mutex: d.spec.mutex.as_ref().map(|m| m.get_ref().clone()),
                    critical: d.spec.critical.unwrap_or(true),
                    critical_path: 1,
                    retry,
                    stall,
                    on_upstream_failure,
                    inputs: d.inputs.clone(),
                    cache: d.spec.cache,
                    depth: 0,
                    max_iterations,
                    iteration: None,
                    on_message,
                    child_planned: false,
                },
                spans,
            ));
        }
        // A task that starts on a message may never run: nothing may wait for it. (When a
        // task was left out for an error of its own, indices may not match: skip, the file is
        // refused anyway.)
        for (task, spans) in &tasks {
            for (&dep, span) in task.deps.iter().zip(spans) {
                let Some((dep, _)) = tasks.get(dep) else {
                    continue;
                };
                if dep.on_message {
                    self.c.err(
                        span.clone(),
                        format!(
                            "task `{}` depends on `{}`, which starts on a message and may never run",
                            task.id, dep.id
                        ),
                        "depend on the tasks that message it instead, or let it start when ready",
                    );
                }
            }
        }
        tasks
    }

    /// A task's own failure-handling settings.
    fn settings(
        &mut self,
        spec: &TaskSpec,
        agents: &[AgentDef],
    ) -> (RetryOverride, StallOverride, OnUpstreamFailure) {
        let c = &mut self.c;
        let retry = spec
            .retry
            .as_ref()
            .map(|r| policy::retry(c, r))
            .unwrap_or_default();
        let stall = policy::stall(
            c,
            spec.stall_timeout.as_ref(),
            spec.on_blocked.as_ref(),
            spec.diagnostic_agent.as_ref(),
        );
        if let (Some(agent), Some(span)) = (&stall.diagnostic_agent, spec.diagnostic_agent.as_ref())
            && !agents.iter().any(|a| &a.name == agent)
        {
            c.err(
                span.span(),
                format!("diagnostic agent `{agent}` is not an agent of this workflow"),
                "declare it, or name one that is",
            );
        }
        let on_failure = match spec
            .on_upstream_failure
            .as_ref()
            .map(|v| c.choice(v, &["skip", "run"], "on_upstream_failure"))
        {
            Some(Some("run")) => OnUpstreamFailure::Run,
            _ => OnUpstreamFailure::Skip,
        };
        (retry, stall, on_failure)
    }

    fn graph(&mut self, tasks: &[(TaskDef, Vec<Range<usize>>)]) -> Option<DiGraph<(), ()>> {
        let graph = dag(tasks.iter().map(|(t, _)| t.deps.as_slice()));
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
            self.c.err(
                span,
                format!("dependency cycle: {}", shown.join(" → ")),
                "each arrow reads \"depends on\"; remove one of these dependencies",
            );
        }
        None
    }
}

/// A task's input files: each exists, lies under the workflow file's directory (symlinks
/// resolved: a workflow cannot hand a guest the host's other files), and no two share a name
/// (they are staged side by side under `inputs/`).
fn inputs(
    c: &mut Checker,
    base_dir: &Path,
    written: &[Spanned<String>],
    params: &Params,
) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for input in written {
        let rel = match substitute_str(input.get_ref(), params) {
            Ok(rel) => rel,
            Err(e) => {
                c.err(input.span(), e, "declare the parameter in [params]");
                continue;
            }
        };
        let path = base_dir.join(&rel);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match (std::fs::metadata(&path), name) {
            (Err(e), _) => c.err(
                input.span(),
                format!("cannot read input `{}`: {e}", path.display()),
                "inputs are files or directories, relative to the workflow file",
            ),
            (Ok(meta), _) if !meta.is_file() && !meta.is_dir() => c.err(
                input.span(),
                format!(
                    "input `{}` is neither a file nor a directory",
                    path.display()
                ),
                "name a regular file or a directory",
            ),
            (Ok(_), None) => c.err(
                input.span(),
                format!("input `{rel}` has no file name"),
                "name a file or directory, not `..` or `/`",
            ),
            (Ok(_), Some(name)) => {
                if found.iter().any(|p| {
                    p.file_name().map(|n| n.to_string_lossy()) == Some(name.as_str().into())
                }) {
                    c.err(
                        input.span(),
                        format!("two inputs are named `{name}`"),
                        "inputs appear side by side under `inputs/`: give them different names",
                    );
                    continue;
                }
                match confined(base_dir, &path) {
                    Ok(real) => found.push(real),
                    Err(why) => c.err(
                        input.span(),
                        format!("input `{rel}`: {why}"),
                        "inputs are files under the workflow file's directory: copy the file there",
                    ),
                }
            }
        }
    }
    found
}

/// Phases run in order: each task of a phase depends on every task of the phase before; in a
/// serial phase, each task also depends on the task written before it.
fn phase_dependencies(
    drafts: &[Draft<'_>],
    spec: &FileSpec,
    groups: &HashMap<&str, Vec<usize>>,
) -> Vec<Vec<usize>> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        if let Some(p) = d.phase {
            members.entry(p).or_default().push(i);
        }
    }
    let mut implicit: Vec<Vec<usize>> = vec![Vec::new(); drafts.len()];
    let mut previous: Option<&Vec<usize>> = None;
    for (p, tasks) in &members {
        for (k, &i) in tasks.iter().enumerate() {
            if let Some(prev) = previous {
                implicit[i].extend(prev.iter().copied());
            }
            if !spec.phases[*p].parallel {
                let before = tasks[..k]
                    .iter()
                    .rev()
                    .map(|&j| &drafts[j].group)
                    .find(|g| **g != drafts[i].group);
                if let Some(g) = before {
                    implicit[i].extend(groups.get(g.as_str()).into_iter().flatten().copied());
                }
            }
        }
        previous = Some(tasks);
    }
    implicit
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

/// The graph of tasks whose dependencies are `deps` (task `i`'s are the `i`-th): node `i` is
/// task `i`, edges run from a dependency to its dependent.
pub(super) fn dag<'d>(deps: impl ExactSizeIterator<Item = &'d [usize]>) -> DiGraph<(), ()> {
    let mut graph = DiGraph::with_capacity(deps.len(), deps.len());
    for _ in 0..deps.len() {
        graph.add_node(());
    }
    for (i, task) in deps.enumerate() {
        for &d in task {
            graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    graph
}

/// Longest chain of tasks from each task to the end of the workflow, itself included.
pub(super) fn compute_critical_paths(graph: &DiGraph<(), ()>, tasks: &mut [TaskDef]) {
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
        use crate::config::is_valid_name;
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
