//! Plugins that trap, loop forever or eat memory: the host survives, the
//! records go where `on_error` says, and later records flow.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};

fn config(fixture: &str, limits: &str, on_error: &str) -> String {
    format!(
        r#"
        [sources.in]
        type = "http"

        [plugins.p]
        path = "{}"
        {limits}
        {on_error}

        [sinks.out]
        type = "file"
        path = "out.jsonl"
        [sinks.dlq]
        type = "file"
        path = "dlq.jsonl"

        [routes.r]
        from = "in"
        through = ["p"]
        to = ["out"]
        "#,
        plugin(fixture)
    )
}

fn values(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["value"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn recs(values: &[&str]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"key": format!("k{i}"), "value": v, "headers": {"h": format!("{i}")}}))
        .collect()
}

#[tokio::test]
async fn a_poison_record_is_isolated_and_dead_lettered_and_its_neighbours_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "fixture-trap",
        "",
        "on_error = \"dead_letter\"\ndead_letter = \"dlq\"",
    );
    let running = start(&text, dir.path()).await;
    let batch = ["a", "trap", "b", "c", "d", "e", "f", "g"];
    let (status, body) = post_ndjson(running.addr, "in", &recs(&batch)).await;
    // Dead-lettered records count as delivered: the DLQ sink has them.
    assert_eq!(status, StatusCode::OK, "{body}");
    let dlq = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(values(&dlq), ["trap"], "only the poison record");
    assert_eq!(
        values(&read_lines(&dir.path().join("out.jsonl"))),
        ["a", "b", "c", "d", "e", "f", "g"],
        "its neighbours, in order"
    );
    let h = headers(&dlq[0]);
    assert!(h["sluice-error"].starts_with("plugin trapped"), "{h:?}");
    assert!(
        h["sluice-error"].contains("fixture: trapping on record 0"),
        "the panic message (from the record alone) should reach the error: {h:?}"
    );
    assert_eq!(h["sluice-plugin"], "p");
    assert_eq!(h["sluice-stage"], "r/0");
    assert_eq!(h["sluice-origin-source"], "in");
    assert_eq!(h["sluice-origin-position"], "1");
    assert_eq!(h["h"], "1", "the record's own headers are kept");
    assert_eq!(dlq[0]["key"], "k1");

    let (status, _) = post_ndjson(running.addr, "in", &recs(&["x", "y"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        values(&read_lines(&dir.path().join("out.jsonl")))[7..],
        ["x", "y"]
    );
    let stage = [("route", "r"), ("stage", "r/0"), ("plugin", "p")];
    // Bisecting 8 records around one poison pill: the batch, its first
    // half, that half's first half, then the record alone.
    assert_eq!(
        running.metrics.value("sluice_stage_traps_total", &stage),
        Some(4)
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_stage_poison_records_total", &stage),
        Some(1)
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_stage_records_errored_total", &stage),
        Some(1)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_within_its_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("fixture-spin", "timeout = \"200ms\"", "on_error = \"drop\"");
    let running = start(&text, dir.path()).await;
    let started = Instant::now();
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["before", "spin", "next"])).await;
    let took = started.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "dropped records are acknowledged: {body}"
    );
    assert!(
        took >= Duration::from_millis(190),
        "interrupted too early: {took:?}"
    );
    // Isolating it takes three interrupted calls: the batch, its second
    // half, the record alone.
    assert!(
        took < Duration::from_secs(3),
        "interrupted too late: {took:?}"
    );

    let (status, _) = post_ndjson(running.addr, "in", &recs(&["after"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        values(&read_lines(&dir.path().join("out.jsonl"))),
        ["before", "next", "after"],
        "the looping record's neighbours flow"
    );
    let (status, health) = get(running.addr, "/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_memory_bomb_hits_its_cap_and_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "fixture-hog",
        "memory_limit = \"16MiB\"",
        "on_error = \"dead_letter\"\ndead_letter = \"dlq\"",
    );
    let running = start(&text, dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["hog"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dlq = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(values(&dlq), ["hog"]);
    let error = &headers(&dlq[0])["sluice-error"];
    assert!(error.contains("memory limit of 16777216 bytes"), "{error}");

    let (status, _) = post_ndjson(running.addr, "in", &recs(&["fine"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(values(&read_lines(&dir.path().join("out.jsonl"))), ["fine"]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn record_errors_fail_only_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"
        [plugins.p]
        path = "{}"
        on_error = "dead_letter"
        dead_letter = "dlq"
        config = {{ clients = ["7"], field = "user" }}
        [sinks.out]
        type = "file"
        path = "out.jsonl"
        [sinks.dlq]
        type = "file"
        path = "dlq.jsonl"
        [routes.r]
        from = "in"
        through = ["p"]
        to = ["out"]
        "#,
        plugin("client-filter")
    );
    let running = start(&text, dir.path()).await;
    let lines = [
        json!({"value": {"user": 7, "n": 1}}),
        json!({"value": "not json at all"}),
        json!({"value": {"user": 8, "n": 3}}),
        json!({"value": {"user": 7, "n": 4}}),
    ];
    let (status, _) = post_ndjson(running.addr, "in", &lines).await;
    assert_eq!(status, StatusCode::OK);
    let out = read_lines(&dir.path().join("out.jsonl"));
    let ns: Vec<_> = out.iter().map(|l| l["value"]["n"].clone()).collect();
    assert_eq!(ns, [json!(1), json!(4)]);
    let dlq = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["value"], "not json at all");
    assert_eq!(headers(&dlq[0])["sluice-origin-position"], "1");
    let stage = [("route", "r"), ("stage", "r/0"), ("plugin", "p")];
    assert_eq!(
        running.metrics.value("sluice_stage_traps_total", &stage),
        Some(0)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn on_error_stop_halts_the_route_without_acknowledging() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("fixture-trap", "", "on_error = \"stop\"");
    let running = start(&text, dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["trap"])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("plugin trapped"), "{body}");
    let (status, health) = get(running.addr, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert!(
        health["routes"]["r"]["failed"]
            .as_str()
            .unwrap()
            .contains("plugin `p`")
    );
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["later"])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("route `r` stopped"), "{body}");
    assert!(read_lines(&dir.path().join("out.jsonl")).is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_record_is_poison_after_poison_attempts_failures_alone() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "fixture-trap",
        "poison_attempts = 3",
        "on_error = \"dead_letter\"\ndead_letter = \"dlq\"",
    );
    let running = start(&text, dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["a", "trap"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(values(&read_lines(&dir.path().join("dlq.jsonl"))), ["trap"]);
    assert_eq!(values(&read_lines(&dir.path().join("out.jsonl"))), ["a"]);
    let stage = [("route", "r"), ("stage", "r/0"), ("plugin", "p")];
    // The batch once, then the record alone three times.
    assert_eq!(
        running.metrics.value("sluice_stage_traps_total", &stage),
        Some(4)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_fuel_budget_interrupts_a_loop_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "fixture-spin",
        "timeout = \"30s\"\nfuel = 5000000",
        "on_error = \"dead_letter\"\ndead_letter = \"dlq\"",
    );
    let running = start(&text, dir.path()).await;
    let started = Instant::now();
    let (status, body) = post_ndjson(running.addr, "in", &recs(&["before", "spin", "next"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fuel, not the 30 s time budget, stopped it: {:?}",
        started.elapsed()
    );
    let dlq = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(values(&dlq), ["spin"]);
    let error = &headers(&dlq[0])["sluice-error"];
    assert!(error.contains("fuel budget of 5000000"), "{error}");
    assert_eq!(
        values(&read_lines(&dir.path().join("out.jsonl"))),
        ["before", "next"]
    );
    let (_, body) = get(running.addr, "/plugins").await;
    let status: Value = serde_json::from_str(&body).unwrap();
    let p = &status["plugins"][0];
    assert_eq!(
        p["limit_hits"], 3,
        "the batch, its second half, the record: {p}"
    );
    assert_eq!(p["traps"], 0);
    assert!(p["last_failure"].as_str().unwrap().contains("fuel"), "{p}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_lettered_binary_record_keeps_its_exact_bytes() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "fixture-trap",
        "",
        "on_error = \"dead_letter\"\ndead_letter = \"dlq\"",
    );
    let running = start(&text, dir.path()).await;
    // Not UTF-8, and it contains the trap marker.
    let body: &[u8] = b"\xff\xfe trap \x00\x80";
    let req = builder(running.addr, "POST", "/ingest/in")
        .header("sluice-key", "k")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    let (status, reply) = call(running.addr, req).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let dlq = read_lines(&dir.path().join("dlq.jsonl"));
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].get("value").is_none(), "{}", dlq[0]);
    let value = base64::engine::general_purpose::STANDARD
        .decode(dlq[0]["value_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(value, body, "the dead letter holds the original bytes");
    assert_eq!(dlq[0]["key"], "k");
    running.shutdown().await.unwrap();
}
