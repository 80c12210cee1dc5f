//! `[sinks.NAME.auth]`: an `sse` sink that serves only clients presenting a
//! JWT, each reading only the stream its token names.
//!
//! The client id comes from a verified claim (`client_claim`, default
//! `sub`), never from the query string, so a token for client A never yields
//! client B's events. The token may come in `Authorization: Bearer`, in
//! `?access_token=` (a browser's `EventSource` cannot set headers), or in a
//! named cookie. `exp` is required and honoured: the connection closes when
//! the token expires, and the client reconnects with a fresh token and
//! `Last-Event-ID`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Secret;

/// `[sinks.NAME.auth]` of an `sse` sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HS256 shared secret (usually `"${SLUICE_JWT_SECRET}"`).
    pub secret: Option<Secret>,
    /// A PEM public key file, for RS256 or ES256 tokens. Relative to the
    /// config file.
    pub public_key: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`); the token's `kid` picks the key.
    /// Relative to the config file.
    pub jwks: Option<PathBuf>,
    /// The accepted algorithms. Default: `["HS256"]` with `secret`,
    /// `["RS256", "ES256"]` with `public_key` or `jwks` (a token is checked
    /// against those of its key's family).
    pub algorithms: Option<Vec<String>>,
    /// The claim that holds the client id.
    #[serde(default = "crate::config::defaults::jwt_client_claim")]
    pub client_claim: String,
    /// A cookie that may carry the token.
    pub cookie: Option<String>,
    /// When set, the token's `aud` must be this.
    pub audience: Option<String>,
    /// When set, the token's `iss` must be this.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "crate::config::defaults::jwt_leeway")]
    pub leeway: crate::config::HumanDuration,
}

impl JwtConfig {
    /// Problems no single key shows, each under `at`.
    pub(crate) fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        let keys = [
            self.secret.is_some(),
            self.public_key.is_some(),
            self.jwks.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            p.push(format!(
                "{at}: set exactly one of `secret` (HS256), `public_key` (a PEM file) and `jwks` (a JWKS file)"
            ));
        }
        if self.secret.as_ref().is_some_and(Secret::is_empty) {
            p.push(format!(
                "{at}.secret: is empty (is its variable set?); an empty secret would accept forged tokens"
            ));
        }
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            p.push(format!("{at}.algorithms: name at least one algorithm"));
        }
        for (i, name) in self.algorithms.iter().flatten().enumerate() {
            if parse_algorithm(name).is_none() {
                p.push(format!(
                    "{at}.algorithms[{i}]: unknown algorithm `{name}`; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                ));
            }
        }
        if self.client_claim.is_empty() {
            p.push(format!("{at}.client_claim: must not be empty"));
        }
        p
    }

    /// Makes the key file paths absolute, against `base`.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.public_key, &mut self.jwks].into_iter().flatten() {
            *path = crate::config::resolve(base, path);
        }
    }
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    name.parse().ok()
}

/// Why a token was refused (the response says so; the token is never
/// echoed or logged).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token in the header, the query or the cookie.
    #[error("a token is required (Authorization: Bearer, ?access_token= or the cookie)")]
    Missing,
    /// The signature, algorithm, expiry or a required claim is wrong.
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The token names no key this sink knows (`kid`).
    #[error("invalid token: no key with its `kid`")]
    UnknownKey,
    /// The claim that names the client is missing or not a string.
    #[error("invalid token: no string claim `{0}`")]
    NoClient(String),
}

/// Verifies tokens for one `sse` sink.
pub struct JwtVerifier {
    keys: Keys,
    validation: Validation,
    client_claim: String,
    cookie: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("client_claim", &self.client_claim)
            .finish_non_exhaustive()
    }
}

enum Keys {
    One(DecodingKey),
    Set(JwkSet),
}

/// A verified token: whose stream it opens, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The client id (the `client_claim`).
    pub client: String,
    /// How long until the token expires.
    pub expires_in: Duration,
}

impl JwtVerifier {
    /// A verifier for `config`, reading its key files.
    pub fn new(config: &JwtConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let (keys, default_algs) = if let Some(secret) = &config.secret {
            let key =
                DecodingKey::from_secret(secret.expose().as_bytes()).context("unusable secret")?;
            (Keys::One(key), vec![Algorithm::HS256])
        } else if let Some(path) = &config.public_key {
            let pem = read(path)?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .or_else(|_| DecodingKey::from_ec_pem(&pem))
                .with_context(|| {
                    format!("{} is not an RSA or EC public key (PEM)", path.display())
                })?;
            (Keys::One(key), vec![Algorithm::RS256, Algorithm::ES256])
        } else if let Some(path) = &config.jwks {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .with_context(|| format!("{} is not a JWKS file", path.display()))?;
            (Keys::Set(set), vec![Algorithm::RS256, Algorithm::ES256])
        } else {
            anyhow::bail!("no key: set `secret`, `public_key` or `jwks`");
        };
        let algorithms = match &config.algorithms {
            Some(names) => names.iter().filter_map(|n| parse_algorithm(n)).collect(),
            None => default_algs,
        };
        let first = *algorithms
            .first()
            .context("`algorithms` names no algorithm")?;
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.leeway = config.leeway.0.as_secs();
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Self {
            keys,
            validation,
            client_claim: config.client_claim.clone(),
            cookie: config.cookie.clone(),
        })
    }

    /// Finds the token in a request: the `Authorization: Bearer` header,
    /// then `access_token` in the query, then the cookie.
    pub fn token_in<'a>(
        &self,
        headers: &'a hyper::HeaderMap,
        query: &'a [(String, String)],
    ) -> Option<&'a str> {
        super::bearer(headers)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == "access_token")
                    .map(|(_, v)| v.as_str())
            })
            .or_else(|| {
                let name = self.cookie.as_deref()?;
                headers
                    .get_all(hyper::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v)
            })
            .filter(|t| !t.is_empty())
    }

    /// Verifies `token`: its signature and algorithm, `exp` (and `aud`,
    /// `iss` when configured), and that it names a client.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let key = match &self.keys {
            Keys::One(key) => key.clone(),
            Keys::Set(set) => {
                let header = jsonwebtoken::decode_header(token).map_err(TokenError::Invalid)?;
                let jwk = header
                    .kid
                    .as_deref()
                    .and_then(|kid| set.find(kid))
                    .ok_or(TokenError::UnknownKey)?;
                DecodingKey::from_jwk(jwk).map_err(TokenError::Invalid)?
            }
        };
        // jsonwebtoken refuses a validation that names algorithms of another
        // family than the key's, so keep only this key's (an RSA key in a
        // JWKS checks RS256, an EC key ES256, with the default list).
        let mut validation = self.validation.clone();
        validation.algorithms.retain(|a| a.family() == key.family());
        if validation.algorithms.is_empty() {
            return Err(TokenError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            ));
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(TokenError::Invalid)?;
        let client = data
            .claims
            .get(&self.client_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TokenError::NoClient(self.client_claim.clone()))?
            .to_owned();
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expires_in = Duration::from_secs(exp.saturating_sub(now));
        Ok(Verified { client, expires_in })
    }
}
