//! Building a plugin crate for `wasm32-wasip2`: the one build function that
//! both `crate =` plugins (at start-up and on a config reload) and `sluice
//! dev` (on every source change) use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a plugin crate could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The crate path cannot be made absolute.
    #[error("bad plugin crate path {}", dir.display())]
    BadPath {
        /// The path as configured.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The directory holds no `Cargo.toml`.
    #[error("no Cargo.toml in plugin crate directory {}", dir.display())]
    NoManifest {
        /// The directory.
        dir: PathBuf,
    },
    /// cargo (or `cargo locate-project`) could not be run.
    #[error("cannot run cargo for {}", dir.display())]
    Cargo {
        /// The crate.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// cargo cannot find the crate's workspace.
    #[error("cargo cannot find the workspace of {}: {message}", dir.display())]
    Workspace {
        /// The crate.
        dir: PathBuf,
        /// cargo's message.
        message: String,
    },
    /// The build failed; `output` is the end of cargo's errors.
    #[error("cargo build of {} failed:\n{output}", dir.display())]
    Failed {
        /// The crate.
        dir: PathBuf,
        /// The last lines cargo printed.
        output: String,
    },
    /// The build succeeded but produced no component.
    #[error("building {} produced no .wasm; is its crate-type [\"cdylib\", \"rlib\"]?", dir.display())]
    NoComponent {
        /// The crate.
        dir: PathBuf,
    },
}

/// Builds the plugin crate in `dir` for `wasm32-wasip2` and returns the
/// component it produced. Cargo is incremental, so an unchanged crate costs
/// about a second.
pub async fn build_crate(dir: &Path) -> Result<PathBuf, BuildError> {
    build_crate_with(dir, &[]).await
}

/// [`build_crate`] with extra environment variables for the build (a
/// plugin's build-time settings, such as the test fixtures' stamp).
pub async fn build_crate_with(dir: &Path, env: &[(&str, &str)]) -> Result<PathBuf, BuildError> {
    let dir = &std::path::absolute(dir).map_err(|e| BuildError::BadPath {
        dir: dir.to_owned(),
        source: Arc::new(e),
    })?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NoManifest { dir: dir.clone() });
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = plugin_target_dir(&cargo, &manifest).await?;
    tracing::info!(crate_dir = %dir.display(), "Building plugin crate.");
    let build = || {
        tokio::process::Command::new(&cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .arg("--message-format=json-render-diagnostics")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output()
    };
    let run_err = |e: std::io::Error| BuildError::Cargo {
        dir: dir.clone(),
        source: Arc::new(e),
    };
    let mut output = build().await.map_err(run_err)?;
    if !output.status.success() && missing_target(&output.stderr) && add_wasm_target().await {
        output = build().await.map_err(run_err)?;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BuildError::Failed {
            dir: dir.clone(),
            output: tail.join("\n"),
        });
    }
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter_map(|msg| {
            msg["filenames"].as_array().and_then(|files| {
                files
                    .iter()
                    .filter_map(|f| f.as_str())
                    .find(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from)
            })
        })
        .next()
        .ok_or_else(|| BuildError::NoComponent { dir: dir.clone() })
}

/// Whether cargo failed because the wasm32-wasip2 standard library is not
/// installed. rust-toolchain.toml names the target, but rustup only fetches
/// it by itself when auto-install is on.
fn missing_target(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    text.contains("target may not be installed") || text.contains("can't find crate for `core`")
}

async fn add_wasm_target() -> bool {
    tracing::info!("Installing the wasm32-wasip2 target with rustup.");
    match tokio::process::Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .await
    {
        Ok(status) => status.success(),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot run rustup to add the wasm32-wasip2 target.");
            false
        }
    }
}

/// Plugins get their own target directory inside the workspace's, so a
/// build started from a running `cargo test` or `cargo run` never waits on
/// the lock that cargo holds on the host's build. `SLUICE_PLUGIN_TARGET_DIR`
/// overrides it (to share one build cache between plugin workspaces).
async fn plugin_target_dir(
    cargo: &std::ffi::OsStr,
    manifest: &Path,
) -> Result<PathBuf, BuildError> {
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_owned();
    if let Some(dir) = std::env::var_os("SLUICE_PLUGIN_TARGET_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let out = tokio::process::Command::new(cargo)
        .args([
            "locate-project",
            "--workspace",
            "--message-format",
            "plain",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .await
        .map_err(|e| BuildError::Cargo {
            dir: dir.clone(),
            source: Arc::new(e),
        })?;
    if !out.status.success() {
        return Err(BuildError::Workspace {
            dir,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let root_manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let root = root_manifest.parent().unwrap_or(Path::new("."));
    Ok(root.join("target").join("sluice-plugins"))
}
