//! Validating failure-handling settings (shared by the policy file, workflows and agent
//! registries) and the policy file itself.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::spec::{BudgetSpec, ErrorBudgetSpec, PolicySpec, RetrySpec};
use super::{
    ApiToken, Bearer, Policy, PolicyDefaults, RetryOverride, StallOverride, TenantAccess,
    TenantLimits, ToolLimit,
};
use crate::config::{Checker, Diagnostics, Source, parse_toml};
use crate::model::limits::{Budget, FuelRate};
use crate::model::policy::{ErrorBudget, OnBlocked, OnErrorBudget};
use crate::model::status::ErrorKind;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// Error kinds a retry may be asked for, by the names a policy may use.
const RETRYABLE: &[(&str, ErrorKind)] = &[
    ("unavailable", ErrorKind::Unavailable),
    ("failed", ErrorKind::Failed),
    ("timed-out", ErrorKind::Timeout),
    ("timeout", ErrorKind::Timeout),
    ("trapped", ErrorKind::Trap),
    ("trap", ErrorKind::Trap),
    ("out-of-fuel", ErrorKind::OutOfFuel),
    ("memory-exceeded", ErrorKind::MemoryLimit),
    ("memory-limit", ErrorKind::MemoryLimit),
    ("output-too-large", ErrorKind::OutputTooLarge),
    ("output-not-json", ErrorKind::OutputNotJson),
    ("blocked", ErrorKind::Blocked),
    ("host", ErrorKind::Host),
    ("worker-lost", ErrorKind::WorkerLost),
    ("invalid-plan", ErrorKind::InvalidPlan),
];

pub(crate) fn retry(c: &mut Checker, spec: &RetrySpec) -> RetryOverride {
    let mut r = RetryOverride::default();
    if let Some(n) = &spec.max_attempts {
        r.max_attempts = c.int(n, 1..=100, "max_attempts").map(|n| n as u32);
    }
    if let Some(d) = &spec.backoff {
        r.backoff = c.duration(d, WEEK);
    }
    if let Some(d) = &spec.max_backoff {
        r.max_backoff = c.duration(d, WEEK);
    }
    if let Some(j) = &spec.jitter {
        r.jitter = c.fraction(j, "jitter");
    }
    r.keep_files = spec.keep_files;
    if let Some(on) = &spec.on {
        let mut kinds = Vec::new();
        for name in on {
            if name.get_ref() == "invalid-input" {
                c.err(
                    name.span(),
                    "`invalid-input` is never retried: the same input fails the same way",
                    "remove it; fix the task's parameters instead",
                );
                continue;
            }
            match RETRYABLE.iter().find(|(n, _)| n == name.get_ref()) {
                Some((_, kind)) if !kinds.contains(kind) => kinds.push(*kind),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = RETRYABLE.iter().map(|(n, _)| *n).collect();
                    c.err(
                        name.span(),
                        format!("`{}` is not an outcome that can be retried", name.get_ref()),
                        format!("use some of: {}", names.join(", ")),
                    );
                }
            }
        }
        r.on = Some(kinds);
    }
    r
}

pub(crate) fn budget(c: &mut Checker, spec: &BudgetSpec) -> Budget {
    Budget {
        fuel: spec
            .fuel
            .as_ref()
            .and_then(|f| c.int(f, 1..=i64::MAX, "fuel"))
            .map(|f| f as u64),
        wall_time: spec.wall_time.as_ref().and_then(|d| c.duration(d, WEEK)),
        memory: spec.memory.as_ref().and_then(|m| c.size(m)),
    }
}

