//! The operator's policy, and how failure handling is layered.
//!
//! An operator gives the runtime a [`Policy`] file: defaults for every workflow (retries,
//! blocked tasks, error budgets) and each tenant's fuel rate, concurrency, budget, tools, hosts
//! and secrets. Settings are layered, most specific first: task, agent, workflow, policy
//! defaults, built-in defaults; the scheduler applies the result ([`RetryPolicy`],
//! [`ErrorBudget`], ...). The limits an attempt runs under are [`Limits`], cut by [`Budget`]s.

mod parse;
mod spec;
mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::parse::{budget, error_budget, fuel_rate, retry, stall};
pub(crate) use self::spec::{BudgetSpec, ErrorBudgetSpec, RetrySpec};
use crate::config::Source;
use crate::error::Error;
pub use crate::model::limits::{Budget, FuelRate, Limits};
use crate::model::policy::StallPolicy;
pub use crate::model::policy::{ErrorBudget, OnBlocked, OnErrorBudget, RetryPolicy};
use crate::model::status::ErrorKind;

/// Retry settings given at one level (task, agent, workflow, policy); unset ones come from
/// the level above.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RetryOverride {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff: Option<Duration>,
    pub(crate) max_backoff: Option<Duration>,
    pub(crate) jitter: Option<f64>,
    pub(crate) on: Option<Vec<ErrorKind>>,
    pub(crate) keep_files: Option<bool>,
}

impl RetryOverride {
    pub(crate) fn over(&self, base: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            backoff: self.backoff.unwrap_or(base.backoff),
            max_backoff: self.max_backoff.unwrap_or(base.max_backoff),
            jitter: self.jitter.unwrap_or(base.jitter),
            on: self.on.clone().unwrap_or(base.on),
            keep_files: self.keep_files.unwrap_or(base.keep_files),
        }
    }
}

/// Blocked-task settings given at one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StallOverride {
    pub(crate) timeout: Option<Duration>,
    pub(crate) action: Option<OnBlocked>,
    pub(crate) diagnostic_agent: Option<String>,
}

impl StallOverride {
    pub(crate) fn over(&self, base: &StallOverride) -> StallOverride {
        StallOverride {
            timeout: self.timeout.or(base.timeout),
            action: self.action.or(base.action),
            diagnostic_agent: self
                .diagnostic_agent
                .clone()
                .or_else(|| base.diagnostic_agent.clone()),
        }
    }

    /// The policy, if a stall timeout is set at some level.
    pub(crate) fn resolve(&self) -> Option<StallPolicy> {
        Some(StallPolicy {
            timeout: self.timeout?,
            action: self.action.unwrap_or(OnBlocked::Report),
        })
    }
}

/// Limits an operator sets for one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TenantLimits {
    pub(crate) fuel_rate: Option<FuelRate>,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) budget: Budget,
}

impl TenantLimits {
    /// A tenant a policy does not name, when it has no `[tenants."*"]` entry: a little compute
    /// (two tasks at once, 10 G fuel and an hour of task time in all), no more.
    pub(crate) fn stranger() -> Self {
        Self {
            fuel_rate: None,
            max_concurrency: Some(2),
            budget: Budget {
                fuel: Some(10_000_000_000),
                wall_time: Some(Duration::from_secs(3600)),
                memory: None,
            },
        }
    }
}

/// Defaults an operator sets for every workflow.
#[derive(Debug, Clone)]
pub(crate) struct PolicyDefaults {
    pub(crate) retry: RetryOverride,
    pub(crate) stall: StallOverride,
    pub(crate) error_budget: Option<ErrorBudget>,
    pub(crate) credential_ttl: Duration,
    /// How long ended runs are kept in the journal (`runs prune` without `--older-than`).
    pub(crate) retention: Option<Duration>,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        Self {
            retry: RetryOverride::default(),
            stall: StallOverride::default(),
            error_budget: None,
            credential_ttl: Duration::from_secs(600),
            retention: None,
        }
    }
}

/// Calls of one tool a tenant may make.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ToolLimit {
    /// Calls per run.
    pub(crate) per_run: Option<u64>,
    /// Calls per second (across the tenant's runs); faster calls wait.
    pub(crate) per_second: Option<f64>,
}

/// An API token of `wasm-orch serve`: whom it is for, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiToken {
    pub(crate) bearer: Bearer,
    pub(crate) hash: [u8; 32],
    pub(crate) name: Option<String>,
}

/// Whom an API token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bearer {
    /// A tenant: the API acts for it, and shows it its own DAGs and runs only.
    Tenant(String),
    /// A worker: it leases attempts over HTTP (of `pool` only, if named) and nothing else.
    Worker { pool: Option<String> },
}

pub use self::token::{new_token, token_sha256};

/// What a tenant's guests may reach besides compute: tools, hosts, secrets.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TenantAccess {
    /// Tools its agents may use at all; `None`: every tool of the host.
    pub(crate) tools: Option<Vec<String>>,
    pub(crate) tool_limits: HashMap<String, ToolLimit>,
    /// Hosts `http_get` may reach (`name` or `name:port`).
    pub(crate) http_allow: Vec<String>,
    /// Secret name → agents that may read it.
    pub(crate) secrets: HashMap<String, Vec<String>>,
}

impl TenantAccess {
    /// No tool, no host, no secret.
    pub(crate) fn nothing() -> Self {
        Self {
            tools: Some(Vec::new()),
            ..Self::default()
        }
    }

