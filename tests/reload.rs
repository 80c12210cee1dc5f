//! Plugin hot reload under load: swaps at batch boundaries that lose and
//! duplicate nothing, and failed reloads that keep the old version serving.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn config(live: &Path, out: &Path) -> String {
    format!(
        r#"
[sources.in]
type = "http"

[plugins.stamp]
path = "{live}"

[sinks.out]
type = "file"
path = "{out}"

[routes.r]
from = "in"
through = ["stamp"]
to = ["out"]
workers = 2
"#,
        live = live.display(),
        out = out.display()
    )
}

async fn plugin_status(addr: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = get(addr, "/plugins").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["plugins"][0].clone()
}

async fn wait_for(addr: std::net::SocketAddr, key: &str, value: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = plugin_status(addr).await;
        if s[key].as_u64() == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never reached {value}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts one batch of `n` records numbered from `first`, keyed k0..k3,
/// each with header `batch`.
async fn post_batch(addr: std::net::SocketAddr, batch: usize, first: usize, n: usize) {
    let lines: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            serde_json::json!({
                "key": format!("k{}", i % 4),
                "value": {"n": i},
                "headers": {"batch": batch.to_string()},
            })
        })
        .collect();
    let (status, body) = post_ndjson(addr, "in", &lines).await;
    assert_eq!(status, 200, "{body}");
}

/// Sluice running `config` with `first` copied to the live plugin file.
struct Live {
    dir: tempfile::TempDir,
    live: std::path::PathBuf,
    out: std::path::PathBuf,
    running: sluice::runtime::Running,
}

