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
        Diagnostic {
            file: self.path.clone(),
            location: Some(Location {
                line,
                column,
                line_text: line_text.to_owned(),
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
    line_text: String,
    width: usize,
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
}

impl fmt::Display for Diagnostic {
    /// Rendered like a compiler error: message, `file:line:column`, the line, a marker, the fix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
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
                writeln!(f, "{number} | {}", loc.line_text)?;
                let indent: String = loc
                    .line_text
                    .chars()
                    .take(loc.column - 1)
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
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
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
}
