#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasm_orch::fuzzing::output(data));
