//! `cargo xtask arch`: the module graph of `host/src` against the layers written down in
//! `docs/architecture.md`.
//!
//! The layers are the fenced block marked `layers` in that document: one layer per line,
//! lowest first, modules of a layer separated by spaces. A module may import (name as
//! `crate::<module>`, or reach with `super::` past its own root) only modules of the layers
//! below its own: never a module of its own layer, never one above. Since every edge points
//! down, the graph has no cycle. A module missing from the layers is an error too, so a new
//! module gets its place on purpose.
//!
//! Comments and doc links count: a doc link to a higher layer is a dependency of the reader's
//! understanding, and would be a cycle for the project's cycle check as well.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One import that breaks the layers, with where it is written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// What the check found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) modules: usize,
    pub(crate) edges: usize,
    pub(crate) violations: Vec<Violation>,
}

/// The layers of the fenced `layers` block of `doc`: each a list of module names.
pub(crate) fn layers(doc: &str) -> Result<Vec<Vec<String>>, String> {
    let mut inside = false;
    let mut layers = Vec::new();
    for line in doc.lines() {
        let trimmed = line.trim();
        if !inside {
            inside = trimmed == "```layers";
            continue;
        }
        if trimmed.starts_with("```") {
            return if layers.is_empty() {
                Err("the `layers` block is empty".into())
            } else {
                Ok(layers)
            };
        }
        let names: Vec<String> = trimmed
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            layers.push(names);
        }
    }
    Err("no fenced block marked `layers` (```layers ... ```)".into())
}

/// The top-level modules of a crate's `src`: its directories and `.rs` files but `lib.rs`,
/// `main.rs` and `bin`.
fn modules(src: &Path) -> Result<BTreeSet<String>, String> {
    let entries = fs::read_dir(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut mods = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if name != "bin" {
                mods.insert(name);
            }
        } else if let Some(stem) = name.strip_suffix(".rs")
            && stem != "lib"
            && stem != "main"
        {
            mods.insert(stem.to_owned());
        }
    }
    Ok(mods)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to, and how many `super::` lead from the file's module
/// to the crate root.
fn owner(src: &Path, file: &Path) -> Option<(String, usize)> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let top = parts.first()?.trim_end_matches(".rs").to_owned();
    // `a.rs` and `a/mod.rs` are module `a` (one `super` to the root); `a/b.rs` is `a::b`.
    let depth = if parts.len() == 1 || parts.last().is_some_and(|l| l == "mod.rs") {
        parts.len().max(2) - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

/// The crate modules a line names: `crate::x`, `crate::{x, y::z}`, and `super::...::x` that
/// climbs to the root.
fn named(line: &str, depth: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `wasm_orch_crate::`, not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let mut level = 0usize;
            let mut item = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => level += 1,
                    '}' => level = level.saturating_sub(1),
                    ',' if level == 0 => {
                        names.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.push(first_segment(&item));
        } else {
            names.push(first_segment(rest));
        }
    }
    // `super::super::x` from a file `depth` levels below the root.
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        rest = &rest[at + "super::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut count = 0;
        let mut after = tail;
        while let Some(next) = after.strip_prefix("super::") {
            count += 1;
            after = next;
        }
        if count >= depth && depth > 0 {
            names.push(first_segment(after));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Checks the modules of `src` against `layers`.
pub(crate) fn check(src: &Path, layers: &[Vec<String>]) -> Result<Report, String> {
    let mods = modules(src)?;
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for name in layer {
            if layer_of.insert(name, i).is_some() {
                return Err(format!("module `{name}` is in two layers"));
            }
        }
    }
    let mut violations = Vec::new();
    for m in &mods {
        if !layer_of.contains_key(m.as_str()) {
            violations.push(Violation {
                file: src.join(m),
                line: 0,
                message: format!(
                    "module `{m}` has no layer: add it to the `layers` block of docs/architecture.md"
                ),
            });
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut edges = BTreeSet::new();
    for file in &files {
        let Some((top, depth)) = owner(src, file) else {
            continue;
        };
        let Some(&from) = layer_of.get(top.as_str()) else {
            continue;
        };
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            for target in named(line, depth) {
                if target == top || !mods.contains(&target) {
                    continue;
                }
                edges.insert((top.clone(), target.clone()));
                let Some(&to) = layer_of.get(target.as_str()) else {
                    continue;
                };
                if to >= from {
                    let how = if to == from {
                        "its own layer"
                    } else {
                        "a layer above"
                    };
                    violations.push(Violation {
                        file: file.clone(),
                        line: n + 1,
                        message: format!(
                            "`{top}` (layer {from}) imports `{target}` (layer {to}), {how}: \
                             imports must point down the layers of docs/architecture.md \
                             (move the shared part down, or pass it in from above)"
                        ),
                    });
                }
            }
        }
    }
    Ok(Report {
        modules: mods.len(),
        edges: edges.len(),
        violations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-arch-{}-{}",
            std::process::id(),
            files.len() * 31 + files.iter().map(|(p, t)| p.len() + t.len()).sum::<usize>()
        ));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            fs::write(p, text).expect("write");
        }
        dir
    }

    const LAYERS: &str = "intro\n```layers\nmodel\nbus config   # peers\nscheduler\n```\nmore";

    #[test]
    fn the_layers_block_is_read_lowest_first() {
        let layers = layers(LAYERS).expect("layers");
        assert_eq!(
            layers,
            [vec!["model"], vec!["bus", "config"], vec!["scheduler"]]
        );
        assert!(super::layers("no block").is_err());
    }

    #[test]
    fn imports_that_point_down_pass() {
        let src = tree(&[
            ("lib.rs", "mod model; mod bus; mod config; mod scheduler;"),
            ("model/mod.rs", "pub struct Event;"),
            ("bus/mod.rs", "use crate::model::Event;"),
            ("config.rs", "use crate::{model::Event};"),
            ("scheduler/mod.rs", "mod run;"),
            (
                "scheduler/run.rs",
                "use super::super::bus::X; use crate::{bus, config::Y};",
            ),
        ]);
        let report = check(&src, &layers(LAYERS).expect("layers")).expect("checked");
        assert_eq!(report.violations, []);
        assert_eq!((report.modules, report.edges), (4, 4));
        let _ = fs::remove_dir_all(src);
    }

    #[test]
    fn a_back_edge_or_a_peer_edge_fails_and_says_where() {
        let src = tree(&[
            ("lib.rs", ""),
            ("model/mod.rs", "// fine\nuse crate::scheduler::Plan;"),
            ("bus/mod.rs", "mod emit;"),
            ("bus/emit.rs", "fn f() { super::super::config::x(); }"),
            ("config.rs", ""),
            ("scheduler/mod.rs", ""),
            ("stray.rs", ""),
        ]);
        let report = check(&src, &layers(LAYERS).expect("layers")).expect("checked");
        let found: Vec<(String, usize)> = report
            .violations
            .iter()
            .map(|v| {
                let file = v.file.strip_prefix(&src).unwrap_or(&v.file);
                (file.display().to_string(), v.line)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("stray".to_owned(), 0),
                ("bus/emit.rs".to_owned(), 1),
                ("model/mod.rs".to_owned(), 2)
            ]
        );
        assert!(report.violations[2].message.contains("a layer above"));
        assert!(report.violations[1].message.contains("its own layer"));
        let _ = fs::remove_dir_all(src);
    }
}
