//! Agents: declared in the workflow file, or in an agent registry file the workflow names.
//!
//! A registry is where an operator declares each agent once: its component, capabilities,
//! the tenants allowed to use it, its tools, limits and throttling. Problems in a registry are
//! reported against the registry file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::AgentDef;
use super::spec::{AgentSpec, LimitsSpec, RegistrySpec};
use crate::config::{Checker, Source, parse_toml};
use crate::model::limits::Limits;
use crate::policy;

/// Turns `[agents.NAME]` tables of one file into agents. `registry`: whether the file is an
/// agent registry (only registries say which tenants may use an agent).
pub(crate) fn agents(
    c: &mut Checker,
    base_dir: &Path,
    specs: &std::collections::BTreeMap<Spanned<String>, AgentSpec>,
    defaults: Limits,
    registry: bool,
) -> Vec<AgentDef> {
    let mut agents = Vec::new();
    for (name, spec) in specs {
        c.name(name, "agent name");
        let mut path = base_dir.join(spec.component.get_ref());
        if path.is_file() {
            // Reports and messages show the real path, not `examples/../target/...`.
            path = std::fs::canonicalize(&path).unwrap_or(path);
        } else {
            let why = if path.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            c.err(
                spec.component.span(),
                format!(
                    "component file `{}` of agent `{}` {why}",
                    path.display(),
                    name.get_ref()
                ),
                "paths are relative to the file they are written in; build the component or fix the path",
            );
        }
        let limits = limits(c, &spec.limits(), defaults);
        let mut tools = Vec::new();
        for tool in &spec.tools {
            if tools.iter().any(|(t, _): &(String, _)| t == tool.get_ref()) {
                c.err(
                    tool.span(),
                    format!("tool `{}` is listed twice", tool.get_ref()),
                    "list each tool once",
                );
            }
            tools.push((tool.get_ref().clone(), tool.span()));
        }
        let mut capabilities = Vec::new();
        for cap in &spec.capabilities {
            if cap.get_ref().is_empty() || cap.get_ref().contains(char::is_whitespace) {
                c.err(
                    cap.span(),
                    format!("`{}` is not a capability name", cap.get_ref()),
                    "use a dotted name such as `math.add`",
                );
            }
            capabilities.push(cap.get_ref().clone());
        }
        let tenants = match (&spec.tenants, registry) {
            (Some(list), true) => {
                let mut tenants = Vec::new();
                for t in list {
                    if t.get_ref() != "*" {
                        c.name(t, "tenant name");
                    }
                    tenants.push(t.get_ref().clone());
                }
                (!tenants.iter().any(|t| t == "*")).then_some(tenants)
            }
            (Some(list), false) => {
                if let Some(first) = list.first() {
                    c.err(
                        first.span(),
                        "`tenants` belongs in an agent registry: a workflow's own agents serve its tenant",
                        "move the agent to the registry file, or remove `tenants`",
                    );
                }
                None
            }
            (None, _) => None,
        };
        agents.push(AgentDef {
            name: name.get_ref().clone(),
            description: spec.description.clone(),
            component: path,
            component_span: spec.component.span(),
            source: Arc::clone(&c.source),
            limits,
            tools,
            workdir: spec.workdir.unwrap_or(true),
            cache: spec.cache,
            planner: spec.planner.unwrap_or(false),
            capabilities,
            tenants,
            max_concurrency: spec
                .max_concurrency
                .as_ref()
                .and_then(|n| c.int(n, 1..=100_000, "max_concurrency"))
                .map(|n| n as usize),
            fuel_rate: policy::fuel_rate(c, spec.fuel_rate.as_ref(), spec.fuel_burst.as_ref()),
            retry: spec
                .retry
                .as_ref()
                .map(|r| policy::retry(c, r))
                .unwrap_or_default(),
        });
    }
    agents
}

/// Reads the agent registry at `path`. Its problems are added to `c`, each naming the
/// registry file.
pub(crate) fn registry(
    c: &mut Checker,
    path: &Path,
    span: std::ops::Range<usize>,
) -> Vec<AgentDef> {
    let text = match crate::config::read_text(path, crate::config::MAX_CONFIG_BYTES) {
        Ok(text) => text,
        Err(e) => {
            c.err(
                span,
                format!("cannot read agent registry `{}`: {e}", path.display()),
                "paths are relative to the workflow file",
            );
            return Vec::new();
        }
    };
    parse_registry(c, path, text)
}

/// Validates registry text read from `path`.
pub(crate) fn parse_registry(c: &mut Checker, path: &Path, text: String) -> Vec<AgentDef> {
    let source = Source::new(path, text);
    let spec: RegistrySpec = match parse_toml(&source) {
        Ok(spec) => spec,
        Err(d) => {
            c.errors.extend(d.0);
            return Vec::new();
        }
    };
    let mut rc = Checker::new(Arc::clone(&source));
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let agents = agents(&mut rc, &base, &spec.agents, Limits::default(), true);
    if agents.is_empty() && rc.errors.is_empty() {
        rc.err_in_file(
            "the agent registry declares no agents",
            "add [agents.NAME] tables with a `component`",
        );
    }
    c.errors.extend(rc.errors);
    agents
}

/// Agent limits: `base`, with what `spec` sets.
pub(crate) fn limits(c: &mut Checker, spec: &LimitsSpec, base: Limits) -> Limits {
    let mut limits = base;
    if let Some(fuel) = &spec.fuel
        && let Some(f) = c.int(fuel, 1..=i64::MAX, "fuel")
    {
        limits.fuel = f as u64;
    }
    if let Some(memory) = &spec.memory {
        match c.size(memory) {
            Some(m) if (64 << 10..=4 << 30).contains(&m) => limits.memory = m,
            Some(m) => c.err(
                memory.span(),
                format!("memory must be between 64KiB and 4GiB, not {m} bytes"),
                "give the most memory one task may use, e.g. `memory = \"64MiB\"`",
            ),
            None => {}
        }
    }
    if let Some(timeout) = &spec.timeout
        && let Some(t) = c.duration(timeout, Duration::from_secs(7 * 24 * 3600))
    {
        limits.timeout = t;
    }
    if let Some(out) = &spec.max_output {
        match c.size(out) {
            Some(m) if (1..=1 << 30).contains(&m) => limits.max_output = m,
            Some(m) => c.err(
                out.span(),
                format!("max_output must be between 1 byte and 1GiB, not {m} bytes"),
                "give the largest output a task may return, e.g. `max_output = \"1MiB\"`",
            ),
            None => {}
        }
    }
    if let Some(disk) = &spec.disk {
        match c.size(disk) {
            Some(m) if m <= 1 << 40 => limits.disk = m,
            Some(m) => c.err(
                disk.span(),
                format!("disk must be at most 1024GiB, not {m} bytes"),
                "give the most bytes one task may write, e.g. `disk = \"64MiB\"` (0: none)",
            ),
            None => {}
        }
    }
    limits
}
