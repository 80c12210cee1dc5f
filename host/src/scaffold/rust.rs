//! The Rust project `sluice new --lang rust` writes: a crate on
//! `sluice-sdk`, by path from the checkout this `sluice` was built in.

use std::path::Path;

use super::{Kind, type_name};

/// The files of a Rust project, as (path, contents).
pub(super) fn files(name: &str, kind: Kind) -> Vec<(&'static str, String)> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugins")
        .join("sdk");
    let sdk = std::path::absolute(&sdk).unwrap_or(sdk);
    let ident = type_name(name);
    let source = match kind {
        Kind::Filter => FILTER,
        Kind::Transform => TRANSFORM,
        Kind::Join => JOIN,
    };
    vec![
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", source.replace("Plugin", &ident)),
        ("README.md", readme(name, kind)),
        (".gitignore", "/target\n".to_owned()),
    ]
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

fn readme(name: &str, kind: Kind) -> String {
    let kind = kind.word();
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
