//! Workflow files: parsing and validation into a DAG of tasks.
//!
//! Owns the workflow file format and every check that can be made without running anything:
//! keys, names, limits, parameters, agents, dependencies, cycles, component files.
//! It never compiles or runs components (the engine checks that they implement `sub-agent`).

mod agents;
mod children;
mod looping;
mod plan;
mod render;
mod spec;
mod template;
mod validate;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::graph::DiGraph;

pub use self::render::GraphFormat;
pub(crate) use crate::config::Source;
pub(crate) use crate::config::is_valid_name;
pub use crate::config::{Diagnostic, Diagnostics};
use crate::error::Error;
use crate::model::limits::{Budget, FuelRate, Limits};
use crate::model::policy::{ErrorBudget, OnUpstreamFailure};
use crate::policy::{RetryOverride, StallOverride};

/// How many tasks run at once when the file does not say.
pub(crate) const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// How many tasks plans may add to a file's own, when it does not say (`max_tasks`).
pub(crate) const DEFAULT_MAX_TASKS: usize = 1_000;
/// How deep plans may nest, when the file does not say.
pub(crate) const DEFAULT_MAX_PLAN_DEPTH: u32 = 3;

/// A validated workflow: a DAG of tasks, each run by a declared agent.
///
/// ```no_run
/// # fn main() -> Result<(), wasm_orch::Error> {
/// let workflow = wasm_orch::Workflow::from_file("examples/calc.toml")?;
/// println!("{} has {} tasks", workflow.name(), workflow.task_ids().count());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Workflow {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) tenant: String,
    pub(crate) max_concurrency: usize,
    pub(crate) agents: Vec<AgentDef>,
    /// Task `i` is node `i` of `graph`; edges run from a dependency to its dependent.
    pub(crate) tasks: Vec<TaskDef>,
    pub(crate) graph: DiGraph<(), ()>,
    /// Mutex groups with a capacity other than 1.
    pub(crate) mutexes: std::collections::HashMap<String, usize>,
    pub(crate) retry: RetryOverride,
    pub(crate) stall: StallOverride,
    pub(crate) error_budget: Option<ErrorBudget>,
    /// The run's budget, as written (the tenant's may cut it further).
    pub(crate) budget: Budget,
    pub(crate) source: Arc<Source>,
    /// The parameters the caller overrode (kept to run it again: resume).
    pub(crate) overrides: Vec<(String, String)>,
    /// The most tasks the run may grow to with its planners' plans.
    pub(crate) max_tasks: usize,
    /// How deep plans may nest.
    pub(crate) max_plan_depth: u32,
    /// `[workflow.messages]`: what the run's messages may be.
    pub(crate) messages: crate::model::limits::MessageLimits,
    /// The child workflows inlined into this one, at every depth (a planner inside one has
    /// its plans checked against the child's own file: see [`Workflow::grow`]).
    pub(crate) children: Vec<ChildFile>,
}

/// A child workflow inlined into a workflow.
#[derive(Debug, Clone)]
pub(crate) struct ChildFile {
    /// Its tasks' (and agents') prefix in the workflow: `<task>`, or `<task>.<task>` for a
    /// child's child.
    pub(crate) owner: String,
    /// Its file, with the plans its planners have added since the run started.
    pub(crate) source: Arc<Source>,
    /// The parameters it is checked with (the task's `with`).
    pub(crate) params: Vec<(String, String)>,
    /// Its agents in the workflow.
    pub(crate) agents: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct AgentDef {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// The component's path, canonical when it exists.
    pub(crate) component: PathBuf,
    /// Where `component = ...` is written (in the workflow or its registry).
    pub(crate) component_span: Range<usize>,
    pub(crate) source: Arc<Source>,
    pub(crate) limits: Limits,
    /// Tools granted to the agent, with where each grant is written.
    pub(crate) tools: Vec<(String, Range<usize>)>,
    /// Whether each task gets its own working directory; without one it has no filesystem.
    pub(crate) workdir: bool,
    pub(crate) capabilities: Vec<String>,
    /// Tenants allowed to use it; `None`: all.
    pub(crate) tenants: Option<Vec<String>>,
    /// How many of its tasks may run at once, runtime-wide.
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) fuel_rate: Option<FuelRate>,
    pub(crate) retry: RetryOverride,
    /// `cache = true`: its tasks' outputs may be reused (even if it calls tools or reads
    /// secrets: the agent says its results do not depend on them).
    pub(crate) cache: Option<bool>,
    /// A planner: its tasks' outputs are plans (see [`Workflow::grow`]).
    pub(crate) planner: bool,
}

/// What runs a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// This agent.
    Agent(usize),
    /// One of these agents (those with the capability that the tenant may use), chosen at
    /// each attempt.
    Capability { name: String, agents: Vec<usize> },
}

