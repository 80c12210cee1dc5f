//! Who may do what: bearer tokens for ingest and the admin endpoints
//! ([`Tokens`]), and JWTs for SSE subscriptions ([`jwt`]).
//!
//! Tokens are secrets ([`crate::config::Secret`]): they never appear in
//! `Debug` output, logs or responses. A presented token is compared by its
//! SHA-256 digest, so the comparison's timing says nothing about the
//! accepted tokens.

pub mod jwt;

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::Secret;

/// The token in an `Authorization: Bearer <token>` header, if any.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A set of accepted bearer tokens, kept as digests.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.digests.len())
    }
}

impl Tokens {
    /// The tokens of `listed` and, when given, of `file` (one token a line;
    /// blank lines and lines starting with `#` are skipped). `None` when
    /// there are none at all: no token is asked for.
    pub fn load(listed: &[Secret], file: Option<&Path>) -> anyhow::Result<Option<Self>> {
        use anyhow::Context as _;
        let mut digests: Vec<[u8; 32]> = listed.iter().map(|t| digest(t.expose())).collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            let from_file: Vec<[u8; 32]> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(digest)
                .collect();
            anyhow::ensure!(
                !from_file.is_empty(),
                "the token file {} holds no token",
                path.display()
            );
            digests.extend(from_file);
        }
        Ok((!digests.is_empty()).then_some(Self { digests }))
    }

    /// Whether `token` is one of the accepted tokens.
    pub fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        // Every digest is compared, so the time taken does not say which.
        self.digests
            .iter()
            .fold(false, |found, d| found | (*d == presented))
    }

    /// Whether the request's `Authorization: Bearer` token is accepted.
    pub fn allow(&self, headers: &hyper::HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.accepts(t))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Problems with a list of tokens at `at` (an empty one is refused: an
/// unset variable must not turn into a token anyone can send).
pub(crate) fn token_problems(at: &str, tokens: &[Secret]) -> Vec<String> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_empty())
        .map(|(i, _)| format!("{at}[{i}]: is empty (is its variable set?)"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn only_a_listed_token_is_accepted() {
        let tokens = Tokens::load(&[Secret::new("t1"), Secret::new("t2")], None)
            .unwrap()
            .unwrap();
        assert!(tokens.allow(&headers("Bearer t2")));
        assert!(tokens.allow(&headers("bearer t1")));
        assert!(!tokens.allow(&headers("Bearer t3")));
        assert!(!tokens.allow(&headers("Basic t1")));
        assert!(!tokens.allow(&hyper::HeaderMap::new()));
        assert_eq!(format!("{tokens:?}"), "Tokens(2 accepted)");
        assert!(Tokens::load(&[], None).unwrap().is_none());
    }
}
