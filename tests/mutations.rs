//! Mutation smoke tests of the files an operator or a tenant hands the host: workflow files
//! and policy files, started from the examples and mutated (bytes flipped, cut, spliced,
//! duplicated, TOML-significant bytes put in) many thousands of times. Every input must end
//! as a parsed file or a clear error (`Error`'s text names the file), never a panic and never
//! a hang. Seeded from the clock (the seed is printed, so a failure can be replayed with
//! `WASM_ORCH_MUTATION_SEED`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasm_orch::Workflow;
use wasm_orch::policy::Policy;

/// TOML's and the workflow format's significant bytes and words.
const TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b"\"",
    b"'''",
    b"\n",
    b",",
    b".",
    b"#",
    b"depends_on = [\"",
    b"${",
    b"}",
    b"\\u0000",
    b"\x1b[31m",
    b"../",
    b"/",
    b"*",
    b"-1",
    b"1e308",
    b"18446744073709551616",
    b"\"\"",
    b"inf",
    b"nan",
    b"true",
    b"[[tasks]]\nid = \"",
    b"agent = \"",
    b"with = {",
    b"[agents.",
    b"[tenants.\"*\"]",
    b"retry = { max_attempts = ",
    b"fuel = ",
    b"memory = \"",
    b"timeout = \"",
    b"\xff\xfe",
    b"\xc3\x28",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            4 => {
                // A piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(256)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            5 => {
                // A piece of itself, repeated (long lines, many tables).
                let to = (at + rng.below(128)).min(out.len());
                let piece = out[at..to].repeat(1 + rng.below(50));
                out.splice(at..at, piece);
            }
            _ => {
                let byte = rng.next() as u8;
                out.insert(at, byte);
            }
        }
    }
    out
}

fn seed() -> u64 {
    std::env::var("WASM_ORCH_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        })
}

/// Runs `check` over `iterations` mutants of `seeds`; each must return within a few seconds.
fn mutate_all(what: &str, seeds: &[Vec<u8>], iterations: usize, check: impl Fn(&[u8])) {
    let seed = seed();
    eprintln!("{what}: {iterations} mutants, WASM_ORCH_MUTATION_SEED={seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..iterations {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seeds, base);
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        slowest = slowest.max(t.elapsed());
        if outcome.is_err() {
            let kept = std::env::temp_dir().join(format!("wasm-orch-{what}-crash-{seed}-{i}"));
            let _ = std::fs::write(&kept, &input);
            panic!("{what}: mutant {i} panicked (kept in {})", kept.display());
        }
    }
    eprintln!(
        "{what}: {iterations} mutants in {:.1} s, slowest {:.1} ms",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1e3
    );
    // A generous bound (a loaded 2-core machine, a debug build): what it catches is a
    // super-linear blow-up, which takes far longer.
    assert!(
        slowest < Duration::from_secs(10),
        "{what}: a mutant took {slowest:?}"
    );
}

fn examples() -> PathBuf {
    wasm_orch_tests::root().join("examples")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn mutated_workflow_files_parse_or_are_clear_errors() {
    let dir = examples();
    let seeds: Vec<Vec<u8>> = [
        "calc.toml",
        "word-count.toml",
        "triage.toml",
        "isolation.toml",
    ]
    .iter()
    .map(|f| read(&dir.join(f)))
    .collect();
    // Relative paths resolve under the examples, so the seeds are valid as they are.
    let path = dir.join("mutant.toml");
    mutate_all("workflow", &seeds, 100_000, |input| {
        let text = String::from_utf8_lossy(input);
        if let Err(e) = Workflow::parse(&text, &path, &[]) {
            let message = e.to_string();
            assert!(message.contains("mutant.toml"), "names the file: {message}");
            assert!(message.len() < 64 << 10, "bounded: {} bytes", message.len());
        }
    });
}

#[test]
fn mutated_policy_files_parse_or_are_clear_errors() {
    let seeds = vec![read(&examples().join("policy.toml"))];
    mutate_all("policy", &seeds, 100_000, |input| {
        let text = String::from_utf8_lossy(input);
        if let Err(e) = Policy::parse(&text, "mutant-policy.toml") {
            let message = e.to_string();
            assert!(
                message.contains("mutant-policy.toml"),
                "names the file: {message}"
            );
            assert!(message.len() < 64 << 10, "bounded: {} bytes", message.len());
        }
    });
}

/// A check, by name, and the inputs its mutants start from.
type Case = (&'static str, fn(&[u8]), Vec<Vec<u8>>);

/// The checks of what a guest hands the host, each fed mutants of a few typical inputs (see
/// `wasm_orch::fuzzing` for the property each one holds).
#[test]
fn mutated_guest_inputs_keep_the_hosts_promises() {
    use wasm_orch::fuzzing;
    let cases: [Case; 6] = [
        (
            "blackboard-key",
            fuzzing::blackboard_key,
            vec![
                b"\x01notes".to_vec(),
                b"\x00shared/total".to_vec(),
                b"\x00branches/wf.b/notes".to_vec(),
                b"\x01branches/wf.a/x/y".to_vec(),
                b"\x00../runs/x".to_vec(),
            ],
        ),
        (
            "kv-request",
            fuzzing::kv_request,
            vec![
                br#"{"op":"add","key":"n","by":2}"#.to_vec(),
                br#"{"op":"swap","key":"n","expected":3,"value":{"a":[1,2]}}"#.to_vec(),
                br#"{"op":"list","prefix":"a/"}"#.to_vec(),
                br#"{"op":"put","key":"k","value":"v"}"#.to_vec(),
            ],
        ),
        (
            "output",
            fuzzing::output,
            vec![
                br#"{"sum": 21, "words": ["a", "b"]}"#.to_vec(),
                b"21".to_vec(),
                b"\"text \\u001b[31m\"".to_vec(),
                b"[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]".to_vec(),
            ],
        ),
        (
            "redaction",
            fuzzing::redaction,
            vec![
                b"hunter2\0the password is hunter2, hunter2!".to_vec(),
                b"ab\0aabb abab".to_vec(),
                b"line one of a key\nline two of a key\0line two of a key".to_vec(),
                b"q\"uote\0{\"v\":\"q\\\"uote\"}".to_vec(),
            ],
        ),
        (
            "journal-batch",
            fuzzing::journal_batch,
            vec![
                vec![20, 0, 0, 0, 0xf0, 5, b'{', b'}', b'\n'],
                vec![0, 0, 0, 0],
                vec![255, 255, 255, 255, 1, 2, 3],
            ],
        ),
        (
            "workflow-bytes",
            fuzzing::workflow,
            vec![b"[workflow]\nname = \"x\"\n[[tasks]]\nid = \"a\"\nagent = \"b\"\n".to_vec()],
        ),
    ];
    for (what, check, seeds) in cases {
        mutate_all(what, &seeds, 50_000, check);
    }
}
