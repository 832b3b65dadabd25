//! Secrets the tenant's policy grants this agent, read under the run's credential.
//!
//! The host redacts every value read here from everything the task emits or returns (logs,
//! progress, output, errors, blackboard values, files): use a secret, for example in a tool
//! call's headers, but there is no way to smuggle it out.

use std::fmt;

use crate::wit::wasm_orch::agent::secrets::SecretError as WitSecretError;

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// It does not exist, or is not granted to this agent.
    Denied(String),
    /// The run's credential has expired or been revoked.
    Revoked(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "secret denied: {m}"),
            Self::Revoked(m) => write!(f, "credential revoked: {m}"),
        }
    }
}

impl std::error::Error for SecretError {}

/// The value of secret `name`.
pub fn get(name: &str) -> Result<String, SecretError> {
    crate::host::secret(name).map_err(|e| match e {
        WitSecretError::Denied(m) => SecretError::Denied(m),
        WitSecretError::Revoked(m) => SecretError::Revoked(m),
    })
}
