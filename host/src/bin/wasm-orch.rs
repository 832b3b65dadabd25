//! The `wasm-orch` command: see `wasm-orch --help`.

// A run allocates many small, short-lived objects on every worker thread (events, attempts,
// stores); mimalloc's thread-local heaps serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wasm_orch::cli::main()
}
