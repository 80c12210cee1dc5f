//! The SDK stands alone: a plugin crate in a directory of its own, outside
//! this workspace, depends on `sluice-sdk` by path, builds for
//! `wasm32-wasip2` and loads in `sluice check`. A table opened from a plugin
//! that is not exported as a join says how to fix it.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

const PLUGIN: &str = r#"
use sluice_sdk::{Error, Filter, InitError, Record, tables::Table};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    prefix: String,
    /// A table to open in `init` (which a filter may not do).
    open_table: Option<String>,
}

pub struct Prefix(String);

impl Filter for Prefix {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        if let Some(name) = &config.open_table {
            Table::open(name).map_err(|e| InitError::Failed(e.to_string()))?;
        }
        Ok(Self(config.prefix))
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        Ok(record.value().starts_with(self.0.as_bytes()))
    }
}

sluice_sdk::export_filter!(Prefix);
"#;

/// A plugin crate in `dir`, outside any workspace, using the SDK by path.
fn write_crate(dir: &Path) {
    let sdk = workspace().join("plugins").join("sdk");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "outside-prefix"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
sluice-sdk = {{ path = "{}" }}

# A workspace of its own: nothing above this directory applies.
[workspace]
"#,
            sdk.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src").join("lib.rs"), PLUGIN).unwrap();
    // The same dependency versions as this workspace, so the build reuses
    // its compiled dependencies and needs no registry look-up.
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(config)
        .env(
            "SLUICE_PLUGIN_TARGET_DIR",
            workspace().join("target").join("sluice-plugins"),
        )
        .output()
        .unwrap()
}

fn config(plugin_config: &str) -> String {
    format!(
        r#"
[sources.in]
type = "http"

[tables.products]
type = "redis"
url = "redis://127.0.0.1:1/0"
hash = "products"

[plugins.prefix]
crate = "outside-prefix"
tables = ["products"]
config = {{ {plugin_config} }}

[sinks.out]
type = "stdout"

[routes.r]
from = "in"
through = ["prefix"]
to = ["out"]
"#
    )
}

#[test]
fn a_plugin_crate_outside_the_workspace_builds_against_the_sdk_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_crate(&dir.path().join("outside-prefix"));

    let good = dir.path().join("good.toml");
    std::fs::write(&good, config(r#"prefix = "a""#)).unwrap();
    let out = check(&good);
    assert!(
        out.status.success(),
        "sluice check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("plugins.prefix: ok (filter"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A filter (exported without export_join!) that opens a table.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, config(r#"prefix = "a", open_table = "products""#)).unwrap();
    let out = check(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check passed: {stderr}");
    assert!(
        stderr.contains("plugins.prefix") && stderr.contains("export_join!"),
        "{stderr}"
    );
}

/// The SDK's crates package, and the macros crate carries the WIT inside
/// itself (the workspace's `wit/` reached through a symlink), so a packaged
/// SDK generates the same bindings. They package together because
/// `sluice-sdk` depends on the other two, which are not on crates.io.
#[test]
fn the_sdk_crates_package_with_their_wit() {
    let target = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["package", "--no-verify", "--allow-dirty"])
        .args([
            "-p",
            "sluice-format",
            "-p",
            "sluice-sdk-macros",
            "-p",
            "sluice-sdk",
        ])
        .arg("--target-dir")
        .arg(target.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo package failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(
            target
                .path()
                .join("package")
                .join("sluice-sdk-macros-0.1.0.crate"),
        )
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&listing.stdout);
    for wit in ["types.wit", "worlds.wit", "tables.wit", "state.wit"] {
        assert!(
            files.contains(&format!("sluice-sdk-macros-0.1.0/wit/{wit}")),
            "{wit} missing from the packaged macros crate:\n{files}"
        );
    }
}