pub(crate) fn error_budget(c: &mut Checker, spec: &ErrorBudgetSpec) -> Option<ErrorBudget> {
    let max_failures = spec
        .max_failures
        .as_ref()
        .and_then(|n| c.int(n, 1..=1_000_000, "max_failures"))
        .map(|n| n as u32);
    let max_failure_rate = spec
        .max_failure_rate
        .as_ref()
        .and_then(|r| c.fraction(r, "max_failure_rate"));
    let min_attempts = spec
        .min_attempts
        .as_ref()
        .and_then(|n| c.int(n, 1..=1_000_000, "min_attempts"))
        .map_or(5, |n| n as u32);
    let action = match spec
        .action
        .as_ref()
        .map(|a| (a, c.choice(a, &["stop", "pause"], "error-budget action")))
    {
        None | Some((_, Some("stop"))) => OnErrorBudget::Stop,
        Some((_, Some(_))) => OnErrorBudget::Pause {
            resume_after: spec
                .resume_after
                .as_ref()
                .and_then(|d| c.duration(d, WEEK))
                .unwrap_or(Duration::from_secs(5)),
        },
        Some((_, None)) => return None,
    };
    if max_failures.is_none() && max_failure_rate.is_none() {
        c.err_in_file(
            "an error budget needs max_failures or max_failure_rate",
            "e.g. error_budget = { max_failures = 5 }",
        );
        return None;
    }
    Some(ErrorBudget {
        max_failures,
        max_failure_rate,
        min_attempts,
        action,
    })
}

pub(crate) fn stall(
    c: &mut Checker,
    timeout: Option<&Spanned<toml::Value>>,
    action: Option<&Spanned<String>>,
    diagnostic_agent: Option<&Spanned<String>>,
) -> StallOverride {
    let action = action.and_then(|a| {
        c.choice(a, &["report", "retry", "diagnose"], "on_blocked action")
            .map(|a| match a {
                "retry" => OnBlocked::Retry,
                "diagnose" => OnBlocked::Diagnose,
                _ => OnBlocked::Report,
            })
    });
    if let Some(agent) = diagnostic_agent {
        c.name(agent, "agent name");
    }
    StallOverride {
        timeout: timeout.and_then(|t| c.duration(t, WEEK)),
        action,
        diagnostic_agent: diagnostic_agent.map(|a| a.get_ref().clone()),
    }
}

pub(crate) fn fuel_rate(
    c: &mut Checker,
    rate: Option<&Spanned<i64>>,
    burst: Option<&Spanned<i64>>,
) -> Option<FuelRate> {
    let per_second = c.int(rate?, 1..=i64::MAX, "fuel_rate")? as u64;
    let burst = match burst {
        Some(b) => c.int(b, 0..=i64::MAX, "fuel_burst")? as u64,
        // A tenth of a second's worth.
        None => per_second / 10,
    };
    Some(FuelRate { per_second, burst })
}

/// The slowest tool rate a policy may set: a call every 1000 s.
const MIN_CALL_RATE: f64 = 0.001;
/// The shortest credential TTL (it is renewed at half of it).
const MIN_CREDENTIAL_TTL: Duration = Duration::from_millis(100);

