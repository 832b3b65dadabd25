//! The `wasm-orch` CLI, built inside the test crate so its tests can run it: the same
//! `wasm_orch::cli::main`, with the same allocator as the `wasm-orch` binary (the benchmarks
//! that run it measure what users run).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasm_orch::cli::main()
}
