//! Failure-handling settings and the policy file as written, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetrySpec {
    pub(crate) max_attempts: Option<Spanned<i64>>,
    pub(crate) backoff: Option<Spanned<toml::Value>>,
    pub(crate) max_backoff: Option<Spanned<toml::Value>>,
    pub(crate) jitter: Option<Spanned<f64>>,
    pub(crate) keep_files: Option<bool>,
    pub(crate) on: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetSpec {
    pub(crate) fuel: Option<Spanned<i64>>,
    pub(crate) wall_time: Option<Spanned<toml::Value>>,
    pub(crate) memory: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBudgetSpec {
    pub(crate) max_failures: Option<Spanned<i64>>,
    pub(crate) max_failure_rate: Option<Spanned<f64>>,
    pub(crate) min_attempts: Option<Spanned<i64>>,
    pub(crate) action: Option<Spanned<String>>,
    pub(crate) resume_after: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySpec {
    pub(crate) defaults: Option<DefaultsSpec>,
    #[serde(default)]
    pub(crate) tenants: BTreeMap<Spanned<String>, TenantSpec>,
    /// API tokens of `wasm-orch serve`, each bound to a tenant; only their hashes.
    #[serde(default)]
    pub(crate) tokens: Vec<TokenSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSpec {
    /// The tenant a tenant's token acts for.
    pub(crate) tenant: Option<Spanned<String>>,
    /// A worker's token (`worker = true`): it leases attempts over HTTP, nothing else.
    pub(crate) worker: Option<Spanned<bool>>,
    /// The one pool a worker's token may lease from (default: any).
    pub(crate) pool: Option<Spanned<String>>,
    /// The SHA-256 of the token, in hex.
    pub(crate) sha256: Spanned<String>,
    /// A label for people (who holds it, what for).
    pub(crate) name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefaultsSpec {
    /// How long a run's credential (for secrets) lives before it must be renewed.
    pub(crate) credential_ttl: Option<Spanned<toml::Value>>,
    /// How long ended runs stay in the journal.
    pub(crate) retention: Option<Spanned<toml::Value>>,
    pub(crate) retry: Option<RetrySpec>,
    pub(crate) stall_timeout: Option<Spanned<toml::Value>>,
    pub(crate) on_blocked: Option<Spanned<String>>,
    pub(crate) diagnostic_agent: Option<Spanned<String>>,
    pub(crate) error_budget: Option<ErrorBudgetSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantSpec {
    pub(crate) fuel_rate: Option<Spanned<i64>>,
    pub(crate) fuel_burst: Option<Spanned<i64>>,
    pub(crate) max_concurrency: Option<Spanned<i64>>,
    pub(crate) budget: Option<BudgetSpec>,
    /// Tools the tenant's agents may use at all (default: every tool of the host).
    pub(crate) tools: Option<Vec<Spanned<String>>>,
    /// Per tool: calls per run and per second.
    #[serde(default)]
    pub(crate) tool_limits: BTreeMap<Spanned<String>, ToolLimitSpec>,
    /// Hosts (`name` or `name:port`) the `http_get` tool may reach for this tenant.
    #[serde(default)]
    pub(crate) http_allow: Vec<Spanned<String>>,
    /// Secret name → the agents that may read it.
    #[serde(default)]
    pub(crate) secrets: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolLimitSpec {
    pub(crate) per_run: Option<Spanned<i64>>,
    pub(crate) per_second: Option<Spanned<f64>>,
}
