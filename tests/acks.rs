//! The ack path, against real slow and failing sinks: a record is
//! acknowledged only once every sink has it.
//!
//! The HTTP source acknowledges by answering the POST, so the response is
//! the observable ack. A FIFO that nobody reads yet is a sink that cannot
//! finish; `/dev/full` is a sink whose every write fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_ack_waits_for_the_slowest_sink() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = HeldFifo::new(dir.path());
    let text = format!(
        r#"
        [sources.in]
        type = "http"
        [sinks.fast]
        type = "file"
        path = "fast.jsonl"
        [sinks.slow]
        type = "file"
        path = "{}"
        [routes.r]
        from = "in"
        to = ["fast", "slow"]
        "#,
        fifo.path.display()
    );
    let running = start(&text, dir.path()).await;
    // Bigger than the pipe's 64 KiB buffer, so the slow sink's write blocks.
    let big = "x".repeat(200_000);
    let addr = running.addr;
    let post =
        tokio::spawn(
            async move { post_ndjson(addr, "in", &[json!({"key": "k", "value": big})]).await },
        );
    let fast = dir.path().join("fast.jsonl");
    assert!(eventually(Duration::from_secs(5), || read_lines(&fast).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !post.is_finished(),
        "acknowledged before the slow sink had the record"
    );

    fifo.release();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), post)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    running.shutdown().await.unwrap();
    let written = fifo.written();
    let line: serde_json::Value = serde_json::from_slice(written.trim_ascii()).unwrap();
    assert_eq!(line["value"].as_str().unwrap().len(), 200_000);
}

#[tokio::test]
async fn a_failing_sink_leaves_the_batch_unacknowledged_though_other_sinks_have_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        [sinks.full]
        type = "file"
        path = "/dev/full"
        [routes.r]
        from = "in"
        to = ["live", "full"]
        "#;
    let running = start(text, dir.path()).await;
    let mut sse = SseClient::connect(running.addr, "live", "k").await;
    let (status, body) =
        post_ndjson(running.addr, "in", &[json!({"key": "k", "value": "v"})]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("No space left on device"), "{body}");
    // The SSE sink did get it: at-least-once means a client retry may
    // deliver it there twice, never that it is lost.
    assert_eq!(sse.take(1, Duration::from_secs(5)).await[0].data, "v");
    let errors = running
        .metrics
        .value("sluice_sink_errors_total", &[("sink", "full")]);
    assert_eq!(errors, Some(1));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn filtered_out_records_are_acknowledged_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"
        [plugins.none]
        path = "{}"
        config = {{ clients = ["nobody"] }}
        [sinks.full]
        type = "file"
        path = "/dev/full"
        [routes.r]
        from = "in"
        through = ["none"]
        to = ["full"]
        "#,
        plugin("client-filter")
    );
    let running = start(&text, dir.path()).await;
    // The sink would fail, but no record reaches it: the batch is done.
    let (status, body) =
        post_ndjson(running.addr, "in", &[json!({"key": "k", "value": "v"})]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_source_feeding_two_routes_is_acknowledged_only_when_both_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.good]
        type = "file"
        path = "good.jsonl"
        [sinks.full]
        type = "file"
        path = "/dev/full"
        [routes.a]
        from = "in"
        to = ["good"]
        [routes.b]
        from = "in"
        to = ["full"]
        "#;
    let running = start(text, dir.path()).await;
    let (status, _) = post_ndjson(running.addr, "in", &[json!({"value": "v"})]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(read_lines(&dir.path().join("good.jsonl")).len(), 1);
    running.shutdown().await.unwrap();
}
