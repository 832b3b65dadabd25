//! Text a guest controls, made safe to show and cheap to keep.
//!
//! - [`inert`]: control characters (C0 and C1, so escape sequences, carriage returns,
//!   backspaces, OSC, CSI) written visibly as `\x1b`, `\r`, `\u{9b}`, so that no guest text can
//!   drive the terminal it is printed on;
//! - [`truncate`]: a prefix of at most so many bytes, cut on a character boundary.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` would be interpreted by a terminal rather than shown: C0 controls (but tab),
/// DEL, and C1 controls.
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

/// `text` with every control character written visibly (`\x1b`, `\r`, `\n`, `\u{9b}`):
/// printable as-is on any terminal. Borrowed when there is nothing to escape.
pub fn inert(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_control(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert!(matches!(
            inert("plain text, tabs\tand ünïcode"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            inert("\x1b[2J\x1b]0;title\x07\x1b]52;c;aGk=\x07"),
            "\\x1b[2J\\x1b]0;title\\x07\\x1b]52;c;aGk=\\x07"
        );
        assert_eq!(inert("a\rb\x08c\x7f\n"), "a\\rb\\x08c\\x7f\\n");
        assert_eq!(inert("csi \u{9b}31m"), "csi \\u{9b}31m");
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("hi", 10), "hi");
    }
}
