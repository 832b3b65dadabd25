//! What every configuration file shares: sources kept for diagnostics (file, line, fix), and
//! the units people write (`"64MiB"`, `"5s"`).

mod check;
mod diagnostic;
mod read;
mod units;

pub(crate) use self::check::{Checker, is_valid_name, parse_toml};
pub(crate) use self::diagnostic::Source;
pub use self::diagnostic::{Diagnostic, Diagnostics};
pub(crate) use self::read::{MAX_CONFIG_BYTES, read_text};
pub(crate) use self::units::{format_size, parse_duration, parse_size};
