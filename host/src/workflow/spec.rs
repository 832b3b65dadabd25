//! The workflow file as written: TOML deserialized with spans, before any validation.
//!
//! Every table denies unknown keys, so a typo is an error that points at the key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    pub(crate) workflow: Spanned<WorkflowSpec>,
    #[serde(default)]
    pub(crate) params: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) agents: BTreeMap<Spanned<String>, AgentSpec>,
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
    pub(crate) defaults: Option<LimitsSpec>,
}

/// Limits that `[workflow.defaults]` sets for every agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSpec {
    pub(crate) fuel: Option<Spanned<i64>>,
    pub(crate) memory: Option<Spanned<toml::Value>>,
    pub(crate) timeout: Option<Spanned<toml::Value>>,
    pub(crate) max_output: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentSpec {
    pub(crate) component: Spanned<String>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) tools: Vec<Spanned<String>>,
    /// Whether each task gets its own working directory (default: yes).
    pub(crate) workdir: Option<bool>,
    // The limits are listed here rather than flattened: serde cannot combine `flatten` with
    // `deny_unknown_fields`.
    pub(crate) fuel: Option<Spanned<i64>>,
    pub(crate) memory: Option<Spanned<toml::Value>>,
    pub(crate) timeout: Option<Spanned<toml::Value>>,
    pub(crate) max_output: Option<Spanned<toml::Value>>,
}

impl AgentSpec {
    pub(crate) fn limits(&self) -> LimitsSpec {
        LimitsSpec {
            fuel: self.fuel.clone(),
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            max_output: self.max_output.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskSpec {
    pub(crate) id: Spanned<String>,
    pub(crate) agent: Spanned<String>,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) with: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) depends_on: Vec<Spanned<String>>,
    pub(crate) priority: Option<Spanned<i64>>,
    pub(crate) mutex: Option<Spanned<String>>,
    pub(crate) critical: Option<bool>,
    pub(crate) split: Option<Spanned<SplitSpec>>,
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
