//! `sluice new`: a plugin project outside the workspace, ready to build,
//! test (`sluice test`) and run (`sluice dev`).
//!
//! Rust filters and transforms today. The crate depends on `sluice-sdk` by
//! path, from the checkout this `sluice` was built in, until the SDK is
//! published.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// What a plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Keeps or drops records.
    Filter,
    /// Rewrites records and picks their ports.
    Transform,
    /// A transform that reads tables.
    Join,
}

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on `sluice-sdk`.
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    Js,
}

/// Writes project `name` into directory `dir` (which must not exist yet).
/// Returns the files written.
pub fn create(dir: &Path, name: &str, kind: Kind, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit() || c == '-')
    {
        bail!(
            "`{name}`: a plugin name is lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    match (lang, kind) {
        (Lang::Rust, _) => {}
        (Lang::Python | Lang::Js, _) => bail!(
            "`--lang {}` is not scaffolded yet; see the README's Writing plugins for building a component with {}",
            if lang == Lang::Python { "python" } else { "js" },
            if lang == Lang::Python {
                "componentize-py"
            } else {
                "componentize-js"
            }
        ),
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugins")
        .join("sdk");
    let sdk = std::path::absolute(&sdk).unwrap_or(sdk);
    let ident = type_name(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        (
            "src/lib.rs",
            match kind {
                Kind::Filter => FILTER.replace("Plugin", &ident),
                Kind::Transform => TRANSFORM.replace("Plugin", &ident),
                Kind::Join => JOIN.replace("Plugin", &ident),
            },
        ),
        (
            "fixtures/basic.json",
            match kind {
                Kind::Filter => FILTER_FIXTURE.to_owned(),
                Kind::Transform => TRANSFORM_FIXTURE.to_owned(),
                Kind::Join => JOIN_FIXTURE.to_owned(),
            },
        ),
        ("sluice.toml", sample_config(name, kind)),
        ("README.md", readme(name, kind)),
        (".gitignore", "/target\n".to_owned()),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
# From the Sluice checkout that made this project, until sluice-sdk is
# published.
sluice-sdk = {{ path = "{}" }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1

# A workspace of its own.
[workspace]
"#,
        sdk.display()
    )
}

fn sample_config(name: &str, kind: Kind) -> String {
    let (config, tables) = match kind {
        Kind::Join => (
            r#"{ table = "labels", default = "unknown" }
tables = ["labels"]

# The table: Redis hash `labels` (key → label). Fill it with
#   redis-cli HSET labels client-1 gold
[tables.labels]
type = "redis"
url = "${REDIS_URL:-redis://127.0.0.1:6379}"
hash = "labels""#,
            "",
        ),
        _ => (r#"{ prefix = "client-" }"#, ""),
    };
    format!(
        r#"# Run with `sluice dev sluice.toml`: the crate is rebuilt and hot-reloaded
# when its sources change. Post records and watch them come out:
#   curl -H 'content-type: application/x-ndjson' \
#        -d '{{"key":"client-1","value":{{"n":1}}}}' http://127.0.0.1:8080/ingest/in

[sources.in]
type = "http"
{tables}
[plugins.{name}]
crate = "."
config = {config}

[sinks.out]
type = "stdout"

[routes.r]
from = "in"
through = ["{name}"]
to = ["out"]
"#
    )
}

fn readme(name: &str, kind: Kind) -> String {
    let kind = match kind {
        Kind::Filter => "filter",
        Kind::Transform => "transform",
        Kind::Join => "join",
    };
    format!(
        r#"# {name}

A Sluice {kind} plugin.

    cargo test                      # the plugin's native tests (sluice_sdk::testing)
    sluice test .                   # builds it for wasm32-wasip2, runs fixtures/*.json
    sluice test . --update          # writes what came out into the fixtures
    sluice dev sluice.toml          # runs it, rebuilding and hot-reloading on change

`sluice-sdk` comes by path from the Sluice checkout that created this
project, until it is published; change the path in `Cargo.toml` if that
checkout moves.
"#
    )
}

const FILTER: &str = r#"//! Keeps the records whose key starts with `prefix`.

use sluice_sdk::{Error, Filter, InitError, Record};

/// `[plugins.NAME.config]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The key prefix of the records to keep.
    prefix: String,
}

/// The plugin.
pub struct Plugin {
    prefix: Vec<u8>,
}

impl Filter for Plugin {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        if config.prefix.is_empty() {
            return Err(InitError::InvalidConfig("`prefix` must not be empty".into()));
        }
        Ok(Self {
            prefix: config.prefix.into_bytes(),
        })
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        Ok(record.key().is_some_and(|k| k.starts_with(&self.prefix)))
    }
}

sluice_sdk::export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{self, TestRecord};

    #[test]
    fn keeps_only_the_prefixed_keys() {
        let config = testing::config(serde_json::json!({ "prefix": "client-" })).unwrap();
        let mut plugin = Plugin::init(config).unwrap();
        let out = testing::filter(
            &mut plugin,
            [TestRecord::new("a").key("client-1"), TestRecord::new("b").key("other")],
        );
        assert_eq!(out.keep, [1, 0]);
    }
}
"#;

