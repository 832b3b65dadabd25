//! Checking a parsed file: collects every problem with its place and fix, and turns the values
//! people write (names, sizes, durations) into typed ones.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;

use super::{Diagnostic, Diagnostics, Source, parse_duration, parse_size};

/// Parses a whole file as `T`; a syntax error or an unknown key is one diagnostic.
pub(crate) fn parse_toml<T: DeserializeOwned>(source: &Source) -> Result<T, Diagnostics> {
    toml::from_str(&source.text).map_err(|e| {
        let message = e.message().trim().to_owned();
        let help = if message.starts_with("unknown field") {
            "remove the key or fix its spelling (the message lists the keys allowed here)"
        } else if message.starts_with("missing field") {
            "add the missing key to this table"
        } else {
            "fix the TOML syntax at this place"
        };
        let d = match e.span() {
            Some(span) => source.error(span, message),
            None => source.error_in_file(message),
        };
        Diagnostics(vec![d.help(help)])
    })
}

/// Collects the problems of one file.
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) source: Arc<Source>,
    pub(crate) errors: Vec<Diagnostic>,
}

impl Checker {
    pub(crate) fn new(source: Arc<Source>) -> Self {
        Self {
            source,
            errors: Vec::new(),
        }
    }

    pub(crate) fn err(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = self.source.error(span, message).help(help);
        self.errors.push(d);
    }

    pub(crate) fn err_in_file(&mut self, message: impl Into<String>, help: impl Into<String>) {
        let d = self.source.error_in_file(message).help(help);
        self.errors.push(d);
    }

    /// Names (of tasks, agents, tenants, ...) are safe as file names and keys.
    pub(crate) fn name(&mut self, name: &Spanned<String>, what: &str) {
        if !is_valid_name(name.get_ref()) {
            self.err(
                name.span(),
                format!("`{}` is not a valid {what}", name.get_ref()),
                "use 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_`",
            );
        }
    }

    /// A size: a number of bytes, or a string like `"64MiB"`.
    pub(crate) fn size(&mut self, value: &Spanned<toml::Value>) -> Option<u64> {
        let parsed = match value.get_ref() {
            toml::Value::Integer(i) => {
                u64::try_from(*i).map_err(|_| "a size cannot be negative".to_owned())
            }
            toml::Value::String(s) => parse_size(s),
            other => Err(format!(
                "a size is a number of bytes or a string, not {}",
                article(other.type_str())
            )),
        };
        self.ok_or_report(
            value.span(),
            parsed,
            "write a size like \"64MiB\" or a number of bytes",
        )
    }

    /// A duration: a string with a unit, like `"5s"`; at most `max`.
    pub(crate) fn duration(
        &mut self,
        value: &Spanned<toml::Value>,
        max: Duration,
    ) -> Option<Duration> {
        let parsed = match value.get_ref() {
            toml::Value::String(s) => parse_duration(s),
            other => Err(format!(
                "a duration is a string with a unit, not {}",
                article(other.type_str())
            )),
        }
        .and_then(|d| {
            if d.is_zero() || d > max {
                Err(format!(
                    "must be more than zero and at most {}",
                    humantime::format_duration(max)
                ))
            } else {
                Ok(d)
            }
        });
        self.ok_or_report(value.span(), parsed, "write it like \"5s\" or \"250ms\"")
    }

    /// An integer within `range`.
    pub(crate) fn int(
        &mut self,
        value: &Spanned<i64>,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
    ) -> Option<i64> {
        let v = *value.get_ref();
        if range.contains(&v) {
            return Some(v);
        }
        self.err(
            value.span(),
            format!(
                "{what} must be between {} and {}, not {v}",
                range.start(),
                range.end()
            ),
            format!("give a whole number for {what}"),
        );
        None
    }

    /// A fraction between 0 and 1.
    pub(crate) fn fraction(&mut self, value: &Spanned<f64>, what: &str) -> Option<f64> {
        let v = *value.get_ref();
        if (0.0..=1.0).contains(&v) {
            return Some(v);
        }
        self.err(
            value.span(),
            format!("{what} must be between 0 and 1, not {v}"),
            format!("give {what} as a fraction, e.g. 0.2"),
        );
        None
    }

    /// One of `choices`.
    pub(crate) fn choice<'a>(
        &mut self,
        value: &Spanned<String>,
        choices: &[&'a str],
        what: &str,
    ) -> Option<&'a str> {
        let found = choices
            .iter()
            .find(|c| **c == value.get_ref().as_str())
            .copied();
        if found.is_none() {
            self.err(
                value.span(),
                format!("`{}` is not a valid {what}", value.get_ref()),
                format!("use one of: {}", choices.join(", ")),
            );
        }
        found
    }

    fn ok_or_report<T>(
        &mut self,
        span: Range<usize>,
        parsed: Result<T, String>,
        help: &str,
    ) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(span, e, help);
                None
            }
        }
    }

    /// The problems, sorted by place; `Ok` if there are none.
    pub(crate) fn finish(mut self) -> Result<(), Diagnostics> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|d| (d.line(), d.column()));
        Err(Diagnostics(self.errors))
    }
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `a integer` → `an integer`: a TOML type's name with its article.
fn article(type_name: &str) -> String {
    let an = type_name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {type_name}", if an { "an" } else { "a" })
}
