//! Problems found in a workflow file, each with the file, the line and a fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The text of a workflow file, kept so that problems can be shown in context.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

impl Source {
    pub(crate) fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            text: text.into(),
        })
    }

    /// A problem at `span` (byte offsets into the file).
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let end = span.end.clamp(start, line_end);
        let width = self.text[start..end].chars().count().max(1);
        let (excerpt, marker_at, width) = excerpt(line_text, column - 1, width);
        Diagnostic {
            file: self.path.clone(),
            location: Some(Location {
                line,
                column,
                excerpt,
                marker_at,
                width,
            }),
            message: message.into(),
            help: None,
        }
    }

    /// A problem with the file as a whole.
    pub(crate) fn error_in_file(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.clone(),
            location: None,
            message: message.into(),
            help: None,
        }
    }
}

/// One problem in a workflow file: what is wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    file: PathBuf,
    location: Option<Location>,
    message: String,
    help: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    line: usize,
    column: usize,
    /// The line as shown: inert, and a window of it around the problem if it is long.
    excerpt: String,
    /// Characters of `excerpt` before the marker.
    marker_at: usize,
    width: usize,
}

/// The most characters of a line a diagnostic shows (a file's line can be megabytes long).
const WINDOW: usize = 120;

/// What a diagnostic shows of `line` for a problem at character `at`, `width` characters
/// wide: the line, or a window of it (`…` where it is cut), control characters escaped; and
/// where the marker goes in it, and how wide it is.
fn excerpt(line: &str, at: usize, width: usize) -> (String, usize, usize) {
    let chars = line.chars().count();
    let (from, to) = if chars <= WINDOW {
        (0, chars)
    } else {
        let from = at.saturating_sub(WINDOW / 3).min(chars - WINDOW);
        (from, from + WINDOW)
    };
    let piece = |a: usize, b: usize| -> String {
        let text: String = line.chars().skip(a).take(b.saturating_sub(a)).collect();
        crate::model::text::inert(&text).into_owned()
    };
    let before = piece(from, at.clamp(from, to));
    let marked = piece(at.clamp(from, to), (at + width).clamp(from, to));
    let after = piece((at + width).clamp(from, to), to);
    let head = if from > 0 { "…" } else { "" };
    let tail = if to < chars { "…" } else { "" };
    let marker_at = head.chars().count() + before.chars().count();
    let width = marked.chars().count().max(1);
    (
        format!("{head}{before}{marked}{after}{tail}"),
        marker_at,
        width,
    )
}

impl Diagnostic {
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The workflow file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line of the problem, if it has one.
    pub fn line(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.line)
    }

    /// 1-based column of the problem, if it has one.
    pub fn column(&self) -> Option<usize> {
        self.location.as_ref().map(|l| l.column)
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How to fix it.
    pub fn fix(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// On one line, without the file: what is wrong, the text it is about and the fix (for
    /// text that is no file, such as a planner's plan).
    pub(crate) fn brief(&self) -> String {
        let message = crate::model::text::inert(crate::model::text::truncate(&self.message, 512));
        let mut line = message.into_owned();
        if let Some(loc) = &self.location {
            line.push_str(&format!(" (at `{}`)", loc.excerpt.trim()));
        }
        if let Some(help) = &self.help {
            line.push_str(&format!("; {help}"));
        }
        line
    }
}

impl fmt::Display for Diagnostic {
    /// Rendered like a compiler error: message, `file:line:column`, the line, a marker, the fix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message quotes the file; the file can hold anything.
        let message = crate::model::text::truncate(&self.message, 2048);
        let cut = if message.len() < self.message.len() {
            "…"
        } else {
            ""
        };
        writeln!(f, "error: {}{cut}", crate::model::text::inert(message))?;
        match &self.location {
            Some(loc) => {
                let number = loc.line.to_string();
                let pad = " ".repeat(number.len());
                writeln!(
                    f,
                    "{pad}--> {}:{}:{}",
                    self.file.display(),
                    loc.line,
                    loc.column
                )?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{number} | {}", loc.excerpt)?;
                let indent: String = loc
                    .excerpt
                    .chars()
                    .take(loc.marker_at)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "{pad} | {indent}{}", "^".repeat(loc.width))?;
                if let Some(help) = &self.help {
                    write!(f, "\n{pad} = help: {help}")?;
                }
            }
            None => {
                write!(f, "  --> {}", self.file.display())?;
                if let Some(help) = &self.help {
                    write!(f, "\n   = help: {help}")?;
                }
            }
        }
        Ok(())
    }
}

/// The most problems a message shows (all of them are in [`Diagnostics::iter`]).
const SHOWN: usize = 20;

/// Every problem found in a workflow file (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub(crate) Vec<Diagnostic>);

impl Diagnostics {
    /// The problems, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > SHOWN {
            write!(
                f,
                "\n\n{} problems found; the first {SHOWN} are shown (fix them and check again)",
                self.0.len()
            )?;
        } else if self.0.len() > 1 {
            write!(f, "\n\n{} problems found", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_the_line_and_column_of_a_span() {
        let src = Source::new("w.toml", "[workflow]\nname = \"x\"\nagent = \"mull\"\n");
        let start = src.text.find("\"mull\"").expect("present");
        let d = src
            .error(start..start + 6, "unknown agent `mull`")
            .help("declare it");
        assert_eq!(d.line(), Some(3));
        assert_eq!(d.column(), Some(9));
        let shown = d.to_string();
        assert!(shown.contains("--> w.toml:3:9"), "{shown}");
        assert!(shown.contains("3 | agent = \"mull\""), "{shown}");
        assert!(shown.contains("  |         ^^^^^^"), "{shown}");
        assert!(shown.contains("= help: declare it"), "{shown}");
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_problem_and_inert() {
        let line = format!("on = [{}\u{1b}[31m\"bad\"]", "\"x\", ".repeat(10_000));
        let src = Source::new("p.toml", format!("[defaults]\n{line}\n"));
        let start = src.text.find("\"bad\"").expect("present");
        let shown = src.error(start..start + 5, "not an outcome").to_string();
        assert!(shown.len() < 1000, "{} bytes: {shown}", shown.len());
        assert!(shown.contains("2 | …"), "{shown}");
        assert!(shown.contains("\\x1b[31m\"bad\"]"), "escaped: {shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
        // The marker is under the problem.
        let lines: Vec<&str> = shown.lines().collect();
        let text = lines
            .iter()
            .find(|l| l.starts_with("2 | "))
            .expect("the line");
        let marker = lines.iter().find(|l| l.contains('^')).expect("the marker");
        let col = |l: &str, pat: &str| l.find(pat).map(|i| l[..i].chars().count());
        assert_eq!(col(text, "\"bad\""), col(marker, "^^^^^"), "{shown}");
        let column = line.find("\"bad").map(|i| i + 1);
        assert_eq!(src.error(start..start + 5, "m").column(), column);
    }
}
