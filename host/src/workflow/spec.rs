//! Workflow and agent-registry files as written: TOML deserialized with spans, before any
//! validation.
//!
//! Every table denies unknown keys, so a typo is an error that points at the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::policy::{BudgetSpec, ErrorBudgetSpec, RetrySpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    pub(crate) workflow: Spanned<WorkflowSpec>,
    #[serde(default)]
    pub(crate) params: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) agents: BTreeMap<Spanned<String>, AgentSpec>,
    /// Mutex groups and how many of their tasks may run at once (default 1).
    #[serde(default)]
    pub(crate) mutexes: BTreeMap<Spanned<String>, Spanned<i64>>,
    #[serde(default)]
    pub(crate) tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub(crate) phases: Vec<PhaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowSpec {
    pub(crate) name: Spanned<String>,
    pub(crate) description: Option<String>,
    pub(crate) tenant: Option<Spanned<String>>,
    pub(crate) max_concurrency: Option<Spanned<i64>>,
    /// Limits for every agent of this file.
    pub(crate) defaults: Option<LimitsSpec>,
    /// An agent registry file, relative to this one.
    pub(crate) registry: Option<Spanned<String>>,
    /// The run's budget (never more than its tenant's).
    pub(crate) budget: Option<BudgetSpec>,
    pub(crate) retry: Option<RetrySpec>,
    pub(crate) stall_timeout: Option<Spanned<toml::Value>>,
    pub(crate) on_blocked: Option<Spanned<String>>,
    pub(crate) diagnostic_agent: Option<Spanned<String>>,
    pub(crate) error_budget: Option<ErrorBudgetSpec>,
    /// The most tasks the run may grow to, with its planners' plans.
    pub(crate) max_tasks: Option<Spanned<i64>>,
    /// How deep plans may nest (a plan's planners plan again).
    pub(crate) max_plan_depth: Option<Spanned<i64>>,
    /// Limits on the messages the run's tasks send one another.
    pub(crate) messages: Option<MessagesSpec>,
}

/// `[workflow.messages]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesSpec {
    pub(crate) max_bytes: Option<Spanned<toml::Value>>,
    pub(crate) max_per_task: Option<Spanned<i64>>,
    pub(crate) per_second: Option<Spanned<i64>>,
    pub(crate) inbox: Option<Spanned<i64>>,
    pub(crate) max_unread: Option<Spanned<toml::Value>>,
}

/// Limits that `[workflow.defaults]` sets for every agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    pub(crate) fuel: Option<Spanned<i64>>,
    pub(crate) memory: Option<Spanned<toml::Value>>,
    pub(crate) timeout: Option<Spanned<toml::Value>>,
    pub(crate) max_output: Option<Spanned<toml::Value>>,
    pub(crate) disk: Option<Spanned<toml::Value>>,
}

/// An agent registry file: `[agents.NAME]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrySpec {
    #[serde(default)]
    pub(crate) agents: BTreeMap<Spanned<String>, AgentSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentSpec {
    pub(crate) component: Spanned<String>,
    pub(crate) description: Option<String>,
    /// What the agent can do, e.g. `math.add`: tasks may ask for a capability.
    #[serde(default)]
    pub(crate) capabilities: Vec<Spanned<String>>,
    /// Tenants allowed to use the agent (registry files only; default: all).
    pub(crate) tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) tools: Vec<Spanned<String>>,
    /// Whether each task gets its own working directory (default: yes).
    pub(crate) workdir: Option<bool>,
    /// Whether its tasks' outputs may be reused (memoized).
    pub(crate) cache: Option<bool>,
    /// A planner: what its tasks return is a plan, spliced into the run below them.
    pub(crate) planner: Option<bool>,
    /// How many of its tasks may run at once, across every run of the runtime.
    pub(crate) max_concurrency: Option<Spanned<i64>>,
    /// Fuel per second for all its tasks together, and the burst above it.
    pub(crate) fuel_rate: Option<Spanned<i64>>,
    pub(crate) fuel_burst: Option<Spanned<i64>>,
    pub(crate) retry: Option<RetrySpec>,
    // The limits are listed here rather than flattened: serde cannot combine `flatten` with
    // `deny_unknown_fields`.
    pub(crate) fuel: Option<Spanned<i64>>,
    pub(crate) memory: Option<Spanned<toml::Value>>,
    pub(crate) timeout: Option<Spanned<toml::Value>>,
    pub(crate) max_output: Option<Spanned<toml::Value>>,
    pub(crate) disk: Option<Spanned<toml::Value>>,
}

impl AgentSpec {
    pub(crate) fn limits(&self) -> LimitsSpec {
        LimitsSpec {
            fuel: self.fuel.clone(),
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            max_output: self.max_output.clone(),
            disk: self.disk.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskSpec {
    pub(crate) id: Spanned<String>,
    /// The agent that runs it...
    pub(crate) agent: Option<Spanned<String>>,
    /// ... or a capability: the runtime picks an agent that has it.
    pub(crate) capability: Option<Spanned<String>>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) with: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) depends_on: Vec<Spanned<String>>,
    pub(crate) priority: Option<Spanned<i64>>,
    pub(crate) mutex: Option<Spanned<String>>,
    pub(crate) critical: Option<bool>,
    pub(crate) split: Option<Spanned<SplitSpec>>,
    pub(crate) retry: Option<RetrySpec>,
    pub(crate) stall_timeout: Option<Spanned<toml::Value>>,
    pub(crate) on_blocked: Option<Spanned<String>>,
    pub(crate) diagnostic_agent: Option<Spanned<String>>,
    /// Whether its output may be reused when its inputs match an earlier run's.
    pub(crate) cache: Option<bool>,
    /// `skip` (default) or `run`: what this task does when a task it depends on fails.
    pub(crate) on_upstream_failure: Option<Spanned<String>>,
    /// Files or directories (relative to the workflow file; may use `${param}`) the task
    /// reads, read-only, under `inputs/`.
    #[serde(default)]
    pub(crate) inputs: Vec<Spanned<String>>,
    /// Run again, each iteration seeing the previous one's output, until the agent says stop
    /// (`"done": true` or `"escalate": true` in its output) or `max_iterations`.
    #[serde(rename = "loop")]
    pub(crate) looping: Option<Spanned<LoopSpec>>,
    /// Another workflow file (relative to this one), run as this task: its tasks join the run
    /// below it, `with` are its parameters.
    pub(crate) workflow: Option<Spanned<String>>,
    /// `ready` (default: when its dependencies have succeeded) or `on-message`: when another
    /// task of the run sends it its first message (a mediator started on a conflict).
    pub(crate) start: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoopSpec {
    pub(crate) max_iterations: Spanned<i64>,
}

/// Fan a task out over the parts of a text file: one task per part.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SplitSpec {
    /// The file to split, relative to the workflow file; may use `${param}`.
    pub(crate) file: Spanned<String>,
    /// How many parts.
    pub(crate) parts: Spanned<i64>,
    /// The parameter each part is passed in (default `text`).
    pub(crate) into: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PhaseSpec {
    pub(crate) name: Spanned<String>,
    #[serde(default = "yes")]
    pub(crate) parallel: bool,
    pub(crate) tasks: Vec<TaskSpec>,
}

fn yes() -> bool {
    true
}