const TRANSFORM: &str = r#"//! Sends the records whose key starts with `prefix` to port `matched`
//! with a header `matched: yes`; the others pass through unchanged.

use sluice_sdk::{Error, InitError, Output, Record, Transform};

/// `[plugins.NAME.config]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The key prefix of the records to tag.
    prefix: String,
}

/// The plugin.
pub struct Plugin {
    prefix: Vec<u8>,
}

impl Transform for Plugin {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        Ok(Self {
            prefix: config.prefix.into_bytes(),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        if record.key().is_some_and(|k| k.starts_with(&self.prefix)) {
            out.emit(record).header("matched", b"yes").port("matched");
        } else {
            out.forward(record);
        }
        Ok(())
    }
}

sluice_sdk::export_transform!(Plugin);
"#;

const FILTER_FIXTURE: &str = r#"{
  "config": { "prefix": "client-" },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "other", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": {}, "timestamp": 1000 }
  ],
  "errors": []
}
"#;

const TRANSFORM_FIXTURE: &str = r#"{
  "config": { "prefix": "client-" },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "other", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": { "matched": "yes" }, "timestamp": 1000, "port": "matched" },
    { "key": "other", "value": { "n": 2 }, "headers": {}, "timestamp": 1001 }
  ],
  "errors": []
}
"#;

const JOIN: &str = r#"//! Labels each record from table `table` by its key (header `label`);
//! keys the table does not have get `default`.

use sluice_sdk::tables::Table;
use sluice_sdk::{Error, InitError, Output, Record, Transform};

/// `[plugins.NAME.config]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The table to look keys up in (listed in `[plugins.NAME] tables`).
    table: String,
    /// The label of keys the table does not have.
    default: String,
}

/// The plugin.
pub struct Plugin {
    table: Table,
    default: Vec<u8>,
}

impl Transform for Plugin {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        let table = Table::open(&config.table).map_err(|e| InitError::Failed(e.to_string()))?;
        Ok(Self {
            table,
            default: config.default.into_bytes(),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        // One lookup per record keeps the example short; for speed, gather
        // the batch's keys in `begin_batch` and use `Table::get_many`
        // (see plugins/json-enrich).
        let label = record.key().and_then(|k| self.table.get(k));
        out.emit(record)
            .header("label", label.as_deref().unwrap_or(&self.default));
        Ok(())
    }
}

sluice_sdk::export_join!(Plugin);
"#;

const JOIN_FIXTURE: &str = r#"{
  "config": { "table": "labels", "default": "unknown" },
  "tables": { "labels": { "client-1": "gold" } },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "client-9", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": { "label": "gold" }, "timestamp": 1000 },
    { "key": "client-9", "value": { "n": 2 }, "headers": { "label": "unknown" }, "timestamp": 1001 }
  ],
  "errors": []
}
"#;
