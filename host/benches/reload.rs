//! Hot reload under load: how long from a plugin file being replaced to the
//! new version serving, and how long the data path stalls around a swap.
//!
//!     cargo bench -p sluice --bench reload
//!
//! Builds two fixtures twice each (as `a` and `b`): `stamp` (~190 KB) and
//! `bulk` (~1 MB of generated, reachable code). For each, raw and
//! precompiled (`sluice compile`, loaded with `allow_precompiled`), it runs
//! an `http` source → plugin → `blackhole` route and posts batches of 100
//! records back to back, timing each request (answered once the sink has
//! the batch). Then it replaces the live component 20 times (write beside,
//! rename over), each time a new file (new content hash, so nothing is
//! cached), timing rename → swap (the slot's reload count rising on
//! `/plugins`; the next batch of every stage runs the new version). The
//! stall is the slowest request while swaps happen, next to the slowest
//! without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice::config::Config;
use tokio::net::TcpStream;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build_fixture(package: &str, stamp: &str, out: &Path) -> PathBuf {
    let target = workspace().join("target").join("sluice-plugins");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env("SLUICE_STAMP", stamp)
        .status()
        .unwrap();
    assert!(status.success());
    let file = out.join(format!("{package}-{stamp}.wasm"));
    std::fs::copy(
        target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", package.replace('-', "_"))),
        &file,
    )
    .unwrap();
    file
}

async fn client(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn reloads(addr: std::net::SocketAddr) -> u64 {
    let mut c = client(addr).await;
    let req = hyper::Request::get("/plugins")
        .header("host", "x")
        .body(Full::default())
        .unwrap();
    let body = c
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
    v["plugins"][0]["reloads"].as_u64().unwrap()
}

/// `component` plus a custom section naming `n`: a different file (and
/// content hash) each time, so every reload compiles, as a new build would.
fn unique(component: &Path, n: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(component).unwrap();
    let name = format!("sluice-bench-{n}");
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name.as_bytes());
    bytes.push(0); // custom section id
    let mut len = payload.len();
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap();
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

fn max_ms(v: &[Duration]) -> f64 {
    v.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0
}

fn percentile_ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().saturating_sub(1)) as f64 * p) as usize)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    for package in ["fixture-stamp", "fixture-bulk"] {
        let a = build_fixture(package, "a", dir.path());
        let b = build_fixture(package, "b", dir.path());
        for precompiled in [false, true] {
            scenario(dir.path(), package, [&a, &b], precompiled).await;
        }
    }
}

/// The 20 versions to swap in, as files to rename over the live one.
fn versions(dir: &Path, [a, b]: [&Path; 2], precompiled: bool) -> Vec<PathBuf> {
    let engine = sluice::wasm::WasmEngine::global().unwrap();
    (0..20u64)
        .map(|i| {
            let raw = unique(if i % 2 == 0 { b } else { a }, i);
            let bytes = if precompiled {
                engine.precompile(&raw).unwrap()
            } else {
                raw
            };
            let file = dir.join(format!("version-{i}"));
            std::fs::write(&file, bytes).unwrap();
            file
        })
        .collect()
}

async fn scenario(dir: &Path, package: &str, [a, b]: [&Path; 2], precompiled: bool) {
    let versions = versions(dir, [a, b], precompiled);
    let size = std::fs::metadata(&versions[0]).unwrap().len();
    let live = dir.join("live");
    std::fs::copy(&versions[1], &live).unwrap();
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "http"
        [plugins.p]
        path = "{}"
        allow_precompiled = {precompiled}
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["p"]
        to = ["out"]
        "#,
        live.display()
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    let running = sluice::runtime::start(config).await.unwrap();
    let addr = running.addr;

    let swapping = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let calm = Arc::new(Mutex::new(Vec::new()));
    let during = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (swapping, stop, calm, during) =
            (swapping.clone(), stop.clone(), calm.clone(), during.clone());
        tokio::spawn(async move {
            let mut c = client(addr).await;
            let body: String = (0..100)
                .map(|i| format!("{{\"key\":\"k{}\",\"value\":{{\"n\":{i}}}}}\n", i % 4))
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::post("/ingest/in")
                    .header("host", "x")
                    .header("content-type", "application/x-ndjson")
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let started = Instant::now();
                let resp = c.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                let _ = resp.into_body().collect().await;
                let took = started.elapsed();
                if swapping.load(Ordering::Relaxed) {
                    during.lock().unwrap().push(took);
                } else {
                    calm.lock().unwrap().push(took);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut to_serving = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let tmp = dir.join("live.tmp");
        std::fs::copy(version, &tmp).unwrap();
        swapping.store(true, Ordering::Relaxed);
        let started = Instant::now();
        std::fs::rename(&tmp, &live).unwrap();
        while reloads(addr).await < i as u64 + 1 {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        to_serving.push(started.elapsed());
        // Keep measuring the data path a little after the swap.
        tokio::time::sleep(Duration::from_millis(100)).await;
        swapping.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    running.shutdown().await.unwrap();
    let mut calm = std::mem::take(&mut *calm.lock().unwrap());
    let mut during = std::mem::take(&mut *during.lock().unwrap());
    let kind = if precompiled { "precompiled" } else { "raw" };
    println!("{package}, {kind}: {size} bytes per version");
    println!(
        "  file replaced → new version serving: p50 {:.1} ms, max {:.1} ms over 20 swaps (includes the {} ms debounce)",
        percentile_ms(&mut to_serving.clone(), 0.5),
        max_ms(&to_serving),
        sluice::reload::DEBOUNCE.as_millis()
    );
    println!(
        "  ingest request of 100 records, no swap: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
        percentile_ms(&mut calm, 0.5),
        percentile_ms(&mut calm, 0.99),
        max_ms(&calm),
        calm.len()
    );
    println!(
        "  ingest request of 100 records, around swaps: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
        percentile_ms(&mut during, 0.5),
        percentile_ms(&mut during, 0.99),
        max_ms(&during),
        during.len()
    );
}