pub(crate) fn policy(source: Arc<Source>) -> Result<Policy, Diagnostics> {
    let spec: PolicySpec = parse_toml(&source)?;
    let mut c = Checker::new(Arc::clone(&source));
    let d = spec.defaults.unwrap_or_default();
    let defaults = PolicyDefaults {
        retention: d
            .retention
            .as_ref()
            .and_then(|t| c.duration(t, Duration::from_secs(10 * 365 * 24 * 3600))),
        credential_ttl: d
            .credential_ttl
            .as_ref()
            .and_then(|t| {
                let ttl = c.duration(t, WEEK)?;
                if ttl < MIN_CREDENTIAL_TTL {
                    c.err(
                        t.span(),
                        "credential_ttl must be at least 100ms",
                        "a credential is renewed at half its TTL: give it \"1m\" or more",
                    );
                    return None;
                }
                Some(ttl)
            })
            .unwrap_or(Duration::from_secs(600)),
        retry: d
            .retry
            .as_ref()
            .map(|r| retry(&mut c, r))
            .unwrap_or_default(),
        stall: stall(
            &mut c,
            d.stall_timeout.as_ref(),
            d.on_blocked.as_ref(),
            d.diagnostic_agent.as_ref(),
        ),
        error_budget: d
            .error_budget
            .as_ref()
            .and_then(|e| error_budget(&mut c, e)),
    };
    let mut tenants = std::collections::HashMap::new();
    let mut access = std::collections::HashMap::new();
    let mut fallback = None;
    for (name, t) in &spec.tenants {
        if name.get_ref() != "*" {
            c.name(name, "tenant name");
        }
        let limits = TenantLimits {
            fuel_rate: fuel_rate(&mut c, t.fuel_rate.as_ref(), t.fuel_burst.as_ref()),
            max_concurrency: t
                .max_concurrency
                .as_ref()
                .and_then(|n| c.int(n, 1..=100_000, "max_concurrency"))
                .map(|n| n as usize),
            budget: t
                .budget
                .as_ref()
                .map(|b| budget(&mut c, b))
                .unwrap_or_default(),
        };
        let reach = tenant_access(&mut c, t);
        if name.get_ref() == "*" {
            fallback = Some((limits, reach));
        } else {
            tenants.insert(name.get_ref().clone(), limits);
            access.insert(name.get_ref().clone(), reach);
        }
    }
    let mut tokens: Vec<ApiToken> = Vec::new();
    for t in &spec.tokens {
        let worker = t.worker.as_ref().is_some_and(|w| *w.get_ref());
        let bearer = match (&t.tenant, worker) {
            (Some(tenant), false) => {
                c.name(tenant, "tenant name");
                if let Some(pool) = &t.pool {
                    c.err(
                        pool.span(),
                        "`pool` is for a worker's token, and this one is a tenant's",
                        "remove `pool`, or make it a worker's token (`worker = true`, no `tenant`)",
                    );
                    continue;
                }
                Bearer::Tenant(tenant.get_ref().clone())
            }
            (None, true) => {
                if let Some(pool) = &t.pool {
                    c.name(pool, "pool name");
                }
                Bearer::Worker {
                    pool: t.pool.as_ref().map(|p| p.get_ref().clone()),
                }
            }
            (Some(tenant), true) => {
                c.err(
                    tenant.span(),
                    "a token is a tenant's or a worker's, and this one says both",
                    "remove `tenant` (a worker's token) or `worker = true` (a tenant's)",
                );
                continue;
            }
            (None, false) => {
                c.err(
                    t.sha256.span(),
                    "this token says neither whose it is: a tenant's (`tenant = \"NAME\"`) or a worker's (`worker = true`)",
                    "make one with `wasm-orch token new --tenant NAME` or `--worker`",
                );
                continue;
            }
        };
        let hex = t.sha256.get_ref();
        let Some(hash) = super::token::parse_hex(hex) else {
            c.err(
                t.sha256.span(),
                "`sha256` must be 64 hexadecimal digits: a token's SHA-256",
                "make a token with `wasm-orch token new --tenant NAME --policy FILE`",
            );
            continue;
        };
        if tokens.iter().any(|o| o.hash == hash) {
            c.err(
                t.sha256.span(),
                "this token is listed twice",
                "remove one of the two [[tokens]] entries",
            );
            continue;
        }
        tokens.push(ApiToken {
            bearer,
            hash,
            name: t.name.as_ref().map(|n| n.get_ref().clone()),
        });
    }
    c.finish()?;
    Ok(Policy {
        defaults,
        tenants,
        access,
        fallback,
        tokens,
        source: Some(source),
    })
}

