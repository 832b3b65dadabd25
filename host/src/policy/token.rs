//! API tokens: made from 256 random bits, stored only as their SHA-256 (a token is not a
//! password people choose: it has all the entropy a hash needs, so no slow hash is needed),
//! compared in constant time.

use sha2::{Digest, Sha256};

/// What every token starts with, so that a leaked one is recognisable (secret scanners).
const PREFIX: &str = "wo_";

/// A new API token: `wo_` and 64 hexadecimal digits of the operating system's randomness.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("{PREFIX}{}", to_hex(&bytes)))
}

/// A token's SHA-256 in hex: what a policy's `[[tokens]]` entry holds.
pub fn token_sha256(token: &str) -> String {
    to_hex(&hash(token))
}

pub(crate) fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let token = new_token().expect("randomness");
        assert!(token.starts_with("wo_") && token.len() == 67);
        assert_ne!(token, new_token().expect("randomness"));
        let text = format!(
            "[tenants.acme]\n[[tokens]]\ntenant = \"acme\"\nsha256 = \"{}\"\nname = \"ci\"\n",
            token_sha256(&token)
        );
        assert!(!text.contains(&token[3..]), "the file holds no token");
        let policy = Policy::parse(&text, "policy.toml").expect("valid");
        assert!(policy.has_tokens());
        assert_eq!(policy.token_tenant(&token), Some("acme"));
        assert_eq!(policy.token_tenant("wo_guess"), None);
        assert_eq!(policy.token_tenant(""), None);
    }

    #[test]
    fn a_workers_token_is_not_a_tenants_and_the_other_way_round() {
        let (worker, any, tenant) = ("wo_w", "wo_any", "wo_t");
        let text = format!(
            "[[tokens]]\nworker = true\npool = \"gpu\"\nsha256 = \"{}\"\n\
             [[tokens]]\nworker = true\nsha256 = \"{}\"\n\
             [[tokens]]\ntenant = \"acme\"\nsha256 = \"{}\"\n",
            token_sha256(worker),
            token_sha256(any),
            token_sha256(tenant)
        );
        let policy = Policy::parse(&text, "policy.toml").expect("valid");
        assert_eq!(policy.token_worker(worker), Some(Some("gpu")));
        assert_eq!(policy.token_worker(any), Some(None));
        assert_eq!(
            policy.token_tenant(worker),
            None,
            "a worker acts for no tenant"
        );
        assert_eq!(policy.token_worker(tenant), None, "a tenant leases nothing");
        assert_eq!(policy.token_tenant(tenant), Some("acme"));
        for (entry, expected) in [
            ("tenant = \"acme\"\nworker = true\n", "says both"),
            ("", "says neither whose it is"),
            (
                "tenant = \"acme\"\npool = \"gpu\"\n",
                "`pool` is for a worker's token",
            ),
        ] {
            let text = format!("[[tokens]]\n{entry}sha256 = \"{}\"\n", token_sha256("x"));
            let shown = Policy::parse(&text, "p.toml")
                .expect_err("refused")
                .to_string();
            assert!(shown.contains(expected), "{entry:?}: {shown}");
            assert!(shown.contains("p.toml:"), "the file and line: {shown}");
        }
    }

    #[test]
    fn a_bad_token_entry_names_its_line() {
        let text = "[[tokens]]\ntenant = \"acme\"\nsha256 = \"abc\"\n";
        let err = Policy::parse(text, "policy.toml").expect_err("invalid");
        let shown = err.to_string();
        assert!(shown.contains("policy.toml:3"), "{shown}");
        assert!(shown.contains("64 hexadecimal digits"), "{shown}");
        let twice = format!(
            "[[tokens]]\ntenant = \"a\"\nsha256 = \"{h}\"\n[[tokens]]\ntenant = \"b\"\nsha256 = \"{h}\"\n",
            h = token_sha256("x")
        );
        let shown = Policy::parse(&twice, "p.toml")
            .expect_err("twice")
            .to_string();
        assert!(shown.contains("listed twice"), "{shown}");
    }
}
