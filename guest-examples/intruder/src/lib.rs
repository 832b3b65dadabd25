//! `intruder`: an adversarial agent. It makes each attempt it is given (reading or writing
//! files outside its sandbox, planting symlinks, reaching other branches', runs' or tenants'
//! blackboard keys, calling tools and reading secrets it was not granted) and reports what
//! the host answered. It never fails because of a refusal: the report is the point.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_orch_sdk::{Agent, Context, Error, blackboard, secrets, tools};

#[derive(Deserialize)]
struct Params {
    attempts: Vec<Attempt>,
}

#[derive(Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
enum Attempt {
    /// Read a file.
    Read { path: String },
    /// Create (or overwrite) a file.
    Write { path: String, text: String },
    /// Open a path exactly as given, through WASI itself (std's WASI support would resolve an
    /// absolute path against the sandbox's own root first), and read it.
    RawRead { path: String },
    /// List a directory.
    List { path: String },
    /// Create a symlink in the working directory, then read through it.
    Symlink { target: String, link: String },
    /// Read a blackboard key.
    Get { key: String },
    /// Write a blackboard key unconditionally.
    Put { key: String, value: Value },
    /// Write a blackboard key with compare-and-swap (as if absent).
    Swap { key: String, value: Value },
    /// Call a tool, `times` times (default once); reports each answer.
    Tool {
        name: String,
        input: Value,
        #[serde(default = "once")]
        times: u32,
    },
    /// Read a secret (the value is not reported, only whether it came).
    Secret { name: String },
    /// Write `chunk`-byte blocks to a file until a write fails (or `max` bytes are written).
    Fill {
        path: String,
        chunk: usize,
        #[serde(default = "unbounded")]
        max: u64,
    },
    /// Write `bytes` bytes at offset 0 through WASI's `descriptor.write` (std writes through
    /// an output stream).
    RawWrite { path: String, bytes: u64 },
    /// Create a file and set its length (a sparse file, as big as asked).
    Grow { path: String, size: u64 },
    /// Create empty files `<prefix>0`, `<prefix>1`, ... until one cannot be created (or
    /// `count` are).
    Touch { prefix: String, count: u32 },
}

fn unbounded() -> u64 {
    u64::MAX
}

fn once() -> u32 {
    1
}

#[derive(Serialize)]
struct Answer {
    attempt: String,
    result: Result<String, String>,
}

struct Intruder;

impl Agent for Intruder {
    type Params = Params;
    type Output = Vec<Answer>;

    fn run(cx: Context<Params>) -> Result<Vec<Answer>, Error> {
        Ok(cx.params.attempts.into_iter().flat_map(make).collect())
    }
}

fn make(attempt: Attempt) -> Vec<Answer> {
    let text = |e: std::io::Error| e.to_string();
    let (what, result) = match attempt {
        Attempt::Tool { name, input, times } => {
            return (1..=times)
                .map(|i| Answer {
                    attempt: format!("tool {name} #{i}"),
                    result: tools::invoke::<Value, Value>(&name, &input)
                        .map(|v| v.to_string())
                        .map_err(|e| e.to_string()),
                })
                .collect();
        }
        Attempt::Read { path } => (
            format!("read {path}"),
            std::fs::read_to_string(&path).map_err(text),
        ),
        Attempt::Write { path, text: body } => (
            format!("write {path}"),
            std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(body.as_bytes()))
                .map(|()| "written".to_owned())
                .map_err(text),
        ),
        Attempt::RawRead { path } => (format!("raw read {path}"), raw_read(&path)),
        Attempt::List { path } => (
            format!("list {path}"),
            std::fs::read_dir(&path)
                .and_then(|entries| {
                    let mut names = entries
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect::<Result<Vec<_>, _>>()?;
                    names.sort();
                    Ok(names.join(","))
                })
                .map_err(text),
        ),
        Attempt::Symlink { target, link } => (
            format!("symlink {link} -> {target}"),
            symlink(&target, &link)
                .map_err(|e| format!("creating it: {e}"))
                .and_then(|()| {
                    std::fs::read_to_string(&link).map_err(|e| format!("reading through it: {e}"))
                }),
        ),
        Attempt::Get { key } => (
            format!("get {key}"),
            blackboard::get::<Value>(&key)
                .map(|e| e.map_or("absent".to_owned(), |e| e.value.to_string()))
                .map_err(|e| e.to_string()),
        ),
        Attempt::Put { key, value } => (
            format!("put {key}"),
            blackboard::put(&key, &value)
                .map(|v| format!("version {v}"))
                .map_err(|e| e.to_string()),
        ),
        Attempt::Swap { key, value } => (
            format!("swap {key}"),
            blackboard::compare_and_swap(&key, None, &value)
                .map(|s| format!("{s:?}"))
                .map_err(|e| e.to_string()),
        ),
        Attempt::Fill { path, chunk, max } => (format!("fill {path}"), fill(&path, chunk, max)),
        Attempt::RawWrite { path, bytes } => (format!("raw write {path}"), raw_write(&path, bytes)),
        Attempt::Grow { path, size } => (
            format!("grow {path}"),
            std::fs::File::create(&path)
                .and_then(|f| f.set_len(size))
                .map(|()| format!("{size} bytes"))
                .map_err(text),
        ),
        Attempt::Touch { prefix, count } => (format!("touch {prefix}*"), touch(&prefix, count)),
        Attempt::Secret { name } => (
            format!("secret {name}"),
            secrets::get(&name)
                .map(|v| format!("read {} bytes", v.len()))
                .map_err(|e| e.to_string()),
        ),
    };
    vec![Answer {
        attempt: what,
        result,
    }]
}