fn tenant_access(c: &mut Checker, t: &super::spec::TenantSpec) -> TenantAccess {
    let tools = t.tools.as_ref().map(|list| {
        list.iter()
            .map(|tool| {
                c.name(tool, "tool name");
                tool.get_ref().clone()
            })
            .collect()
    });
    let mut tool_limits = std::collections::HashMap::new();
    for (tool, limit) in &t.tool_limits {
        c.name(tool, "tool name");
        let per_run = limit
            .per_run
            .as_ref()
            .and_then(|n| c.int(n, 0..=i64::MAX, "per_run"))
            .map(|n| n as u64);
        let per_second = limit.per_second.as_ref().and_then(|r| {
            let rate = *r.get_ref();
            if (MIN_CALL_RATE..=1e9).contains(&rate) {
                Some(rate)
            } else {
                c.err(
                    r.span(),
                    format!("per_second must be from {MIN_CALL_RATE} to 1e9"),
                    "give calls per second, e.g. 5 (or 0.1: one call every 10 seconds)",
                );
                None
            }
        });
        tool_limits.insert(
            tool.get_ref().clone(),
            ToolLimit {
                per_run,
                per_second,
            },
        );
    }
    let http_allow = t
        .http_allow
        .iter()
        .map(|h| {
            let host = h.get_ref();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                c.err(
                    h.span(),
                    format!("`{host}` is not a host"),
                    "write a host name or `host:port`, e.g. \"api.example.com\"",
                );
            }
            host.to_ascii_lowercase()
        })
        .collect();
    let mut secrets = std::collections::HashMap::new();
    for (name, agents) in &t.secrets {
        c.name(name, "secret name");
        let agents: Vec<String> = agents
            .iter()
            .map(|a| {
                if a.get_ref() != "*" {
                    c.name(a, "agent name");
                }
                a.get_ref().clone()
            })
            .collect();
        secrets.insert(name.get_ref().clone(), agents);
    }
    TenantAccess {
        tools,
        tool_limits,
        http_allow,
        secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::policy::Policy;

    fn parse(text: &str) -> Result<Policy, Diagnostics> {
        match Policy::parse(text, "policy.toml") {
            Ok(p) => Ok(p),
            Err(Error::InvalidWorkflow(d)) => Err(d),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_full_policy_file_is_read() {
        let p = parse(
            r#"
[defaults]
retry = { max_attempts = 3, backoff = "100ms", on = ["unavailable", "timed-out", "trapped"] }
stall_timeout = "2s"
on_blocked = "diagnose"
diagnostic_agent = "doctor"
error_budget = { max_failures = 4, action = "pause", resume_after = "1s" }

[tenants.acme]
fuel_rate = 300_000_000
max_concurrency = 4
budget = { fuel = 1_000_000, wall_time = "1h", memory = "1GiB" }
"#,
        )
        .expect("valid");
        let r = p.defaults.retry.over(Default::default());
        assert_eq!(r.max_attempts, 3);
        assert_eq!(
            r.on,
            [ErrorKind::Unavailable, ErrorKind::Timeout, ErrorKind::Trap]
        );
        assert_eq!(
            p.defaults.stall.resolve().map(|s| s.action),
            Some(OnBlocked::Diagnose)
        );
        assert_eq!(
            p.defaults.error_budget.map(|e| e.action),
            Some(OnErrorBudget::Pause {
                resume_after: Duration::from_secs(1)
            })
        );
        let acme = &p.tenants["acme"];
        assert_eq!(
            acme.fuel_rate,
            Some(FuelRate {
                per_second: 300_000_000,
                burst: 30_000_000
            })
        );
        assert_eq!(
            (acme.max_concurrency, acme.budget.memory),
            (Some(4), Some(1 << 30))
        );
    }

    #[test]
    fn mistakes_are_reported_with_their_lines() {
        let d = parse(
            "[defaults]\nretry = { on = [\"invalid-input\", \"later\"] }\non_blocked = \"panic\"\n[tenants.a]\nfuel_rate = 0\n",
        )
        .expect_err("invalid");
        let found: Vec<(Option<usize>, &str)> = d.iter().map(|d| (d.line(), d.message())).collect();
        assert_eq!(found.len(), 4, "{d}");
        assert!(found[0].1.contains("never retried") && found[0].0 == Some(2));
        assert!(found[1].1.contains("`later`"));
        assert!(found[2].1.contains("`panic`") && found[2].0 == Some(3));
        assert!(found[3].1.contains("fuel_rate") && found[3].0 == Some(5));
    }
}
