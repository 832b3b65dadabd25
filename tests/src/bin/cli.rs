//! The `wasm-orch` CLI, built inside the test crate so its tests can run it.

fn main() -> std::process::ExitCode {
    wasm_orch::cli::main()
}
