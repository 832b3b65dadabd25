//! `wasm-orch new NAME`: a new agent project that builds, tests and runs at once: the agent
//! (with tests that need no host), its `Cargo.toml`, and a workflow that uses it.

use std::path::{Path, PathBuf};

use super::{INVALID, NewArgs, SUCCESS};

const AGENT: &str = include_str!("templates/agent.rs.tmpl");
const CARGO: &str = include_str!("templates/Cargo.toml.tmpl");
const WORKFLOW: &str = include_str!("templates/workflow.toml.tmpl");

/// The SDK beside this CLI's source, when it was built from a checkout that is still there.
fn sdk_in_checkout() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

pub(super) fn new(args: NewArgs) -> u8 {
    let name = args.name.as_str();
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        eprintln!(
            "error: `{}` is not an agent name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter (it is the crate's name too)",
            crate::model::text::inert(crate::model::text::truncate(name, 64))
        );
        return INVALID;
    }
    match args.lang.as_str() {
        "rust" => {}
        "python" | "js" => {
            eprintln!(
                "error: `--lang {}` is not available yet: the WIT contract (wit/) is \
                 language-neutral, but this release scaffolds Rust agents only",
                args.lang
            );
            return INVALID;
        }
        other => {
            eprintln!(
                "error: unknown language `{}`: use rust",
                crate::model::text::inert(crate::model::text::truncate(other, 32))
            );
            return INVALID;
        }
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        eprintln!(
            "error: `{}` exists already: give another name or --dir",
            dir.display()
        );
        return INVALID;
    }
    let sdk = match args.sdk.clone().or_else(sdk_in_checkout) {
        Some(path) => {
            let path = path.canonicalize().unwrap_or(path);
            if !path.join("Cargo.toml").is_file() {
                eprintln!(
                    "error: `{}` is not the wasm-orch-sdk crate (no Cargo.toml)",
                    path.display()
                );
                return INVALID;
            }
            format!(
                "wasm-orch-sdk = {{ path = {} }}",
                toml::Value::String(path.display().to_string())
            )
        }
        None => "wasm-orch-sdk = \"0.1\"".to_owned(),
    };
    let type_name: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let component = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{type}}", &type_name)
            .replace("{{sdk}}", &sdk)
            .replace("{{component}}", &component)
    };
    let files = [
        ("Cargo.toml", fill(CARGO)),
        ("src/lib.rs", fill(AGENT)),
        ("workflow.toml", fill(WORKFLOW)),
        (".gitignore", "/target\n.wasm-orch/\n".to_owned()),
    ];
    for (file, text) in &files {
        let path = dir.join(file);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return INVALID;
        }
    }
    println!(
        "created {}/: Cargo.toml, src/lib.rs (the agent and its tests), workflow.toml",
        dir.display()
    );
    println!("next:");
    println!("  cd {}", dir.display());
    println!(
        "  cargo test                                      # its tests, natively, no host needed"
    );
    println!(
        "  cargo build --release --target wasm32-wasip2    # the component (`rustup target add wasm32-wasip2` once)"
    );
    println!(
        "  wasm-orch run workflow.toml                     # two tasks, the second after the first"
    );
    SUCCESS
}