async fn start_live(first: &Path) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("stamp.wasm");
    let out = dir.path().join("out.jsonl");
    std::fs::copy(first, &live).unwrap();
    let running = start(&config(&live, &out), &workspace()).await;
    Live {
        dir,
        live,
        out,
        running,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_lose_and_duplicate_nothing() {
    let (a, b) = stamped_plugins();
    let Live {
        dir: _dir,
        live,
        out,
        running,
    } = start_live(&a).await;
    let addr = running.addr;

    // Load: batches of 20 records, back to back, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::Relaxed) {
                post_batch(addr, batch, batch * 20, 20).await;
                batch += 1;
                sent.store(batch * 20, Ordering::Relaxed);
            }
        })
    };
    for i in 0..20u64 {
        let next = if i % 2 == 0 { &b } else { &a };
        let before = sent.load(Ordering::Relaxed);
        replace_file(next, &live);
        wait_for(addr, "reloads", i + 1).await;
        // Let some records through this version before the next swap.
        while sent.load(Ordering::Relaxed) < before + 60 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let total = sent.load(Ordering::Relaxed);

    let records = read_lines(&out);
    assert_eq!(records.len(), total, "every record exactly once");
    let mut seen = BTreeSet::new();
    let mut last_per_key: BTreeMap<String, i64> = BTreeMap::new();
    let mut stamps_per_batch: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stamps = BTreeSet::new();
    for r in &records {
        let n = r["value"]["n"].as_i64().unwrap();
        assert!(seen.insert(n), "record {n} twice");
        let key = r["key"].as_str().unwrap().to_owned();
        let last = last_per_key.insert(key.clone(), n).unwrap_or(-1);
        assert!(n > last, "key {key}: {n} after {last}");
        let h = headers(r);
        let stamp = h["stamp"].clone();
        assert!(stamp == "a" || stamp == "b", "{r}");
        stamps.insert(stamp.clone());
        stamps_per_batch
            .entry(h["batch"].clone())
            .or_default()
            .insert(stamp);
    }
    assert_eq!(seen.len(), total);
    assert_eq!(stamps.len(), 2, "both versions served");
    for (batch, s) in &stamps_per_batch {
        assert_eq!(s.len(), 1, "batch {batch} was split across versions: {s:?}");
    }
    let status = plugin_status(addr).await;
    assert_eq!(status["reloads"], 20);
    assert!(status["last_error"].is_null());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_or_a_failing_init_keeps_the_old_version() {
    let (a, b) = stamped_plugins();
    let Live {
        dir,
        live,
        out,
        running,
    } = start_live(&a).await;
    let addr = running.addr;
    let last_stamp = || {
        let lines = read_lines(&out);
        headers(lines.last().unwrap())["stamp"].clone()
    };

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"this is not a component").unwrap();
    replace_file(&garbage, &live);
    wait_for(addr, "reload_failures", 1).await;
    post_batch(addr, 0, 0, 5).await;
    assert_eq!(last_stamp(), "a", "the old version keeps serving");

    // A valid component whose init refuses the stage's config (`{}`).
    replace_file(Path::new(&plugin("client-filter")), &live);
    wait_for(addr, "reload_failures", 2).await;
    let status = plugin_status(addr).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("init failed"), "{error}");
    assert_eq!(status["reloads"], 0);
    post_batch(addr, 1, 5, 5).await;
    assert_eq!(last_stamp(), "a");

    replace_file(&b, &live);
    wait_for(addr, "reloads", 1).await;
    let status = plugin_status(addr).await;
    assert!(status["last_error"].is_null(), "{status}");
    post_batch(addr, 2, 10, 5).await;
    assert_eq!(last_stamp(), "b");
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(
        metrics.contains(r#"sluice_plugin_reload_failures_total{plugin="stamp"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_plugin_reloads_total{plugin="stamp"} 1"#),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}

/// A plugin crate of the test's own, inside the workspace's `target/` (so
/// the workspace's `.cargo/config.toml` applies) but a workspace of its own.
fn dev_crate(stamp: &str) -> tempfile::TempDir {
    let ws = workspace().canonicalize().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("dev-plugin-")
        .tempdir_in(ws.join("target"))
        .unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            r#"[package]
name = "dev-stamp"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
sluice-sdk = {{ path = "{}" }}

[workspace]
"#,
            ws.join("plugins").join("sdk").display()
        ),
    )
    .unwrap();
    // The workspace's lock file, so the dependencies resolve to the versions
    // already built in the shared target directory.
    std::fs::copy(ws.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    write_stamp(dir.path(), stamp);
    dir
}

fn write_stamp(dir: &Path, stamp: &str) {
    std::fs::write(
        dir.join("src").join("lib.rs"),
        format!(
            r#"use sluice_sdk::{{Output, Record}};

#[sluice_sdk::transform]
pub fn stamp(record: &Record<'_>, out: &mut Output) {{
    out.emit(record).header("stamp", b"{stamp}");
}}
"#
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_rebuilds_and_reloads_a_plugin_when_its_source_changes() {
    let plugin = dev_crate("one");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("dev.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[sources.in]
type = "http"
[plugins.stamp]
crate = "{}"
[sinks.out]
type = "file"
path = "{}"
[routes.r]
from = "in"
through = ["stamp"]
to = ["out"]
"#,
            plugin.path().display(),
            out.display()
        ),
    )
    .unwrap();
    let target = workspace().join("target").join("sluice-plugins");
    let _sluice = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("dev")
            .arg(&config)
            .env("SLUICE_PLUGIN_TARGET_DIR", &target)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sluice dev did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stamp_of_next(addr, &out, 0).await, "one");

    write_stamp(plugin.path(), "two");
    let mut n = 1;
    while stamp_of_next(addr, &out, n).await != "two" {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
        n += 1;
    }

    // A source that does not compile: the old version keeps serving, and
    // the build error is on /plugins.
    std::fs::write(plugin.path().join("src").join("lib.rs"), "this is not rust").unwrap();
    let mut error = String::new();
    while !error.contains("cargo build") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed build was not reported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        error = plugin_status(addr).await["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    n += 1;
    assert_eq!(stamp_of_next(addr, &out, n).await, "two");
}

/// Posts record `n` and returns the stamp it came out with.
async fn stamp_of_next(addr: std::net::SocketAddr, out: &Path, n: usize) -> String {
    post_batch(addr, n, n, 1).await;
    let lines = read_lines(out);
    headers(lines.last().unwrap())["stamp"].clone()
}

/// `sluice compile` on `input`, writing `output`.
fn precompile(input: &Path, output: &Path, fuel: bool) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("compile").arg(input).arg("-o").arg(output);
    if fuel {
        cmd.arg("--fuel");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompiled_components_load_and_hot_reload_only_when_allowed() {
    let (a, b) = stamped_plugins();
    let dir = tempfile::tempdir().unwrap();
    let (a_pre, b_pre, b_fuel) = (
        dir.path().join("a.cwasm"),
        dir.path().join("b.cwasm"),
        dir.path().join("b-fuel.cwasm"),
    );
    precompile(&a, &a_pre, false);
    precompile(&b, &b_pre, false);
    precompile(&b, &b_fuel, true);
    let live = dir.path().join("stamp.cwasm");
    let out = dir.path().join("out.jsonl");
    std::fs::copy(&a_pre, &live).unwrap();

    // Native code is loaded only when the config says so.
    let text = config(&live, &out);
    let err = sluice::runtime::load_plugins(&common::config(&text, dir.path()))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("allow_precompiled"), "{err:#}");

    let text = text.replace(
        "[plugins.stamp]\n",
        "[plugins.stamp]\nallow_precompiled = true\n",
    );
    let running = start(&text, dir.path()).await;
    let addr = running.addr;
    assert_eq!(stamp_of_next(addr, &out, 0).await, "a");

    replace_file(&b_pre, &live);
    wait_for(addr, "reloads", 1).await;
    assert_eq!(stamp_of_next(addr, &out, 1).await, "b");

    // Compiled for the fuel-counting engine: wasmtime refuses it here, and
    // the old version keeps serving.
    replace_file(&b_fuel, &live);
    wait_for(addr, "reload_failures", 1).await;
    let status = plugin_status(addr).await;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("precompiled"),
        "{status}"
    );
    assert_eq!(stamp_of_next(addr, &out, 2).await, "b");
    running.shutdown().await.unwrap();
}
