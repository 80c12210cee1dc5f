//! Operations (part of issue #15): logs fit for a container runtime, and a
//! restart that loads its plugins from the persistent compile cache.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `sluice check` on a config with one plugin (`client-filter`),
/// stderr to a file (not a terminal), with `env`; returns the log.
fn check(dir: &Path, env: &[(&str, &str)]) -> String {
    let config = dir.join("sluice.toml");
    if !config.exists() {
        let wasm = common::plugin("client-filter");
        std::fs::write(
            &config,
            format!(
                r#"
                [sources.in]
                type = "http"
                [plugins.keep]
                path = "{wasm}"
                config = {{ patterns = ["client-*"] }}
                [sinks.out]
                type = "blackhole"
                [routes.r]
                from = "in"
                through = ["keep"]
                to = ["out"]
                "#
            ),
        )
        .unwrap();
    }
    let log = dir.join(format!(
        "log-{}.txt",
        std::fs::read_dir(dir).unwrap().count()
    ));
    let status = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("SLUICE_LOG_FORMAT")
        .env_remove("SLUICE_CACHE_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    text
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_restart_loads_plugins_from_the_compile_cache_and_a_bad_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [("SLUICE_CACHE_DIR", cache.to_str().unwrap())];

    let first = check(dir.path(), &env);
    assert!(first.contains("Component compiled."), "{first}");
    let files = cache_files(&cache);
    assert_eq!(files.len(), 1, "one entry, no temporary left: {files:?}");

    let second = check(dir.path(), &env);
    assert!(
        second.contains("Component loaded from the compile cache (no compile)."),
        "{second}"
    );
    assert!(
        !second.contains("Component compiled."),
        "no compile: {second}"
    );

    // A damaged entry is not trusted: compiled again, and replaced.
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    let third = check(dir.path(), &env);
    assert!(third.contains("does not load; compiling again"), "{third}");
    assert!(third.contains("Component compiled."), "{third}");
    let fourth = check(dir.path(), &env);
    assert!(fourth.contains("from the compile cache"), "{fourth}");

    // Without the variable there is no cache: it compiles.
    let off = check(dir.path(), &[]);
    assert!(off.contains("Component compiled."), "{off}");
}

#[test]
fn logs_to_a_file_are_plain_text_and_json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = check(dir.path(), &[]);
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when stderr is a file: {text:?}"
    );

    let json = check(dir.path(), &[("SLUICE_LOG_FORMAT", "json")]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.len() >= 2, "{json}");
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    let compiled = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Component compiled.")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(compiled["level"], "INFO");
    assert!(
        compiled["fields"]["version"].is_string(),
        "fields kept: {compiled}"
    );
}
