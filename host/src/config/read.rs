//! Reading a configuration file, bounded: a regular file of at most so many bytes, as UTF-8.
//! A pipe, a device, or a file larger than any configuration is refused with the reason,
//! before anything is read past the limit.

use std::io::{self, Read};
use std::path::Path;

/// The largest workflow, registry or policy file (a 100,000-task workflow is a few MiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The text of `path`, if it is a regular file of at most `max` bytes of UTF-8.
pub(crate) fn read_text(path: &Path, max: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a directory, a pipe or a device)",
        ));
    }
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} bytes, more than the {max} it may have", meta.len()),
        ));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it grew past the {max} bytes it may have while being read"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_utf8_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "a = 1").expect("write");
        assert_eq!(read_text(&ok, 10).expect("read"), "a = 1");
        assert!(read_text(&ok, 3).is_err(), "too large");
        assert!(read_text(dir.path(), 10).is_err(), "a directory");
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe]).expect("write");
        assert!(read_text(&binary, 10).is_err(), "not UTF-8");
    }
}