/// The working directory's descriptor.
fn work_dir() -> Result<wasip2::filesystem::types::Descriptor, String> {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| path == ".")
        .map(|(dir, _)| dir)
        .ok_or_else(|| "no working directory".to_owned())
}

fn raw_read(path: &str) -> Result<String, String> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let file = work_dir()?
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| format!("{e:?}"))?;
    let (bytes, _) = file.read(1 << 16, 0).map_err(|e| format!("{e:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn fill(path: &str, chunk: usize, max: u64) -> Result<String, String> {
    let mut file = std::fs::File::create(path).map_err(|e| format!("creating it: {e}"))?;
    let block = vec![0x5a_u8; chunk.max(1)];
    let mut written = 0_u64;
    while written < max {
        if let Err(e) = file.write_all(&block).and_then(|()| file.flush()) {
            return Err(format!("after {written} bytes: {e}"));
        }
        written += block.len() as u64;
    }
    Ok(format!("{written} bytes"))
}

fn raw_write(path: &str, bytes: u64) -> Result<String, String> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let file = work_dir()?
        .open_at(
            PathFlags::empty(),
            path,
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        )
        .map_err(|e| format!("opening it: {e:?}"))?;
    let block = vec![0x5a_u8; usize::try_from(bytes).map_err(|e| e.to_string())?];
    file.write(&block, 0)
        .map(|n| format!("{n} bytes"))
        .map_err(|e| format!("{e:?}"))
}

fn touch(prefix: &str, count: u32) -> Result<String, String> {
    for i in 0..count {
        if let Err(e) = std::fs::File::create(format!("{prefix}{i}")) {
            return Err(format!("after {i} files: {e}"));
        }
    }
    Ok(format!("{count} files"))
}

/// Creates `link` (in the working directory) pointing at `target`, through WASI directly
/// (std's `symlink_path` is unstable on WASI).
fn symlink(target: &str, link: &str) -> Result<(), String> {
    work_dir()?
        .symlink_at(target, link)
        .map_err(|e| format!("{e:?}"))
}

wasm_orch_sdk::export!(Intruder);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use wasm_orch_sdk::testing::TestRun;

    use super::Intruder;

    fn answers(outcome: &wasm_orch_sdk::testing::Outcome) -> Vec<(String, Value)> {
        let answers: Vec<Value> = outcome.output();
        answers
            .into_iter()
            .map(|a| {
                (
                    a["attempt"].as_str().unwrap_or_default().to_owned(),
                    a["result"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn reports_every_refusal_and_never_fails_because_of_one() {
        let outcome = TestRun::new(json!({ "attempts": [
            { "do": "put", "key": "branches/other.node/x", "value": 1 },
            { "do": "put", "key": "shared/total", "value": 1 },
            { "do": "swap", "key": "shared/total", "value": 1 },
            { "do": "get", "key": "shared/total" },
            { "do": "tool", "name": "http_get", "input": {}, "times": 2 },
            { "do": "secret", "name": "root" },
        ]}))
        .run::<Intruder>();
        let a = answers(&outcome);
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "put branches/other.node/x",
                "put shared/total",
                "swap shared/total",
                "get shared/total",
                "tool http_get #1",
                "tool http_get #2",
                "secret root",
            ]
        );
        let refused = |i: usize| a[i].1["Err"].as_str().unwrap_or_default().to_owned();
        assert!(refused(0).contains("read-only"), "{}", refused(0));
        assert!(refused(1).contains("compare-and-swap"), "{}", refused(1));
        assert_eq!(a[2].1, json!({ "Ok": "Done(1)" }), "the swap is allowed");
        assert_eq!(a[3].1, json!({ "Ok": "1" }));
        assert!(refused(4).contains("not granted") && refused(5).contains("not granted"));
        assert!(refused(6).contains("not granted"));
        assert_eq!(outcome.blackboard.len(), 1);
    }

    #[test]
    fn reads_writes_and_fills_files_it_may_touch() {
        let dir = std::env::temp_dir().join(format!("intruder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let file = dir.join("note.txt").display().to_string();
        let filled = dir.join("fill.bin").display().to_string();
        let outcome = TestRun::new(json!({ "attempts": [
            { "do": "write", "path": file, "text": "hello" },
            { "do": "read", "path": file },
            { "do": "fill", "path": filled, "chunk": 100, "max": 1000 },
            { "do": "touch", "prefix": dir.join("t").display().to_string(), "count": 3 },
        ]}))
        .run::<Intruder>();
        let a = answers(&outcome);
        assert_eq!(a[0].1, json!({ "Ok": "written" }));
        assert_eq!(a[1].1, json!({ "Ok": "hello" }));
        assert_eq!(a[2].1, json!({ "Ok": "1000 bytes" }));
        assert_eq!(a[3].1, json!({ "Ok": "3 files" }));
        assert!(dir.join("t2").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
