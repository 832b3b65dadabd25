//! The table printed at the end of a run.

use std::fmt::Write;

use super::format::{self, Style};
use crate::RunStatus;
use crate::report::RunReport;

pub(super) fn render(report: &RunReport, style: Style, width: usize) -> String {
    let s = style;
    let node_w = report
        .tasks
        .iter()
        .map(|t| t.node.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 28);
    let agent_w = report
        .tasks
        .iter()
        .map(|t| t.agent.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 16);
    let mut out = String::new();
    let header = format!(
        "{:<node_w$}  {:<agent_w$}  {:<15}  {:>9}  {:>8}  {:>10}  OUTPUT / ERROR",
        "TASK", "AGENT", "STATUS", "TIME", "FUEL", "MEMORY"
    );
    let _ = writeln!(out, "{}", s.bold(&header));
    let fixed = node_w + agent_w + 15 + 9 + 8 + 10 + 12;
    for t in &report.tasks {
        let detail = match (&t.output, &t.error) {
            (Some(output), _) => crate::events::inert(output.get()).into_owned(),
            (None, Some(error)) => crate::events::inert(&error.message).into_owned(),
            (None, None) => String::new(),
        };
        let status = format!("{:<15}", t.status.as_str());
        let _ = writeln!(
            out,
            "{:<node_w$}  {:<agent_w$}  {}  {:>9}  {:>8}  {:>10}  {}",
            format::fit(&t.node, node_w),
            format::fit(&t.agent, agent_w),
            s.in_status_colour(t.status, &status),
            t.latency_ms.map(format::duration_ms).unwrap_or_default(),
            t.fuel_used.map(format::count).unwrap_or_default(),
            t.memory_peak.map(format::bytes).unwrap_or_default(),
            format::fit(&detail, width.saturating_sub(fixed).max(20)),
        );
    }
    let counts: Vec<String> = report
        .counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let verdict = match report.status {
        RunStatus::Succeeded => s.paint("32;1", "succeeded"),
        RunStatus::Failed => s.paint("31;1", "failed"),
        RunStatus::Cancelled => s.paint("35;1", "cancelled"),
    };
    let _ = writeln!(
        out,
        "\n{} {verdict} in {} ({})",
        s.bold(&report.workflow),
        format::duration_ms(report.duration_ms),
        counts.join(", ")
    );
    for (node, output) in &report.outputs {
        let text = output
            .as_ref()
            .map_or(std::borrow::Cow::Borrowed("(none)"), |o| {
                crate::events::inert(o.get())
            });
        let _ = writeln!(
            out,
            "output {node}: {}",
            format::fit(&text, width.saturating_sub(node.len() + 9).max(20))
        );
    }
    out
}
