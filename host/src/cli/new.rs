//! `wasm-orch new NAME [--lang rust|python|js]`: a new agent project that tests, builds and
//! runs at once: the agent, tests that need no host (Rust and Python), its build file, and a
//! workflow that uses it; then the next commands.

use std::path::{Path, PathBuf};

use super::{INVALID, NewArgs, SUCCESS};
use crate::model::text::{inert, truncate};

const AGENT_RS: &str = include_str!("templates/agent.rs.tmpl");
const CARGO: &str = include_str!("templates/Cargo.toml.tmpl");
const WORKFLOW: &str = include_str!("templates/workflow.toml.tmpl");
const APP_PY: &str = include_str!("templates/app.py.tmpl");
const TEST_PY: &str = include_str!("templates/test_app.py.tmpl");
const AGENT_JS: &str = include_str!("templates/agent.js.tmpl");
const TEST_JS: &str = include_str!("templates/agent.test.mjs.tmpl");
/// The JavaScript test host, as the repository's own JavaScript guests use it.
const TESTING_JS: [(&str, &str); 7] = [
    (
        "wasm-orch-testing.mjs",
        include_str!("../../../guest-examples/js/testing/wasm-orch-testing.mjs"),
    ),
    (
        "hooks.mjs",
        include_str!("../../../guest-examples/js/testing/hooks.mjs"),
    ),
    (
        "fake/host.mjs",
        include_str!("../../../guest-examples/js/testing/fake/host.mjs"),
    ),
    (
        "fake/status.mjs",
        include_str!("../../../guest-examples/js/testing/fake/status.mjs"),
    ),
    (
        "fake/tools.mjs",
        include_str!("../../../guest-examples/js/testing/fake/tools.mjs"),
    ),
    (
        "fake/secrets.mjs",
        include_str!("../../../guest-examples/js/testing/fake/secrets.mjs"),
    ),
    (
        "fake/blackboard.mjs",
        include_str!("../../../guest-examples/js/testing/fake/blackboard.mjs"),
    ),
];
/// The Python helper modules, as the repository's own Python guests use them.
const HELPER_PY: &str = include_str!("../../../guest-examples/python/wasm_orch_py/wasm_orch.py");
const TESTING_PY: &str =
    include_str!("../../../guest-examples/python/wasm_orch_py/wasm_orch_testing.py");
