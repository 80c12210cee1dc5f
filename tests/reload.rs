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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_load_lose_and_duplicate_nothing() {
    let (a, b) = stamped_plugins();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("stamp.wasm");
    let out = dir.path().join("out.jsonl");
    std::fs::copy(&a, &live).unwrap();
    let running = start(&config(&live, &out), &workspace()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("stamp.wasm");
    let out = dir.path().join("out.jsonl");
    std::fs::copy(&a, &live).unwrap();
    let running = start(&config(&live, &out), &workspace()).await;
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
