//! A task's input files on their way to a worker: listed by the coordinator (relative path,
//! SHA-256, size) from the directory it staged them in, and placed by the worker under the
//! attempt's scratch `inputs/`, each checked against its digest and size. Whatever a work
//! order says is bounded and checked before it is written: a path is relative, without `..`,
//! at most [`MAX_DEPTH`] deep; there are at most [`MAX_FILES`] files and [`MAX_BYTES`] in all.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::wire::InputFile;
use crate::model::digest::hex;

/// The most input files an attempt on a worker may have.
pub(crate) const MAX_FILES: usize = 10_000;
/// The most bytes they may hold together.
pub(crate) const MAX_BYTES: u64 = 1 << 30;
/// How deep they may be nested.
const MAX_DEPTH: usize = 32;

/// The regular files under `dir` (symlinks are skipped, as staging skips them), with their
/// digests, sorted by path; an error past the bounds.
pub(crate) fn listed(dir: &Path) -> Result<Vec<(InputFile, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
    while let Some((parent, prefix, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&parent)
            .map_err(|e| format!("its inputs `{}`: {e}", parent.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("its inputs: {e}"))?;
            let kind = entry.file_type().map_err(|e| format!("its inputs: {e}"))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err("an input file's name is not UTF-8".into());
            };
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() && depth < MAX_DEPTH {
                stack.push((entry.path(), relative, depth + 1));
            } else if kind.is_file() {
                if out.len() >= MAX_FILES {
                    return Err(format!(
                        "it has more than the {MAX_FILES} input files a worker is sent"
                    ));
                }
                let path = entry.path();
                let (digest, bytes) = digest_of(&path)?;
                total = total.saturating_add(bytes);
                if total > MAX_BYTES {
                    return Err(format!(
                        "its input files hold more than the {MAX_BYTES} bytes a worker is sent"
                    ));
                }
                out.push((
                    InputFile {
                        path: relative,
                        digest,
                        bytes,
                    },
                    path,
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(out)
}

/// The SHA-256 (hex) and size of the file at `path`, read in pieces.
fn digest_of(path: &Path) -> Result<(String, u64), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("input `{}`: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("input `{}`: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex(&hasher.finalize()), bytes))
}

/// Checks what a work order says of its inputs before anything is fetched or written: every
/// path relative and plain, the counts and sizes within bounds.
pub(crate) fn check(inputs: &[InputFile]) -> Result<(), String> {
    if inputs.len() > MAX_FILES {
        return Err(format!(
            "the work order has {} input files, more than {MAX_FILES}",
            inputs.len()
        ));
    }
    let total: u64 = inputs.iter().map(|f| f.bytes).fold(0, u64::saturating_add);
    if total > MAX_BYTES {
        return Err(format!(
            "the work order's input files hold {total} bytes, more than {MAX_BYTES}"
        ));
    }
    for file in inputs {
        let path = Path::new(&file.path);
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || file.path.is_empty() || path.components().count() > MAX_DEPTH + 1 {
            return Err(format!(
                "input file `{}` is not a plain relative path",
                crate::model::text::inert(crate::model::text::truncate(&file.path, 200))
            ));
        }
        if file.digest.len() != 64 || !file.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("an input file's digest is not a SHA-256".into());
        }
    }
    Ok(())
}

/// Writes `bytes`, the content of `file`, under `dir`: checked against its size and digest.
pub(crate) fn place(dir: &Path, file: &InputFile, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() as u64 != file.bytes || hex(&Sha256::digest(bytes)) != file.digest {
        return Err(format!(
            "input file `{}` does not have the size and digest its work order says",
            crate::model::text::inert(crate::model::text::truncate(&file.path, 200))
        ));
    }
    let target = dir.join(&file.path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    out.write_all(bytes)
        .map_err(|e| format!("{}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_listed_with_their_digests_and_placed_only_as_they_were_listed() {
        let from = tempfile::tempdir().expect("a directory");
        std::fs::create_dir_all(from.path().join("data/deep")).expect("dirs");
        std::fs::write(from.path().join("a.txt"), "1 2 3").expect("a file");
        std::fs::write(from.path().join("data/deep/b.txt"), "x").expect("a file");
        let listed = listed(from.path()).expect("listed");
        let paths: Vec<&str> = listed.iter().map(|(f, _)| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "data/deep/b.txt"]);
        let files: Vec<InputFile> = listed.iter().map(|(f, _)| f.clone()).collect();
        check(&files).expect("a listing passes its own check");

        let to = tempfile::tempdir().expect("a directory");
        place(to.path(), &files[0], b"1 2 3").expect("placed");
        assert_eq!(
            std::fs::read_to_string(to.path().join("a.txt")).expect("read"),
            "1 2 3"
        );
        let wrong = place(to.path(), &files[1], b"y").expect_err("another content");
        assert!(wrong.contains("size and digest"), "{wrong}");

        for bad in ["../escape", "/etc/passwd", "a/../../b", ""] {
            let order = [InputFile {
                path: bad.into(),
                ..files[0].clone()
            }];
            let why = check(&order).expect_err("refused");
            assert!(why.contains("not a plain relative path"), "{bad}: {why}");
        }
        let huge = [InputFile {
            bytes: MAX_BYTES + 1,
            ..files[0].clone()
        }];
        assert!(check(&huge).is_err());
    }
}
