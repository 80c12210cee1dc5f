//! Building a plugin project into a component: the one build function that
//! `crate =` plugins (at start-up and on a config reload), `sluice dev` (on
//! every source change) and `sluice test` use.
//!
//! A Rust crate (a `Cargo.toml`) is built with cargo for `wasm32-wasip2`.
//! Any other project (Python, JavaScript; what `sluice new` writes) has a
//! `build.sh` that writes `plugin.wasm` next to it.

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
    /// The directory holds neither a `Cargo.toml` nor a `build.sh`.
    #[error("no Cargo.toml or build.sh in plugin directory {}", dir.display())]
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
    /// A project's `build.sh` failed (or could not be run); `output` is the
    /// end of what it printed.
    #[error("{} failed:\n{output}", script.display())]
    Script {
        /// The build script.
        script: PathBuf,
        /// The last lines it printed, or why it could not run.
        output: String,
    },
    /// The build succeeded but produced no component.
    #[error("building {} produced no component (a crate's crate-type must be [\"cdylib\", \"rlib\"]; a build.sh must write plugin.wasm)", dir.display())]
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
        let script = dir.join(BUILD_SCRIPT);
        if script.is_file() {
            return build_script(dir, &script, env).await;
        }
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

/// The build script of a project that is not a Rust crate.
pub const BUILD_SCRIPT: &str = "build.sh";
/// What a project's build script writes, next to it.
pub const SCRIPT_OUTPUT: &str = "plugin.wasm";

/// Runs a project's `build.sh` (with `sh`, so it need not be executable)
/// and returns the `plugin.wasm` it wrote.
async fn build_script(
    dir: &Path,
    script: &Path,
    env: &[(&str, &str)],
) -> Result<PathBuf, BuildError> {
    tracing::info!(project = %dir.display(), "Building plugin project with its build.sh.");
    let failed = |output: String| BuildError::Script {
        script: script.to_owned(),
        output,
    };
    let output = tokio::process::Command::new("sh")
        .arg(script)
        .current_dir(dir)
        // componentize-py is a Rust program: its error, not its backtrace.
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(format!("cannot run sh: {e}")))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let tail: Vec<&str> = text.lines().filter(|l| !is_frame(l)).collect();
        let mut tail = tail.split_at(tail.len().saturating_sub(30)).1.to_vec();
        let hint = "hint: the build tools are componentize-py 0.25.1 (pip) and \
             @bytecodealliance/componentize-js 0.23.0 (npm); scripts/plugin-tools.sh installs both";
        if text.contains("not found") {
            tail.push(hint);
        }
        return Err(failed(tail.join("\n")));
    }
    let wasm = dir.join(SCRIPT_OUTPUT);
    if !wasm.is_file() {
        return Err(BuildError::NoComponent {
            dir: dir.to_owned(),
        });
    }
    Ok(wasm)
}

/// A line of a Rust backtrace (`  12: name`, `      at file:line`).
fn is_frame(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("at ")
        || t == "Stack backtrace:"
        || t.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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
