//! The `wasm-orch` command: see `wasm-orch --help`.

fn main() -> std::process::ExitCode {
    wasm_orch::cli::main()
}
