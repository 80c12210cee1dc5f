//! The engine's compile cache keeps only the versions that still run: a
//! long `sluice dev` session or a deploy loop that hot-reloads many builds
//! does not grow the process without bound.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sluice::wasm::WasmEngine;

const RELOADS: usize = 50;

/// `component` with a custom section appended that holds `n`: a distinct
/// build (its content hash differs) that behaves the same.
fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"sluice-test-variant";
    let mut section = vec![u8::try_from(name.len()).unwrap()];
    section.extend_from_slice(name);
    section.extend_from_slice(&(n as u64).to_le_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(u8::try_from(section.len()).unwrap()); // < 128: one LEB128 byte
    out.extend_from_slice(&section);
    out
}

fn write_atomically(bytes: &[u8], to: &std::path::Path) {
    let tmp = to.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

async fn reloads(addr: std::net::SocketAddr) -> u64 {
    let (_, body) = get(addr, "/plugins").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["plugins"][0]["reloads"].as_u64().unwrap()
}

async fn post_one(addr: std::net::SocketAddr, n: usize) {
    let line = serde_json::json!({"key": "k", "value": {"n": n}});
    let (status, body) = post_ndjson(addr, "in", &[line]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hot_reloads_of_distinct_builds_keep_only_the_live_version_compiled() {
    let component = std::fs::read(plugin("fixture-stamp")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("stamp.wasm");
    let out = dir.path().join("out.jsonl");
    write_atomically(&variant(&component, 0), &live);
    let running = start(
        &format!(
            r#"
[sources.in]
type = "http"

[plugins.stamp]
path = "{}"

[sinks.out]
type = "file"
path = "{}"

[routes.r]
from = "in"
through = ["stamp"]
to = ["out"]
"#,
            live.display(),
            out.display()
        ),
        &workspace(),
    )
    .await;
    let addr = running.addr;
    post_one(addr, 0).await;
    for i in 1..=RELOADS {
        write_atomically(&variant(&component, i), &live);
        let swapped = eventually_async(Duration::from_secs(20), || async {
            reloads(addr).await == i as u64
        })
        .await;
        assert!(swapped, "reload {i} never happened");
        // The stage moves to the new version at its next batch, which lets
        // the old version go.
        post_one(addr, i).await;
    }
    let engine = WasmEngine::global().unwrap();
    let settled = eventually(Duration::from_secs(5), || engine.cached() == 1).await;
    assert!(
        settled,
        "{} compiled components cached after {RELOADS} reloads; only the live one should be",
        engine.cached()
    );
    let records = read_lines(&out);
    let ns: Vec<u64> = records
        .iter()
        .map(|r| r["value"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..=RELOADS as u64).collect::<Vec<_>>());
    running.shutdown().await.unwrap();
}
