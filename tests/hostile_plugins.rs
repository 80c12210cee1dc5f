//! Plugins written to attack the host (the `hostile` fixture): each attack
//! ends in an exact outcome (the error, the metric, the `/plugins` entry),
//! the attacking record is dead-lettered, its neighbours flow, and another
//! route of the same process keeps serving. The sandbox `probe` fixture
//! looks for files, directories, environment and arguments. Attacks with
//! tests elsewhere: an endless loop per batch, a memory bomb and a plugin
//! that traps (`misbehaving_plugins.rs`); out-of-range indexes and ports in
//! a result (`wasm::checks` and the format's `validate`, unit tests).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};

fn config(plugin_config: &str) -> String {
    format!(
        r#"
        [sources.in]
        type = "http"
        [sources.other]
        type = "http"

        [plugins.p]
        path = "{hostile}"
        timeout = "500ms"
        max_outputs_per_record = 100
        on_error = "dead_letter"
        dead_letter = "dlq"
        {plugin_config}

        [sinks.out]
        type = "file"
        path = "out.jsonl"
        [sinks.dlq]
        type = "file"
        path = "dlq.jsonl"
        [sinks.other]
        type = "file"
        path = "other.jsonl"

        [routes.r]
        from = "in"
        through = ["p"]
        to = ["out"]
        [routes.healthy]
        from = "other"
        to = ["other"]
        "#,
        hostile = plugin("fixture-hostile"),
    )
}

fn recs(values: &[&str]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"key": format!("k{i}"), "value": v}))
        .collect()
}

fn values(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match &l["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The `/plugins` entry of plugin `p`.
async fn status(addr: std::net::SocketAddr) -> Value {
    let (_, body) = get(addr, "/plugins").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    v["plugins"][0].clone()
}

/// Sends `attack` between two harmless records; gives the dead letter's
/// `sluice-error`, after checking the neighbours and the other route.
async fn attack(running: &sluice::runtime::Running, dir: &std::path::Path, attack: &str) -> String {
    let (code, body) = post_ndjson(running.addr, "in", &recs(&["before", attack, "after"])).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        values(&read_lines(&dir.join("out.jsonl"))),
        ["before", "after"],
        "the attack's neighbours flow"
    );
    let dlq = read_lines(&dir.join("dlq.jsonl"));
    assert_eq!(
        values(&dlq),
        [attack],
        "the attacking record is dead-lettered"
    );
    let (code, _) = post_ndjson(running.addr, "other", &recs(&["still here"])).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        values(&read_lines(&dir.join("other.jsonl"))),
        ["still here"],
        "the other route keeps serving"
    );
    let (code, health) = get(running.addr, "/health").await;
    assert_eq!(code, StatusCode::OK, "{health}");
    headers(&dlq[0])["sluice-error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_wasm_stack_and_is_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(""), dir.path()).await;
    let error = attack(&running, dir.path(), "recurse").await;
    assert!(
        error.starts_with("plugin trapped: ") && error.contains("call stack exhausted"),
        "{error}"
    );
    let traps = running
        .metrics
        .value(
            "sluice_stage_traps_total",
            &[("route", "r"), ("stage", "r/0"), ("plugin", "p")],
        )
        .unwrap();
    assert!(traps >= 1, "traps: {traps}");
    let p = status(running.addr).await;
    assert!(p["traps"].as_u64().unwrap() >= 1, "{p}");
    assert!(
        p["last_failure"]
            .as_str()
            .unwrap()
            .contains("call stack exhausted"),
        "{p}"
    );
    running.shutdown().await.unwrap();
}

/// A frame buffer per call overflows Rust's shadow stack, which is in the
/// plugin's linear memory: it runs off the bottom of that memory, which
/// wasmtime's bounds checks stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_the_shadow_stack_in_linear_memory_is_a_bounds_trap() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(""), dir.path()).await;
    let error = attack(&running, dir.path(), "smash").await;
    assert_eq!(
        error,
        "plugin trapped: wasm trap: out of bounds memory access"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_outputs_is_refused_as_a_malformed_result() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(""), dir.path()).await;
    let error = attack(&running, dir.path(), "flood").await;
    assert_eq!(
        error,
        "plugin returned a malformed result: 5000 output records for 1 input records, more than max_outputs_per_record (100) allows"
    );
    let p = status(running.addr).await;
    assert!(p["traps"].as_u64().unwrap() >= 1, "{p}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_open_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = format!("connect:{}", listener.local_addr().unwrap());
    let running = start(&config(""), dir.path()).await;
    let (code, body) = post_ndjson(running.addr, "in", &recs(&[&target])).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        read_lines(&dir.path().join("out.jsonl"))[0]["value"],
        json!({"connected": false})
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected"
    );
    running.shutdown().await.unwrap();
}

#[test]
fn an_init_that_never_returns_is_interrupted_and_named() {
    let (ok, err) = sluice_check(&config("[plugins.p.config]\nspin_in_init = true"));
    assert!(!ok);
    assert!(
        err.contains("plugins.p") && err.contains("exceeded its time budget of 500ms"),
        "{err}"
    );
}

/// WASI grants a plugin nothing: no environment, no arguments, no files,
/// no directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_shows_no_files_environment_or_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("").replace(&plugin("fixture-hostile"), &plugin("fixture-probe"));
    let running = start(&text, dir.path()).await;
    let (code, body) = post_ndjson(running.addr, "in", &recs(&["look"])).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        read_lines(&dir.path().join("out.jsonl"))[0]["value"],
        json!({"env": 0, "args": 0, "file": false, "dir": false})
    );
    running.shutdown().await.unwrap();
}
