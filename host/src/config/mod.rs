//! The TOML config: sections, parsing, interpolation and validation.
//!
//! Loading runs in stages so that one run reports every problem it can:
//! `${VAR}` interpolation (all missing variables), TOML syntax (the first
//! syntax error), then every section item on its own (all type and unknown-key
//! errors, each with its key path), then references between names.

pub mod defaults;
mod guarantee;
mod interpolate;
mod plugins;
mod routes;
mod secret;
mod server;
mod validate;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use defaults::*;
pub use guarantee::{route_sinks, source_dead_letter};
pub use interpolate::interpolate;
pub use plugins::{OnError, PluginConfig, PluginSource};
pub use routes::{Guarantee, PortMap, RouteConfig};
pub use secret::Secret;
pub use server::ServerConfig;
pub use values::{ByteSize, HumanDuration};

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::tables::TableConfig;

/// A whole, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[sources.NAME]`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[plugins.NAME]`.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// `[sinks.NAME]`.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// `[routes.NAME]`.
    pub routes: BTreeMap<String, RouteConfig>,
    /// `[tables.NAME]`.
    pub tables: BTreeMap<String, TableConfig>,
}

/// Everything wrong with a config, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// One line per problem, each naming its key.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "invalid config {}:", file.display())?,
            None => write!(f, "invalid config:")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, interpolates (from the process environment), parses and
    /// validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let fail = |problem: String| ConfigError {
            file: Some(path.to_owned()),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        Self::parse(&text, base, |name| std::env::var(name).ok()).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses config `text`; relative paths resolve against `base_dir`.
    pub fn parse(
        text: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let err = |problems| ConfigError {
            file: None,
            problems,
        };
        let text = interpolate(text, env).map_err(err)?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| err(vec![toml_syntax(&e, &text)]))?;
        let mut problems = Vec::new();
        let mut broken = BTreeSet::new();
        let mut config = Config {
            base_dir: base_dir.to_owned(),
            server: ServerConfig::default(),
            sources: BTreeMap::new(),
            plugins: BTreeMap::new(),
            sinks: BTreeMap::new(),
            routes: BTreeMap::new(),
            tables: BTreeMap::new(),
        };
        for (key, value) in table {
            match key.as_str() {
                "server" => {
                    if let Some(s) = item::<ServerConfig>("server", value, &mut problems) {
                        config.server = s;
                    }
                }
                "sources" => {
                    config.sources = section(&key, value, &mut problems, &mut broken, SourceConfig::from_toml)
                }
                "sinks" => {
                    config.sinks = section(&key, value, &mut problems, &mut broken, SinkConfig::from_toml)
                }
                "plugins" => {
                    config.plugins = section(&key, value, &mut problems, &mut broken, typed)
                }
                "routes" => {
                    config.routes = section(&key, value, &mut problems, &mut broken, typed)
                }
                "tables" => {
                    config.tables = section(&key, value, &mut problems, &mut broken, TableConfig::from_toml)
                }
                other => problems.push(format!(
                    "{other}: unknown section; expected server, sources, plugins, sinks, routes or tables"
                )),
            }
        }
        for plugin in config.plugins.values_mut() {
            plugin.resolve_paths(base_dir);
        }
        for source in config.sources.values_mut() {
            source.kind_mut().resolve_paths(base_dir);
        }
        for sink in config.sinks.values_mut() {
            sink.kind_mut().resolve_paths(base_dir);
        }
        for table in config.tables.values_mut() {
            table.kind_mut().resolve_paths(base_dir);
        }
        if let Some(file) = &mut config.server.admin_token_file {
            *file = resolve(base_dir, file);
        }
        if let Some(tls) = &mut config.server.tls {
            tls.resolve_paths(base_dir);
        }
        validate::check(&config, &broken, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(err(problems))
        }
    }
}

/// `path` from a config, resolved against `base` (the config file's
/// directory). Paths are resolved once, when the config is parsed, so
/// nothing later needs the whole config to find a file.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// A TOML syntax error as one problem: where and what, without toml's
/// excerpt of the line, which (after interpolation) may hold a secret.
fn toml_syntax(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML syntax: line {line}, column {column}: {}", e.message())
        }
        None => format!("TOML syntax: {}", e.message()),
    }
}

/// Deserializes `value` into `T`, recording a problem (with its key path
/// under `path`) on failure.
pub(crate) fn item<T: DeserializeOwned>(
    path: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            problems.push(format!("{at}: {}", e.into_inner()));
            None
        }
    }
}

fn typed<T: DeserializeOwned>(
    path: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    item(path, value, problems)
}

/// Parses a `[section.NAME]` map item by item. Items that fail (their
/// problems recorded) go into `broken` (as `section.NAME`), so references to
/// them are not reported again as missing.
fn section<T>(
    name: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
    broken: &mut BTreeSet<String>,
    parse: impl Fn(&str, toml::Value, &mut Vec<String>) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let toml::Value::Table(items) = value else {
        problems.push(format!(
            "{name}: expected a table of named items ([{name}.NAME])"
        ));
        return out;
    };
    for (item_name, v) in items {
        let path = format!("{name}.{item_name}");
        match parse(&path, v, problems) {
            Some(parsed) => {
                out.insert(item_name, parsed);
            }
            None => {
                broken.insert(path);
            }
        }
    }
    out
}

/// Splits `type = "..."` off a component table, so each kind keeps
/// `deny_unknown_fields` for the rest. `kinds` is only for the message
/// when `type` is missing.
pub(crate) fn split_type(
    path: &str,
    value: toml::Value,
    kinds: &[&str],
    problems: &mut Vec<String>,
) -> Option<(String, toml::Value)> {
    let toml::Value::Table(mut table) = value else {
        problems.push(format!("{path}: expected a table"));
        return None;
    };
    match table.remove("type") {
        Some(toml::Value::String(kind)) => Some((kind, toml::Value::Table(table))),
        Some(_) => {
            problems.push(format!("{path}.type: expected a string"));
            None
        }
        None => {
            problems.push(format!(
                "{path}: missing `type` (one of {})",
                kinds.join(", ")
            ));
            None
        }
    }
}
