//! Small text helpers shared by the live view and the summary.

use std::io::IsTerminal;

use crate::TaskStatus;

/// ANSI styling, off when stderr is not a terminal or `NO_COLOR` is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    on: bool,
}

impl Style {
    pub(super) fn for_stderr() -> Self {
        Self {
            on: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// No styling at all.
    #[cfg(test)]
    pub(super) fn off() -> Self {
        Self { on: false }
    }

    pub(super) fn for_stdout() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub(super) fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(super) fn status(self, status: TaskStatus) -> String {
        self.in_status_colour(status, status.as_str())
    }

    /// `text`, in the colour of `status`.
    pub(super) fn in_status_colour(self, status: TaskStatus, text: &str) -> String {
        let code = match status {
            TaskStatus::Succeeded | TaskStatus::Cached => "32",
            TaskStatus::Running | TaskStatus::Retrying | TaskStatus::Iterated => "33",
            TaskStatus::Pending | TaskStatus::Ready | TaskStatus::Skipped => "2",
            TaskStatus::Cancelled => "35",
            _ => "31",
        };
        self.paint(code, text)
    }

    pub(super) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(super) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// A symbol for a status, for the live view.
pub(super) fn symbol(status: TaskStatus, tick: usize) -> &'static str {
    const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    match status {
        TaskStatus::Pending => "·",
        TaskStatus::Ready => "○",
        TaskStatus::Running => SPINNER[tick % SPINNER.len()],
        TaskStatus::Retrying => "↻",
        TaskStatus::Iterated => "⟳",
        TaskStatus::Succeeded => "✔",
        TaskStatus::Cached => "↺",
        TaskStatus::Skipped => "↷",
        TaskStatus::Cancelled => "⊘",
        _ => "✘",
    }
}

/// Milliseconds, readably: `850 ms`, `1.25 s`, `2m 03s`.
pub(super) fn duration_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0) as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// A count with a metric suffix: `950`, `12.3k`, `4.56M`, `1.2G`.
pub(super) fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// Bytes in binary units: `64.0 MiB`.
pub(super) fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// `text` cut to `width` characters (with an ellipsis), on one line.
/// How long ago, roughly: `12s`, `5m`, `3h`, `2d`.
pub(super) fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The first `max` items, joined with `, `, and how many more there are.
pub(super) fn listed<'a>(items: impl ExactSizeIterator<Item = &'a str>, max: usize) -> String {
    let total = items.len();
    let mut text = items.take(max).collect::<Vec<_>>().join(", ");
    if total > max {
        text.push_str(&format!(" and {} more", total - max));
    }
    text
}

pub(super) fn fit(text: &str, width: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `line` cut to at most `width` visible characters; ANSI escape sequences are kept and take
/// no room. A line that fits the terminal never wraps, so the live view can redraw in place.
pub(super) fn clip(line: &str, width: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut visible = 0;
    let mut chars = line.chars().peekable();
    let mut cut = false;
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            // Copy the whole sequence: ESC [ ... final byte.
            for c in chars.by_ref() {
                out.push(c);
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        if visible == width {
            cut = true;
            break;
        }
        out.push(c);
        visible += 1;
    }
    if cut && out.contains('\x1b') {
        out.push_str("\x1b[0m");
    }
    out
}

/// A progress bar of `width` cells.
pub(super) fn bar(fraction: f32, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f32).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// The terminal's width and height, or a default.
pub(super) fn terminal_size() -> (usize, usize) {
    terminal_size::terminal_size_of(std::io::stderr())
        .map(|(w, h)| (w.0 as usize, h.0 as usize))
        .unwrap_or((100, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(duration_ms(0.25), "250 µs");
        assert_eq!(duration_ms(850.0), "850 ms");
        assert_eq!(duration_ms(1250.0), "1.25 s");
        assert_eq!(duration_ms(123_000.0), "2m 03s");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(clip("abcdef", 4), "abcd");
        assert_eq!(clip("\x1b[32mabcdef\x1b[0m", 3), "\x1b[32mabc\x1b[0m");
        assert_eq!(clip("\x1b[1mab\x1b[0m", 5), "\x1b[1mab\x1b[0m");
    }
}
