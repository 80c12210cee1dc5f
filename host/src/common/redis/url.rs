//! Where a Redis part connects, and how: a URL (`redis://`, `rediss://` for
//! TLS, `redis+unix://`), or a table with the URL and its TLS files and ACL
//! credentials. Every Redis part (sources, sinks, the Redis-backed SSE sink
//! and its presence set, tables) takes it as `url`.
//!
//! ```toml
//! url = "redis://127.0.0.1:6379/0"
//! url = { url = "rediss://redis.internal:6380/0", ca_file = "ca.pem", username = "sluice", password = "${REDIS_PASSWORD}" }
//! ```
//!
//! A password (in the URL or the table) is never shown: [`RedisUrl`]'s
//! `Display` and `Debug` print the URL with it replaced by `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use redis::IntoConnectionInfo;
use serde::Deserialize;

use crate::config::Secret;

/// A Redis connection target, checked when the config is read.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: Secret,
    tls: TlsFiles,
    username: Option<String>,
    password: Option<Secret>,
}

/// TLS settings beyond what the URL says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TlsFiles {
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    insecure: bool,
}

/// The table form of `url`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// `rediss://host:port/db` (or any Redis URL).
    url: String,
    /// A PEM file of the CA certificates to trust instead of the system's.
    ca_file: Option<PathBuf>,
    /// A PEM client certificate, for servers that ask for one (mutual TLS).
    client_cert: Option<PathBuf>,
    /// The PEM key of `client_cert`.
    client_key: Option<PathBuf>,
    /// Skip verifying the server's certificate: an explicit opt-in, for
    /// testing only.
    #[serde(default)]
    insecure_skip_verify: bool,
    /// The ACL user (instead of one in the URL).
    username: Option<String>,
    /// The ACL password (instead of one in the URL), usually
    /// `"${REDIS_PASSWORD}"`.
    password: Option<Secret>,
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a Redis URL, or a table with `url` and TLS or ACL keys"
        )]
        enum Raw {
            Url(String),
            Table(Table),
        }
        let t = match Raw::deserialize(d)? {
            Raw::Url(url) => Table {
                url,
                ca_file: None,
                client_cert: None,
                client_key: None,
                insecure_skip_verify: false,
                username: None,
                password: None,
            },
            Raw::Table(t) => t,
        };
        // An empty path (a variable left empty, `"${REDIS_CA_FILE:-}"`) is
        // no file.
        let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let parsed = RedisUrl {
            url: Secret::new(t.url),
            tls: TlsFiles {
                ca_file: given(t.ca_file),
                client_cert: given(t.client_cert),
                client_key: given(t.client_key),
                insecure: t.insecure_skip_verify,
            },
            username: t.username,
            password: t.password,
        };
        if let Err(e) = parsed.url.expose().into_connection_info() {
            return Err(serde::de::Error::custom(format!(
                "`{}` is not a Redis URL: {e}",
                redact(parsed.url.expose())
            )));
        }
        let tls = parsed.url.expose().starts_with("rediss://");
        let files = &parsed.tls;
        if !tls && (files.ca_file.is_some() || files.client_cert.is_some() || files.insecure) {
            return Err(serde::de::Error::custom(
                "`ca_file`, `client_cert` and `insecure_skip_verify` need a `rediss://` URL",
            ));
        }
        if files.client_cert.is_some() != files.client_key.is_some() {
            return Err(serde::de::Error::custom(
                "set both `client_cert` and `client_key`, or neither",
            ));
        }
        Ok(parsed)
    }
}

impl RedisUrl {
    /// A plain URL, as from the string form.
    pub fn new(url: &str) -> Self {
        Self {
            url: Secret::new(url),
            tls: TlsFiles::default(),
            username: None,
            password: None,
        }
    }

    /// Makes the TLS file paths absolute, against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let files = &mut self.tls;
        for path in [
            &mut files.ca_file,
            &mut files.client_cert,
            &mut files.client_key,
        ]
        .into_iter()
        .flatten()
        {
            *path = crate::config::resolve(base, path);
        }
    }

    /// The client for this target: the URL, with the table's credentials
    /// and TLS files applied.
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        self.client_in(None)
    }

    /// [`client`](Self::client), on database `db` instead of the URL's
    /// when set.
    pub fn client_in(&self, db: Option<u32>) -> anyhow::Result<redis::Client> {
        use anyhow::Context as _;
        let mut url = self.url.expose().to_owned();
        if self.tls.insecure && !url.contains('#') {
            url.push_str("#insecure");
        }
        let mut info = url
            .as_str()
            .into_connection_info()
            .with_context(|| format!("`{self}` is not a Redis URL"))?;
        if self.username.is_some() || self.password.is_some() {
            let mut settings = info.redis_settings().clone();
            if let Some(user) = &self.username {
                settings = settings.set_username(user);
            }
            if let Some(password) = &self.password {
                settings = settings.set_password(password.expose());
            }
            info = info.set_redis_settings(settings);
        }
        if let Some(db) = db {
            let settings = info.redis_settings().clone().set_db(i64::from(db));
            info = info.set_redis_settings(settings);
        }
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let files = &self.tls;
        if files.ca_file.is_none() && files.client_cert.is_none() {
            return redis::Client::open(info).with_context(|| format!("cannot use `{self}`"));
        }
        let root_cert = files.ca_file.as_deref().map(read).transpose()?;
        let client_tls = match (&files.client_cert, &files.client_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            _ => None,
        };
        redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )
        .with_context(|| format!("cannot use the TLS files of `{self}`"))
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                // `redis://secret@host`: the lone field is the password.
                "***".to_owned()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.url.expose()))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("url", &redact(self.url.expose()))
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:pw@h:6379/0"), "redis://u:***@h:6379/0");
        assert_eq!(redact("rediss://:pw@h/1"), "rediss://:***@h/1");
        assert_eq!(redact("redis://pw@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        let url = RedisUrl::new("redis://sluice:hunter2@localhost:6379/0");
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }

    #[test]
    fn the_table_form_takes_credentials_and_needs_rediss_for_tls_files() {
        let parse = |s: &str| toml::from_str::<std::collections::BTreeMap<String, RedisUrl>>(s);
        let ok = parse(r#"u = { url = "redis://h:1/0", username = "a", password = "b" }"#).unwrap();
        assert!(!format!("{:?}", ok["u"]).contains("\"b\""));
        let e = parse(r#"u = { url = "redis://h:1/0", ca_file = "ca.pem" }"#).unwrap_err();
        assert!(e.to_string().contains("need a `rediss://` URL"), "{e}");
        // As the config reads it: from a parsed value, so the error has no
        // excerpt of the file, and the URL in it is redacted.
        let value: toml::Value = toml::from_str::<toml::Table>(r#"u = "redis://:hunter2@h:1/0x""#)
            .unwrap()
            .remove("u")
            .unwrap();
        let e = RedisUrl::deserialize(value).unwrap_err();
        assert!(e.to_string().contains("redis://:***@h:1/0x"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
