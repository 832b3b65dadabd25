//! The task graph as Graphviz `dot` or Mermaid text.

use std::fmt::Write;

use super::Workflow;

/// A graph syntax for [`Workflow::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphFormat {
    /// Graphviz `dot`.
    Dot,
    /// Mermaid `flowchart`.
    Mermaid,
}

pub(super) fn render(workflow: &Workflow, format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => dot(workflow),
        GraphFormat::Mermaid => mermaid(workflow),
    }
}

/// The two lines of a task's label: its id, then its agent and scheduling hints.
fn label(workflow: &Workflow, task: usize) -> (String, String) {
    let t = &workflow.tasks[task];
    let mut second = workflow.target_label(task);
    if t.priority != 0 {
        let _ = write!(second, " p{}", t.priority);
    }
    if let Some(m) = &t.mutex {
        let _ = write!(second, " 🔒{m}");
    }
    (t.id.clone(), second)
}

fn dot(workflow: &Workflow) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        escape(&workflow.name)
    );
    for (i, t) in workflow.tasks.iter().enumerate() {
        let style = if t.critical {
            ""
        } else {
            ", style=\"rounded,dashed\""
        };
        let (id, second) = label(workflow, i);
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\"{style}];",
            escape(&t.id),
            escape(&id),
            escape(&second)
        );
    }
    for t in &workflow.tasks {
        for &d in &t.deps {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                escape(&workflow.tasks[d].id),
                escape(&t.id)
            );
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, t) in workflow.tasks.iter().enumerate() {
        let (id, second) = label(workflow, i);
        let quote = |s: &str| s.replace('"', "#quot;");
        let _ = writeln!(out, "  t{i}[\"{}<br/>{}\"]", quote(&id), quote(&second));
        if !t.critical {
            let _ = writeln!(out, "  style t{i} stroke-dasharray: 5 5");
        }
    }
    for (i, t) in workflow.tasks.iter().enumerate() {
        for &d in &t.deps {
            let _ = writeln!(out, "  t{d} --> t{i}");
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