impl Target {
    /// The agents that may run the task.
    pub(crate) fn agents(&self) -> &[usize] {
        match self {
            Self::Agent(a) => std::slice::from_ref(a),
            Self::Capability { agents, .. } => agents,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TaskDef {
    pub(crate) id: String,
    pub(crate) target: Target,
    pub(crate) description: Option<String>,
    /// The task's parameters: a JSON object.
    pub(crate) params: serde_json::Value,
    /// Tasks this one depends on, in `depends_on` order (phase dependencies last).
    pub(crate) deps: Vec<usize>,
    pub(crate) priority: i64,
    pub(crate) mutex: Option<String>,
    pub(crate) critical: bool,
    /// Tasks on the longest chain from this one to the end, itself included.
    pub(crate) critical_path: u32,
    pub(crate) retry: RetryOverride,
    pub(crate) stall: StallOverride,
    pub(crate) on_upstream_failure: OnUpstreamFailure,
    /// Files and directories the task reads (read-only, under `inputs/`).
    pub(crate) inputs: Vec<PathBuf>,
    /// `cache = true`: its output may be reused when everything it depends on is the same.
    pub(crate) cache: Option<bool>,
    /// How many plans deep it was planned: 0 for the file's own tasks.
    pub(crate) depth: u32,
    /// A loop: the most iterations it runs (it stops earlier when its agent says so).
    pub(crate) max_iterations: Option<u32>,
    /// A task of an iteration of a loop over a child workflow.
    pub(crate) iteration: Option<Iteration>,
    /// `start = "on-message"`: it starts when its first message arrives, and ends
    /// `not-needed` if none comes while a task that could send one runs.
    pub(crate) on_message: bool,
    /// Added by the plan of a planner inside a child workflow: in no file this workflow
    /// reads, so carried over as it is when the workflow is checked again.
    pub(crate) child_planned: bool,
}

/// Where a task stands in a loop over a child workflow (`workflow = "body.toml"` with
/// `loop`): iteration `n`'s tasks are `<loop>.<n>.<id>`, a copy of the body's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Iteration {
    /// The loop's id.
    pub(crate) looped: String,
    /// Which iteration (1 for the first).
    pub(crate) n: u32,
    /// The most iterations the loop runs.
    pub(crate) max: u32,
    /// The body's last task: its output says whether the loop goes on (`"done": true` or
    /// `"escalate": true` stops it), and is the loop's when it stops.
    pub(crate) end: bool,
}

impl Workflow {
    /// Reads and validates a workflow file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_file_with_params(path, &[])
    }

    /// Reads and validates a workflow file, overriding parameters declared in its `[params]`
    /// (values are TOML literals such as `42` or `"text"`, or else plain text).
    pub fn from_file_with_params(
        path: impl AsRef<Path>,
        params: &[(String, String)],
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            crate::config::read_text(path, crate::config::MAX_CONFIG_BYTES).map_err(|source| {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Self::parse(&text, path, params)
    }

    /// Validates workflow text. `path` names the file in messages, and relative component
    /// paths are resolved against its directory.
    pub fn parse(
        text: &str,
        path: impl AsRef<Path>,
        params: &[(String, String)],
    ) -> Result<Self, Error> {
        Self::parse_inner(text, path.as_ref(), params, None)
    }

    /// Validates workflow text as [`Workflow::parse`] does, for `tenant` whatever the file's
    /// `tenant` says: a service that has authenticated its caller runs the caller's files as
    /// the caller's (agents and capabilities are resolved for that tenant).
    pub fn parse_for_tenant(
        text: &str,
        path: impl AsRef<Path>,
        params: &[(String, String)],
        tenant: &str,
    ) -> Result<Self, Error> {
        if !is_valid_name(tenant) {
            return Err(Error::InvalidTenant(tenant.to_owned()));
        }
        Self::parse_inner(text, path.as_ref(), params, Some(tenant))
    }

    fn parse_inner(
        text: &str,
        path: &Path,
        params: &[(String, String)],
        tenant: Option<&str>,
    ) -> Result<Self, Error> {
        let source = Source::new(path, text);
        let mut workflow =
            validate::validate(source, params, tenant).map_err(Error::InvalidWorkflow)?;
        workflow.overrides = params.to_vec();
        Ok(workflow)
    }

    /// The component files of its agents, in the order the file declares them.
    pub fn components(&self) -> impl Iterator<Item = &Path> {
        self.agents.iter().map(|a| a.component.as_path())
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workflow's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The tenant its runs belong to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// How many tasks may run at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// Task ids, in file order (a `split` task contributes `id[0]`, `id[1]`, ...).
    pub fn task_ids(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().map(|t| t.id.as_str())
    }

    /// Agent names, sorted.
    pub fn agent_names(&self) -> impl Iterator<Item = &str> {
        self.agents.iter().map(|a| a.name.as_str())
    }

    /// The task graph in Graphviz `dot` or Mermaid syntax.
    pub fn render(&self, format: GraphFormat) -> String {
        render::render(self, format)
    }

    /// A problem with an agent's component, pointing at its `component = ...` line (in the
    /// workflow or its registry).
    pub(crate) fn component_error(agent: &AgentDef, message: String, help: &str) -> Diagnostic {
        agent
            .source
            .error(agent.component_span.clone(), message)
            .help(help)
    }

    /// A problem with a tool granted to an agent, pointing at the grant.
    pub(crate) fn tool_error(
        agent: &AgentDef,
        span: Range<usize>,
        message: String,
        help: String,
    ) -> Diagnostic {
        agent.source.error(span, message).help(help)
    }

    /// What runs task `task`, for people: `add`, or `capability math.add`.
    pub(crate) fn target_label(&self, task: usize) -> String {
        match &self.tasks[task].target {
            Target::Agent(a) => self.agents[*a].name.clone(),
            Target::Capability { name, .. } => format!("capability {name}"),
        }
    }

    pub(crate) fn branch(&self, task: usize) -> String {
        format!("{}.{}", self.name, self.tasks[task].id)
    }
}

#[cfg(test)]
mod tests;