    pub(crate) fn allows_tool(&self, tool: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| t == tool))
    }

    /// The secrets agent `agent` may read.
    pub(crate) fn secrets_of(&self, agent: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .secrets
            .iter()
            .filter(|(_, agents)| agents.iter().any(|a| a == agent || a == "*"))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }
}

/// The operator's policy: defaults for every workflow and limits for each tenant.
///
/// ```toml
/// [defaults]
/// retry = { max_attempts = 3, backoff = "200ms", on = ["unavailable", "failed", "timed-out", "trapped"] }
/// stall_timeout = "30s"
/// on_blocked = "retry"
/// error_budget = { max_failures = 10, action = "stop" }
///
/// [tenants.acme]
/// fuel_rate = 300_000_000          # fuel per second
/// fuel_burst = 100_000_000
/// max_concurrency = 8
/// budget = { fuel = 100_000_000_000, wall_time = "1h", memory = "2GiB" }
/// tools = ["sleep", "kv", "http_get"]
/// http_allow = ["api.example.com"]
/// tool_limits = { http_get = { per_run = 100, per_second = 5 } }
/// secrets = { api-token = ["fetcher"] }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub(crate) defaults: PolicyDefaults,
    pub(crate) tenants: HashMap<String, TenantLimits>,
    pub(crate) access: HashMap<String, TenantAccess>,
    /// `[tenants."*"]`: what a tenant the policy does not name gets.
    pub(crate) fallback: Option<(TenantLimits, TenantAccess)>,
    /// `[[tokens]]`: API tokens of `wasm-orch serve`, by hash.
    pub(crate) tokens: Vec<ApiToken>,
    pub(crate) source: Option<Arc<Source>>,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            crate::config::read_text(path, crate::config::MAX_CONFIG_BYTES).map_err(|source| {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Self::parse(&text, path)
    }

    /// Validates policy text; `path` names it in messages.
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, Error> {
        parse::policy(Source::new(path.into(), text)).map_err(Error::InvalidWorkflow)
    }

    /// The tenant API token `token` is bound to (`[[tokens]]` in the file holds only its
    /// SHA-256), if the policy lists it.
    pub fn token_tenant(&self, token: &str) -> Option<&str> {
        match self.token_bearer(token)? {
            Bearer::Tenant(tenant) => Some(tenant),
            Bearer::Worker { .. } => None,
        }
    }

    /// Whether `token` is a worker's (`[[tokens]]` with `worker = true`), and the one pool it
    /// may lease from (`Some(None)`: any).
    pub fn token_worker(&self, token: &str) -> Option<Option<&str>> {
        match self.token_bearer(token)? {
            Bearer::Worker { pool } => Some(pool.as_deref()),
            Bearer::Tenant(_) => None,
        }
    }

    fn token_bearer(&self, token: &str) -> Option<&Bearer> {
        let hash = token::hash(token);
        // Every entry is compared, whole, whatever matches: the time taken tells nothing.
        let mut found = None;
        for t in &self.tokens {
            if token::same(&t.hash, &hash) {
                found = Some(&t.bearer);
            }
        }
        found
    }

    /// Whether the policy lists any API token.
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Tenants the policy names.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// What tenant `tenant` may reach. A policy fails closed: a tenant it does not name gets
    /// its `[tenants."*"]` entry, or, without one, nothing at all (no tools, no hosts, no
    /// secrets). Without a policy (none was given to the runtime) every tenant may use every
    /// tool of the host.
    pub(crate) fn access(&self, tenant: &str) -> TenantAccess {
        match (self.access.get(tenant), &self.fallback, &self.source) {
            (Some(access), _, _) => access.clone(),
            (None, Some((_, access)), _) => access.clone(),
            (None, None, Some(_)) => TenantAccess::nothing(),
            (None, None, None) => TenantAccess::default(),
        }
    }

    /// The limits of a tenant the policy does not name: its `[tenants."*"]` entry, or
    /// [`TenantLimits::stranger`]; none without a policy.
    pub(crate) fn fallback_limits(&self) -> Option<TenantLimits> {
        match (&self.fallback, &self.source) {
            (Some((limits, _)), _) => Some(limits.clone()),
            (None, Some(_)) => Some(TenantLimits::stranger()),
            (None, None) => None,
        }
    }

    /// Why tenant `tenant` runs under the fallback, if it does: a note for the run's plan.
    pub(crate) fn stranger_note(&self, tenant: &str) -> Option<String> {
        let source = self.source.as_ref()?;
        if self.tenants.contains_key(tenant) {
            return None;
        }
        let file = source.path.display();
        Some(match &self.fallback {
            Some(_) => format!(
                "tenant `{tenant}` is not named in the policy `{file}`: it runs under its `[tenants.\"*\"]` entry"
            ),
            None => format!(
                "tenant `{tenant}` is not named in the policy `{file}`, which has no `[tenants.\"*\"]` entry: \
                 it gets no tools, hosts or secrets, at most {} tasks at once and {} fuel in all",
                TenantLimits::stranger().max_concurrency.unwrap_or(1),
                TenantLimits::stranger().budget.fuel.unwrap_or(0),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_layer_field_by_field() {
        let workflow = RetryOverride {
            max_attempts: Some(4),
            backoff: Some(Duration::from_secs(1)),
            ..RetryOverride::default()
        };
        let task = RetryOverride {
            backoff: Some(Duration::from_millis(10)),
            ..RetryOverride::default()
        };
        let p = task.over(workflow.over(RetryPolicy::default()));
        assert_eq!((p.max_attempts, p.backoff), (4, Duration::from_millis(10)));
    }
}
