//! The files of one task besides its working directory: the inputs it is given (staged, then
//! preopened read-only) and the artifacts it leaves (listed, and scrubbed of secret values).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::model::events::Artifact;
use crate::redact::Redactor;

/// The most files listed as one task's artifacts.
const MAX_ARTIFACTS: usize = 10_000;
/// How deep inputs are staged.
const MAX_DEPTH: usize = 32;
/// Files up to this size are scrubbed in memory; a larger one holding a secret is replaced by
/// a note (it cannot be rewritten without holding it whole).
const MAX_SCRUB: u64 = 64 << 20;

/// Stages `sources` (files and directories) into `dir`, side by side under their own names:
/// hard links where the filesystem allows, copies elsewhere. Symlinks inside a directory are
/// skipped (what they point at is not the workflow's to give). Staging twice is harmless.
pub(crate) fn stage(dir: &Path, sources: &[PathBuf]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for source in sources {
        let Some(name) = source.file_name() else {
            continue;
        };
        place(source, &dir.join(name), 0)?;
    }
    Ok(())
}

fn place(source: &Path, target: &Path, depth: usize) -> io::Result<()> {
    let meta = fs::metadata(source)?;
    if meta.is_dir() {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        match fs::create_dir(target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            if entry.file_type()?.is_symlink() {
                continue;
            }
            place(&entry.path(), &target.join(entry.file_name()), depth + 1)?;
        }
        return Ok(());
    }
    if target.exists() {
        return Ok(());
    }
    if fs::hard_link(source, target).is_err() {
        fs::copy(source, target)?;
    }
    Ok(())
}

/// Whether `dir` has nothing in it (the common case: checked without leaving the thread).
pub(crate) fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// The regular files under `dir` (symlinks are neither followed nor listed), sorted by path,
/// at most [`MAX_ARTIFACTS`] of them. When the run has handed out secrets, every file is
/// scrubbed of them first (listed or not), and every name holding one is renamed.
pub(crate) fn artifacts(dir: &Path, redactor: &Redactor) -> Vec<Artifact> {
    let scrubbing = !redactor.is_empty();
    let mut listed = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((parent, prefix)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if !scrubbing && listed.len() >= MAX_ARTIFACTS {
                break;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let mut name = entry.file_name().to_string_lossy().into_owned();
            let mut path = entry.path();
            if scrubbing && let std::borrow::Cow::Owned(clean) = redactor.text(&name) {
                let renamed = parent.join(&clean);
                if fs::rename(&path, &renamed).is_ok() {
                    (name, path) = (clean, renamed);
                }
            }
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                stack.push((path, relative));
            } else if kind.is_file() {
                let mut bytes = entry.metadata().map_or(0, |m| m.len());
                match scrub(&path, bytes, redactor) {
                    Ok(Some(size)) => bytes = size,
                    Ok(None) => {}
                    Err(e) => tracing::warn!("could not scrub artifact `{}`: {e}", path.display()),
                }
                if listed.len() < MAX_ARTIFACTS {
                    listed.push(Artifact {
                        path: relative,
                        bytes,
                    });
                }
            }
        }
    }
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    listed
}

/// Rewrites `path` without secret values, if it holds any; returns its new size then.
fn scrub(path: &Path, size: u64, redactor: &Redactor) -> io::Result<Option<u64>> {
    if redactor.is_empty() {
        return Ok(None);
    }
    if size <= MAX_SCRUB {
        let bytes = fs::read(path)?;
        return match redactor.bytes(&bytes) {
            Some(clean) => {
                fs::write(path, &clean)?;
                Ok(Some(clean.len() as u64))
            }
            None => Ok(None),
        };
    }
    match holds_secret(path, redactor)? {
        Some(name) => {
            let note = format!(
                "[redacted:{name}] this file held a secret value and was larger than {} MiB, \
                 so it was removed whole\n",
                MAX_SCRUB >> 20
            );
            fs::write(path, &note)?;
            Ok(Some(note.len() as u64))
        }
        None => Ok(None),
    }
}

/// The name of a secret whose value is in the file, read in chunks.
fn holds_secret(path: &Path, redactor: &Redactor) -> io::Result<Option<String>> {
    let longest = redactor.longest();
    let mut file = fs::File::open(path)?;
    let mut window: Vec<u8> = Vec::with_capacity((1 << 20) + longest);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        window.extend_from_slice(&chunk[..n]);
        if let Some(name) = redactor.find(&window) {
            return Ok(Some(name));
        }
        let keep = longest.saturating_sub(1).min(window.len());
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_staged_by_name_and_symlinks_inside_directories_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("docs/deep")).expect("mkdir");
        fs::write(src.join("a.txt"), "a").expect("write");
        fs::write(src.join("docs/deep/b.txt"), "b").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("docs/passwd")).expect("symlink");
        let staged = tmp.path().join("staged");
        let sources = [src.join("a.txt"), src.join("docs")];
        stage(&staged, &sources).expect("staged");
        stage(&staged, &sources).expect("staged again");
        assert_eq!(
            fs::read_to_string(staged.join("a.txt")).ok().as_deref(),
            Some("a")
        );
        assert_eq!(
            fs::read_to_string(staged.join("docs/deep/b.txt"))
                .ok()
                .as_deref(),
            Some("b")
        );
        assert!(!staged.join("docs/passwd").exists());
    }

    #[test]
    fn artifacts_are_listed_and_scrubbed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        fs::create_dir_all(dir.join("out")).expect("mkdir");
        fs::write(dir.join("out/report.txt"), "token=hunter2-abc;").expect("write");
        fs::write(dir.join("clean.txt"), "nothing here").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).expect("symlink");
        let redactor = Redactor::default();
        assert_eq!(
            artifacts(dir, &redactor),
            [
                Artifact {
                    path: "clean.txt".into(),
                    bytes: 12
                },
                Artifact {
                    path: "out/report.txt".into(),
                    bytes: 18
                },
            ]
        );
        redactor.add("api-token", "hunter2-abc");
        fs::write(dir.join("named-hunter2-abc.txt"), "x").expect("write");
        let listed = artifacts(dir, &redactor);
        let report = fs::read_to_string(dir.join("out/report.txt")).expect("read");
        assert_eq!(report, "token=[redacted:api-token];");
        assert_eq!(listed[2].bytes, report.len() as u64);
        assert_eq!(listed[1].path, "named-[redacted:api-token].txt");
        assert!(dir.join("named-[redacted:api-token].txt").is_file());
    }

    #[test]
    fn secrets_are_found_across_chunk_boundaries() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("big");
        let mut bytes = vec![b'x'; (1 << 20) - 3];
        bytes.extend_from_slice(b"hunter2-abc");
        bytes.extend_from_slice(&[b'y'; 100]);
        fs::write(&path, &bytes).expect("write");
        let redactor = Redactor::default();
        redactor.add("api-token", "hunter2-abc");
        assert_eq!(
            holds_secret(&path, &redactor).ok().flatten().as_deref(),
            Some("api-token")
        );
        fs::write(&path, vec![b'z'; 3 << 20]).expect("write");
        assert_eq!(holds_secret(&path, &redactor).ok().flatten(), None);
    }
}
