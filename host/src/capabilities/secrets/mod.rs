//! Secrets: where they are kept ([`SecretBackend`]), and the per-run [`Credential`] under which
//! guests read them.
//!
//! Owns the backends (environment variables and files now; the trait leaves room for Vault,
//! whose tokens map onto credentials) and the credential lifecycle: issued when a run starts,
//! renewed while it lives, revoked when it ends or its error budget runs out. Which agent may
//! read which secret is the tenant's policy; redaction of values is the bus's [`Redactor`].
//!
//! [`Redactor`]: crate::redact::Redactor

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

mod credential;
mod host;

pub use self::credential::Credential;
pub(crate) use self::credential::Lease;
pub(crate) use self::host::{SecretAccess, SecretsView, add_to_linker};
use crate::model::events::CredentialAction;

/// A boxed future, as returned by [`SecretBackend::read`]: the value (`None` if there is no
/// such secret), or why the backend could not answer.
pub type SecretFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Where secrets are kept. Every secret belongs to a tenant: two tenants' `api-token` are two
/// secrets.
///
/// ```
/// use wasm_orch::secrets::{SecretBackend, SecretFuture};
///
/// /// Secrets from a map of (tenant, name) (for tests).
/// struct Fixed(std::collections::HashMap<(String, String), String>);
///
/// impl SecretBackend for Fixed {
///     fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
///         let value = self.0.get(&(tenant.to_owned(), name.to_owned())).cloned();
///         Box::pin(async move { Ok(value) })
///     }
/// }
/// ```
pub trait SecretBackend: Send + Sync + 'static {
    /// The value of tenant `tenant`'s secret `name`, or `None` if there is none.
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_>;

    /// A run's credential was issued, renewed or revoked. A backend with leases of its own
    /// (Vault: a token per run) mints, renews or revokes it here; it is called on the
    /// runtime's threads and must not block. Default: nothing to do.
    fn credential(&self, _credential: &Credential, _action: CredentialAction) {}

    /// A directory on this host that holds secrets (a file backend's): no workflow may give
    /// its tasks a file from inside it. Default: none.
    fn directory(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A shared secret backend (`Debug` without showing anything).
#[derive(Clone)]
pub(crate) struct Backend(pub(crate) Arc<dyn SecretBackend>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBackend")
    }
}

/// Secrets from environment variables: tenant `acme`'s `api-token` is
/// `$WASM_ORCH_SECRET_ACME__API_TOKEN` (the prefix is configurable). The default backend.
#[derive(Debug, Clone)]
pub struct EnvSecrets {
    prefix: String,
}

impl Default for EnvSecrets {
    fn default() -> Self {
        Self::with_prefix("WASM_ORCH_SECRET_")
    }
}

impl EnvSecrets {
    /// Secrets from variables named `<prefix><TENANT>__<NAME>`: the tenant and the secret name
    /// upper-cased, each `-` written `_`. So that no two tenants (or names) can share a
    /// variable, the mapping is one-to-one: it takes only names of lowercase letters, digits
    /// and single hyphens (`acme-eu`, `api-token`); any other name (`acme_eu`, `acme.eu`,
    /// `ACME-EU`, `a--b`) is refused with an explanation, since it would share a variable
    /// with another name. ([`FileSecrets`] takes every plain file name.)
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The variable of `tenant`'s `name`, or why the pair has none.
    pub(crate) fn variable(&self, tenant: &str, name: &str) -> Result<String, String> {
        Ok(format!(
            "{}{}__{}",
            self.prefix,
            env_part("tenant", tenant)?,
            env_part("secret", name)?
        ))
    }
}

/// `text` as part of an environment variable: upper case, `-` as `_`; only for text that no
/// other text maps to the same way.
fn env_part(what: &str, text: &str) -> Result<String, String> {
    let canonical = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if canonical {
        Ok(text.to_ascii_uppercase().replace('-', "_"))
    } else {
        Err(format!(
            "{what} name `{}` has no environment variable of its own: variables are upper case \
             with `_` for `-`, so only lowercase letters, digits and single hyphens map one to \
             one (another name would share its variable); use the file backend \
             (`--secrets-dir`) for it, or rename it",
            crate::model::text::inert(crate::model::text::truncate(text, 128))
        ))
    }
}

impl SecretBackend for EnvSecrets {
    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
        let value = self
            .variable(tenant, name)
            .map(|var| std::env::var(var).ok());
        Box::pin(async move { value })
    }
}

/// The largest secret a file may hold.
const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Secrets from files: tenant `acme`'s `api-token` is the content of `<dir>/acme/api-token`
/// (one trailing newline removed). Names that are not plain file names are never found.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SecretBackend for FileSecrets {
    fn directory(&self) -> Option<&std::path::Path> {
        Some(&self.dir)
    }

    fn read(&self, tenant: &str, name: &str) -> SecretFuture<'_> {
        let plain = crate::config::is_valid_name(tenant) && crate::config::is_valid_name(name);
        let path = self.dir.join(tenant).join(name);
        Box::pin(async move {
            if !plain {
                return Ok(None);
            }
            let read = tokio::task::spawn_blocking(move || {
                crate::config::read_text(&path, MAX_SECRET_BYTES).map_err(|e| (path, e))
            })
            .await
            .map_err(|e| format!("reading a secret: {e}"))?;
            match read {
                Ok(text) => Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned())),
                Err((_, e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err((path, e)) => Err(format!("cannot read `{}`: {e}", path.display())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_secrets_refuse_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("acme")).expect("mkdir");
        std::fs::write(dir.path().join("acme/token"), "abc\n").expect("write");
        let files = FileSecrets::new(dir.path());
        assert_eq!(files.read("acme", "token").await, Ok(Some("abc".into())));
        assert_eq!(
            files.read("other", "token").await,
            Ok(None),
            "another tenant's"
        );
        assert_eq!(files.read("acme", "missing").await, Ok(None));
        assert_eq!(files.read("acme", "../acme/token").await, Ok(None));
        assert_eq!(files.read("..", "acme").await, Ok(None));
    }

    #[test]
    fn environment_variables_are_one_to_one() {
        let env = EnvSecrets::default();
        assert_eq!(
            env.variable("acme-eu", "api-token").as_deref(),
            Ok("WASM_ORCH_SECRET_ACME_EU__API_TOKEN")
        );
        // Every other spelling of that tenant would share its variable: refused, and why.
        for tenant in [
            "acme_eu", "acme.eu", "ACME-EU", "Acme-eu", "acme--eu", "-acme", "",
        ] {
            let refused = env.variable(tenant, "api-token");
            assert!(
                refused.as_ref().is_err_and(|why| why.contains("one to")),
                "{tenant}: {refused:?}"
            );
        }
        assert!(env.variable("acme", "api_token").is_err());
        assert!(
            env.variable("acme", "a--b").is_err(),
            "`__` is the separator"
        );
        assert!(env.variable("a-", "b").is_err());
    }
}