/// The WIT contract, for the Python and JavaScript toolchains (the Rust SDK carries its own).
const WIT: [(&str, &str); 14] = [
    ("agent.wit", include_str!("../../../wit/agent.wit")),
    (
        "blackboard.wit",
        include_str!("../../../wit/blackboard.wit"),
    ),
    ("messages.wit", include_str!("../../../wit/messages.wit")),
    ("secrets.wit", include_str!("../../../wit/secrets.wit")),
    ("status.wit", include_str!("../../../wit/status.wit")),
    ("tools.wit", include_str!("../../../wit/tools.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
    (
        "deps/cli/cli.wit",
        include_str!("../../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/io/io.wit",
        include_str!("../../../wit/deps/io/io.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../../wit/deps/sockets/sockets.wit"),
    ),
];
/// The versions the repository's own Python and JavaScript guests are built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// The SDK beside this CLI's source, when it was built from a checkout that is still there.
fn sdk_in_checkout() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

/// The `wasm-orch-sdk` dependency line of a Rust project.
fn rust_sdk(given: Option<PathBuf>) -> Result<String, String> {
    match given.or_else(sdk_in_checkout) {
        Some(path) => {
            let path = path.canonicalize().unwrap_or(path);
            if !path.join("Cargo.toml").is_file() {
                return Err(format!(
                    "`{}` is not the wasm-orch-sdk crate (no Cargo.toml)",
                    path.display()
                ));
            }
            Ok(format!(
                "wasm-orch-sdk = {{ path = {} }}",
                toml::Value::String(path.display().to_string())
            ))
        }
        None => Ok("wasm-orch-sdk = \"0.1\"".to_owned()),
    }
}

fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `my-agent` → `MyAgent`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub(super) fn new(args: NewArgs) -> u8 {
    let name = args.name.as_str();
    if !valid_name(name) {
        eprintln!(
            "error: `{}` is not an agent name: use lowercase letters, digits, `-` and `_`, \
             starting with a letter (it names the project and the component)",
            inert(truncate(name, 64))
        );
        return INVALID;
    }
    let lang = match args.lang.as_str() {
        "rust" => Lang::Rust,
        "python" | "py" => Lang::Python,
        "js" | "javascript" => Lang::Js,
        other => {
            eprintln!(
                "error: unknown language `{}`: use rust, python or js",
                inert(truncate(other, 32))
            );
            return INVALID;
        }
    };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        eprintln!(
            "error: `{}` exists already: give another name or --dir",
            dir.display()
        );
        return INVALID;
    }
    let sdk = match lang {
        Lang::Rust => match rust_sdk(args.sdk.clone()) {
            Ok(sdk) => sdk,
            Err(e) => {
                eprintln!("error: {e}");
                return INVALID;
            }
        },
        Lang::Python | Lang::Js => String::new(),
    };
    let component = match lang {
        Lang::Rust => format!(
            "target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ),
        Lang::Python | Lang::Js => format!("{name}.wasm"),
    };
    let memory = if lang == Lang::Python {
        "128MiB"
    } else {
        "64MiB"
    };
    let ty = type_name(name);
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{type}}", &ty)
            .replace("{{sdk}}", &sdk)
            .replace("{{component}}", &component)
            .replace("{{memory}}", memory)
    };
    let mut files: Vec<(String, String)> = vec![
        ("workflow.toml".into(), fill(WORKFLOW)),
        (
            ".gitignore".into(),
            "/target\n.wasm-orch/\n*.wasm\nnode_modules/\n__pycache__/\n".into(),
        ),
    ];
    let next: Vec<String> = match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(CARGO)));
            files.push(("src/lib.rs".into(), fill(AGENT_RS)));
            vec![
                "cargo test                                      # its tests, natively: no host needed".into(),
                "cargo build --release --target wasm32-wasip2    # the component (`rustup target add wasm32-wasip2` once)".into(),
            ]
        }
        Lang::Python => {
            files.push(("app.py".into(), fill(APP_PY)));
            files.push(("test_app.py".into(), fill(TEST_PY)));
            files.push(("wasm_orch.py".into(), HELPER_PY.to_owned()));
            files.push(("wasm_orch_testing.py".into(), TESTING_PY.to_owned()));
            vec![
                "python3 -m unittest                             # its tests, in CPython: no host needed".into(),
                format!("pip install {COMPONENTIZE_PY}"),
                format!("componentize-py -d wit -w sub-agent componentize app -o {name}.wasm"),
            ]
        }
        Lang::Js => {
            files.push(("agent.js".into(), fill(AGENT_JS)));
            files.push(("agent.test.mjs".into(), fill(TEST_JS)));
            files.extend(
                TESTING_JS
                    .iter()
                    .map(|(f, t)| (format!("testing/{f}"), (*t).to_owned())),
            );
            let package = serde_json::json!({
                "name": name,
                "private": true,
                "type": "module",
                "scripts": {
                    "build": format!(
                        "componentize-js agent.js -w wit -n sub-agent -d http fetch-event -o {name}.wasm"
                    ),
                },
                "devDependencies": { "@bytecodealliance/componentize-js": COMPONENTIZE_JS },
            });
            files.push((
                "package.json".into(),
                serde_json::to_string_pretty(&package).unwrap_or_default() + "\n",
            ));
            vec![
                "node --test                                     # its tests, in Node.js: no host needed".into(),
                "npm install".into(),
                format!(
                    "npm run build                                   # {name}.wasm, by componentize-js"
                ),
            ]
        }
    };
    if lang != Lang::Rust {
        files.extend(
            WIT.iter()
                .map(|(f, t)| (format!("wit/{f}"), (*t).to_owned())),
        );
    }
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
    let listed: Vec<&str> = files
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| !f.starts_with("wit/") && !f.starts_with("testing/") && !f.starts_with('.'))
        .collect();
    println!("created {}/: {}", dir.display(), listed.join(", "));
    println!("next:");
    println!("  cd {}", dir.display());
    for line in next {
        println!("  {line}");
    }
    println!(
        "  wasm-orch run workflow.toml                     # two tasks, the second after the first"
    );
    SUCCESS
}

#[cfg(test)]
mod tests {
    /// Every file of the contract (`wit/`, its `deps/`, not the frozen `0.2/`) is carried
    /// into a new project: one missing leaves a world that does not parse.
    #[test]
    fn a_new_project_carries_every_file_of_the_contract() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("wit/ reads") {
                let path = entry.expect("an entry").path();
                let rel = path.strip_prefix(&root).expect("under wit/").to_path_buf();
                if path.is_dir() {
                    if rel != std::path::Path::new("0.2") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "wit") {
                    found.push(rel.display().to_string());
                }
            }
        }
        found.sort();
        let mut carried: Vec<String> = super::WIT.iter().map(|(p, _)| (*p).to_owned()).collect();
        carried.sort();
        assert_eq!(carried, found);
    }
}
