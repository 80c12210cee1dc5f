//! Plugin-local keyed state: kept across hot reloads, shared by a route's
//! workers, undone for a call that traps, and capped by `state_limit`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn config(plugin: &Path, dir: &Path, extra: &str) -> String {
    format!(
        r#"
[sources.in]
type = "http"

[plugins.tally]
path = "{plugin}"
{extra}

[sinks.out]
type = "file"
path = "{dir}/out.jsonl"

[sinks.dlq]
type = "file"
path = "{dir}/dlq.jsonl"

[routes.r]
from = "in"
through = ["tally"]
to = ["out"]
workers = 2
"#,
        plugin = plugin.display(),
        dir = dir.display(),
    )
}

/// Posts `(key, value)` records as one batch.
async fn post(addr: std::net::SocketAddr, records: &[(&str, &str)]) {
    let lines: Vec<serde_json::Value> = records
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    let (status, body) = post_ndjson(addr, "in", &lines).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits for `n` records in `file`, then gives them as (key, value, count,
/// stamp).
async fn wait_records(file: &Path, n: usize) -> Vec<(String, String, u64, String)> {
    assert!(
        eventually(WAIT, || read_lines(file).len() >= n).await,
        "wanted {n} records in {}, got {:?}",
        file.display(),
        read_lines(file)
    );
    let lines = read_lines(file);
    assert_eq!(lines.len(), n, "{lines:?}");
    lines
        .iter()
        .map(|r| {
            let h = headers(r);
            (
                r["key"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap_or_default().to_owned(),
                h["count"].parse().unwrap(),
                h["stamp"].clone(),
            )
        })
        .collect()
}

/// The counts each key got, in the order its records came out.
fn counts_per_key(records: &[(String, String, u64, String)]) -> BTreeMap<String, Vec<u64>> {
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, _, count, _) in records {
        per_key.entry(key.clone()).or_default().push(*count);
    }
    per_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_hot_reload() {
    let (a, b) = stamped_builds("fixture-tally");
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("tally.wasm");
    std::fs::copy(&a, &live).unwrap();
    let running = start(&config(&live, dir.path(), ""), &workspace()).await;
    let out = dir.path().join("out.jsonl");

    let keys = ["k0", "k1", "k2"];
    let batch: Vec<(&str, &str)> = (0..12).map(|i| (keys[i % 3], "x")).collect();
    post(running.addr, &batch).await;
    let first = wait_records(&out, 12).await;
    assert!(first.iter().all(|r| r.3 == "a"));

    replace_file(&b, &live);
    let reloaded = eventually_async(WAIT, || async {
        let (_, body) = get(running.addr, "/plugins").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["plugins"][0]["reloads"] == 1
    })
    .await;
    assert!(reloaded, "the plugin was not reloaded");
    post(running.addr, &batch).await;
    let all = wait_records(&out, 24).await;
    assert!(all[12..].iter().all(|r| r.3 == "b"), "{all:?}");

    // Each key counted 1..=8 across both versions and both workers: the new
    // version carried on from the old one's counts.
    let per_key = counts_per_key(&all);
    for key in keys {
        assert_eq!(per_key[key], (1..=8).collect::<Vec<u64>>(), "key {key}");
    }
    let (_, metrics) = get(running.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"sluice_plugin_state_keys{plugin="tally"} 3"#),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_traps_leaves_no_write_behind() {
    let (a, _) = stamped_builds("fixture-tally");
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(&a, dir.path(), ""), &workspace()).await;
    let out = dir.path().join("out.jsonl");

    // `boom` counts itself and panics. The whole call is undone, the batch
    // is bisected, and `boom` alone is undone again: the other records
    // count 1, 2, 3 as if it had never been there.
    post(
        running.addr,
        &[("k", "x"), ("k", "x"), ("k", "boom"), ("k", "x")],
    )
    .await;
    let records = wait_records(&out, 3).await;
    assert_eq!(counts_per_key(&records)["k"], [1, 2, 3], "{records:?}");
    post(running.addr, &[("k", "x")]).await;
    let records = wait_records(&out, 4).await;
    assert_eq!(records[3].2, 4, "{records:?}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_past_the_state_limit_fails_that_record() {
    let (a, _) = stamped_builds("fixture-tally");
    let dir = tempfile::tempdir().unwrap();
    let extra = "state_limit = \"1KiB\"\non_error = \"dead_letter\"\ndead_letter = \"dlq\"";
    let running = start(&config(&a, dir.path(), extra), &workspace()).await;

    post(running.addr, &[("k", "x"), ("k", "big"), ("k", "x")]).await;
    let dead = read_dead(&dir.path().join("dlq.jsonl")).await;
    assert!(dead.contains("state_limit of 1024"), "{dead}");
    // A record error keeps the record's earlier writes (its count).
    let records = wait_records(&dir.path().join("out.jsonl"), 2).await;
    assert_eq!(counts_per_key(&records)["k"], [1, 3], "{records:?}");
    running.shutdown().await.unwrap();
}

async fn read_dead(file: &Path) -> String {
    assert!(eventually(WAIT, || read_lines(file).len() == 1).await);
    let dead = &read_lines(file)[0];
    assert_eq!(dead["value"], "big");
    headers(dead)["sluice-error"].clone()
}
