//! The error an agent returns instead of an output.

use std::fmt;

use crate::wit::wasm_orch::agent::types::AgentError;

/// Why an agent produced no output; the host records it as the task's outcome.
///
/// Any [`std::error::Error`] converts into a [`ErrorKind::Failed`] error, so `?` works on
/// fallible calls. Use the constructors to say more precisely what went wrong: the host retries
/// `failed` and `unavailable`, never `invalid-input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The kind of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is wrong; retrying will not help.
    InvalidInput,
    /// The work failed; another attempt may succeed.
    Failed,
    /// Something the agent needs is unavailable right now.
    Unavailable,
}

impl Error {
    /// The input is wrong; retrying will not help.
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The work failed; another attempt may succeed.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// Something the agent needs is unavailable right now.
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_wit(self) -> AgentError {
        match self.kind {
            ErrorKind::InvalidInput => AgentError::InvalidInput(self.message),
            ErrorKind::Failed => AgentError::Failed(self.message),
            ErrorKind::Unavailable => AgentError::Unavailable(self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Failed => "failed",
            ErrorKind::Unavailable => "unavailable",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

// `Error` deliberately does not implement `std::error::Error`, so this blanket conversion can
// exist (the same trick as `anyhow`).
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::failed(message)
    }
}
