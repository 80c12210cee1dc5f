//! End to end over real sockets: records posted to `/ingest` come back over
//! SSE, exactly, in order, with keys and headers intact.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn posted_records_arrive_over_sse_exactly_in_order_for_their_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"

        [plugins.clients]
        path = "{}"
        config = {{ clients = ["c1", "c2"] }}

        [sinks.live]
        type = "sse"
        format = "envelope"

        [sinks.log]
        type = "file"
        path = "out.jsonl"

        [routes.r]
        from = "in"
        through = ["clients"]
        to = ["live", "log"]
        "#,
        plugin("client-filter")
    );
    let running = start(&text, dir.path()).await;
    let addr = running.addr;
    let mut c1 = SseClient::connect(addr, "live", "c1").await;
    let mut c2 = SseClient::connect(addr, "live", "c2").await;
    let mut c3 = SseClient::connect(addr, "live", "c3").await;

    let records = [
        json!({"key": "c1", "value": {"n": 1}, "headers": {"trace": "t-1", "Kind": "a"}, "timestamp": 1000}),
        json!({"key": "c2", "value": {"n": 2}}),
        json!({"key": "c3", "value": {"n": 3}}),
        json!({"key": "c1", "value": "plain text", "timestamp": 1001}),
        json!({"value": {"n": 5}}),
        json!({"key": "c1", "value": {"n": 6}, "headers": {"trace": "t-6"}, "timestamp": 1002}),
    ];
    let (status, body) = post_ndjson(addr, "in", &records).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"records":6}"#);

    let got: Vec<_> = c1.take(3, WAIT).await;
    let envelopes: Vec<_> = got.iter().map(envelope).collect();
    assert_eq!(
        envelopes,
        vec![
            json!({"key": "c1", "value": {"n": 1}, "headers": {"trace": "t-1", "Kind": "a"}, "timestamp": 1000}),
            json!({"key": "c1", "value": "plain text", "headers": {}, "timestamp": 1001}),
            json!({"key": "c1", "value": {"n": 6}, "headers": {"trace": "t-6"}, "timestamp": 1002}),
        ]
    );
    let ids: Vec<u64> = got
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    assert!(c1.next(QUIET).await.is_none(), "c1 got an extra event");

    let c2_events = c2.take(1, WAIT).await;
    assert_eq!(envelope(&c2_events[0])["value"], json!({"n": 2}));
    assert!(c2.next(QUIET).await.is_none());
    assert!(c3.next(QUIET).await.is_none(), "c3 is filtered out");

    // The file sink got the four kept records, in order, before the 200.
    let lines = read_lines(&dir.path().join("out.jsonl"));
    let keys: Vec<_> = lines.iter().map(|l| l["key"].clone()).collect();
    assert_eq!(keys, [json!("c1"), json!("c2"), json!("c1"), json!("c1")]);

    let m = &running.metrics;
    assert_eq!(
        m.value("sluice_route_records_in_total", &[("route", "r")]),
        Some(6)
    );
    let stage = [("route", "r"), ("stage", "r/0"), ("plugin", "clients")];
    assert_eq!(
        m.value("sluice_stage_records_dropped_total", &stage),
        Some(2)
    );
    assert_eq!(
        m.value("sluice_sink_records_total", &[("sink", "log")]),
        Some(4)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn raw_bodies_take_key_and_headers_from_the_request_and_transforms_apply() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"

        [plugins.slim]
        path = "{}"
        [plugins.slim.config]
        fields = ["user", "event"]
        rename = {{ event = "type" }}
        headers = {{ via = "sluice" }}

        [sinks.live]
        type = "sse"
        format = "envelope"

        [routes.r]
        from = "in"
        through = ["slim"]
        to = ["live"]
        "#,
        plugin("json-transform")
    );
    let running = start(&text, dir.path()).await;
    let addr = running.addr;
    // The client id is percent-encoded in the URL, as a browser would send it.
    let mut sse = SseClient::connect(addr, "live", "u%207").await;
    let req = builder(addr, "POST", "/ingest/in?key=u%207")
        .header("sluice-header-trace", "abc")
        .header("sluice-timestamp", "1234")
        .body(Full::new(Bytes::from_static(
            br#"{"user":7,"event":"login","secret":"x"}"#,
        )))
        .unwrap();
    let (status, body) = call(addr, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = sse.take(1, WAIT).await;
    assert_eq!(
        envelope(&e[0]),
        json!({"key": "u 7", "value": {"user": 7, "type": "login"}, "headers": {"trace": "abc", "via": "sluice"}, "timestamp": 1234})
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn ports_route_records_to_their_sinks_and_unmapped_ports_use_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"

        [plugins.by-region]
        path = "{}"
        config = {{ field = "region" }}

        [sinks.eu]
        type = "file"
        path = "eu.jsonl"
        [sinks.rest]
        type = "file"
        path = "rest.jsonl"
        [sinks.all]
        type = "file"
        path = "all.jsonl"

        [routes.r]
        from = "in"
        through = ["by-region"]
        to = {{ eu = ["eu", "all"], default = ["rest", "all"] }}
        "#,
        plugin("port-router")
    );
    let running = start(&text, dir.path()).await;
    let records: Vec<_> = ["eu", "us", "eu", "apac", "eu"]
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"key": format!("k{i}"), "value": {"region": r, "i": i}}))
        .collect();
    let (status, body) = post_ndjson(running.addr, "in", &records).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let idx = |file: &str| -> Vec<i64> {
        read_lines(&dir.path().join(file))
            .iter()
            .map(|l| l["value"]["i"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(idx("eu.jsonl"), [0, 2, 4]);
    assert_eq!(idx("rest.jsonl"), [1, 3]);
    assert_eq!(idx("all.jsonl"), [0, 1, 2, 3, 4]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_nothing_is_half_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        max_body = "1KiB"
        max_records = 3
        [sinks.log]
        type = "file"
        path = "out.jsonl"
        [routes.r]
        from = "in"
        to = ["log"]
        "#;
    let running = start(text, dir.path()).await;
    let addr = running.addr;

    let (status, body) = post_ndjson(addr, "nope", &[json!({"value": 1})]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no http source named `nope`"), "{body}");

    let req = builder(addr, "POST", "/ingest/in")
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from("{\"value\":1}\n{\"value\": oops}\n")))
        .unwrap();
    let (status, body) = call(addr, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("line 2"), "{body}");

    let req = builder(addr, "POST", "/ingest/in")
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .unwrap();
    let (status, body) = call(addr, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Four NDJSON lines where three are allowed: refused whole.
    let four: Vec<_> = (0..4).map(|i| json!({"value": i})).collect();
    let (status, body) = post_ndjson(addr, "in", &four).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body.contains("more than max_records (3) records in one request"),
        "{body}"
    );

    let (status, body) = get(addr, "/sse/log").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get(addr, "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing from the rejected requests reached the sink.
    assert!(read_lines(&dir.path().join("out.jsonl")).is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_clients_each_get_their_own_events_and_disconnects_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        [routes.r]
        from = "in"
        to = ["live"]
        "#;
    let running = start(text, dir.path()).await;
    let addr = running.addr;
    let n = 50;
    let mut clients = Vec::new();
    for i in 0..n {
        clients.push(SseClient::connect(addr, "live", &format!("c{i}")).await);
    }
    let gauge = || {
        running
            .metrics
            .value("sluice_sse_connections", &[("sink", "live")])
    };
    assert_eq!(gauge(), Some(n));
    let records: Vec<_> = (0..n)
        .flat_map(|i| {
            (0..3).map(move |j| json!({"key": format!("c{i}"), "value": format!("{i}-{j}")}))
        })
        .collect();
    let (status, _) = post_ndjson(addr, "in", &records).await;
    assert_eq!(status, StatusCode::OK);
    for (i, c) in clients.iter_mut().enumerate() {
        let data: Vec<_> = c.take(3, WAIT).await.into_iter().map(|e| e.data).collect();
        assert_eq!(data, [format!("{i}-0"), format!("{i}-1"), format!("{i}-2")]);
    }
    drop(clients);
    // The server notices a gone client at its next write; nudge every one.
    let records: Vec<_> = (0..n)
        .map(|i| json!({"key": format!("c{i}"), "value": "bye"}))
        .collect();
    assert!(
        eventually(WAIT, || gauge() == Some(0)).await || {
            post_ndjson(addr, "in", &records).await;
            eventually(WAIT, || gauge() == Some(0)).await
        },
        "connections left: {:?}",
        gauge()
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_connections_get_heartbeats_and_shutdown_ends_streams_after_the_last_event() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [server]
        shutdown_grace = "3s"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        heartbeat = "100ms"
        [routes.r]
        from = "in"
        to = ["live"]
        "#;
    let running = start(text, dir.path()).await;
    let addr = running.addr;
    let mut c = SseClient::connect(addr, "live", "k").await;
    // No events for a second: only heartbeats (every 100 ms) arrive. The
    // window is wide so a loaded machine still sees at least two.
    assert!(c.next(Duration::from_millis(1000)).await.is_none());
    assert!(
        c.comments.iter().filter(|x| *x == "keep-alive").count() >= 2,
        "{:?}",
        c.comments
    );
    let (status, _) = post_ndjson(addr, "in", &[json!({"key": "k", "value": "last"})]).await;
    assert_eq!(status, StatusCode::OK);
    let shutdown = tokio::spawn(running.shutdown());
    assert_eq!(c.take(1, WAIT).await[0].data, "last");
    assert!(c.next(WAIT).await.is_none());
    assert!(c.ended, "the stream should end at shutdown");
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_never_stalls_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        queue = 64
        [sinks.log]
        type = "file"
        path = "out.jsonl"
        [routes.r]
        from = "in"
        to = ["live", "log"]
        "#;
    let running = start(text, dir.path()).await;
    let addr = running.addr;
    let mut slow = SseClient::connect(addr, "live", "slow").await;
    let mut fast = SseClient::connect(addr, "live", "fast").await;
    // 20 posts of 25 events each per client, 20 KB an event: 10 MB for the
    // slow client, far more than its 64-event queue and the socket buffers
    // hold while it reads nothing. The fast client reads as it goes.
    let pad = "x".repeat(20_000);
    for round in 0..20 {
        let records: Vec<_> = (0..50)
            .map(|i| {
                let key = if i % 2 == 0 { "slow" } else { "fast" };
                json!({"key": key, "value": format!("{round}-{i}:{pad}")})
            })
            .collect();
        let (status, body) = tokio::time::timeout(WAIT, post_ndjson(addr, "in", &records))
            .await
            .expect("the route stalled behind a slow client");
        assert_eq!(status, StatusCode::OK, "{body}");
        let got = fast.take(25, WAIT).await;
        let expected: Vec<String> = (0..25).map(|j| format!("{round}-{}:", 2 * j + 1)).collect();
        let prefixes: Vec<String> = got
            .iter()
            .map(|e| e.data.split(':').next().unwrap_or("").to_owned() + ":")
            .collect();
        assert_eq!(prefixes, expected, "round {round}");
    }
    assert_eq!(read_lines(&dir.path().join("out.jsonl")).len(), 1000);

    // The slow client gets what was queued for it, then a final comment,
    // then the end of the stream.
    let mut received = 0;
    while slow.next(WAIT).await.is_some() {
        received += 1;
    }
    assert!(slow.ended, "the slow client should be disconnected");
    assert!(
        received < 500,
        "a cut-off client cannot have every event ({received})"
    );
    assert_eq!(
        slow.comments.last().map(String::as_str),
        Some("disconnected: client fell behind; reconnect")
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_sse_connections", &[("sink", "live")]),
        Some(1)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_id_can_come_from_a_json_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        client_field = "user"
        [routes.r]
        from = "in"
        to = ["live"]
        "#;
    let running = start(text, dir.path()).await;
    let mut seven = SseClient::connect(running.addr, "live", "7").await;
    let mut ann = SseClient::connect(running.addr, "live", "ann").await;
    let records = [
        json!({"key": "ignored", "value": {"user": 7, "n": 1}}),
        json!({"value": {"user": "ann", "n": 2}}),
        json!({"value": {"n": 3}}),
        json!({"value": "not json"}),
        json!({"value": {"user": 7, "n": 5}}),
    ];
    let (status, _) = post_ndjson(running.addr, "in", &records).await;
    assert_eq!(status, StatusCode::OK);
    let parse = |e: &Event| serde_json::from_str::<serde_json::Value>(&e.data).unwrap();
    let got: Vec<_> = seven.take(2, WAIT).await.iter().map(parse).collect();
    assert_eq!(
        got,
        [json!({"user": 7, "n": 1}), json!({"user": 7, "n": 5})]
    );
    assert_eq!(
        parse(&ann.take(1, WAIT).await[0]),
        json!({"user": "ann", "n": 2})
    );
    assert!(seven.next(QUIET).await.is_none());
    let unmatched = [("sink", "live")];
    assert_eq!(
        running
            .metrics
            .value("sluice_sse_records_without_client_total", &unmatched),
        Some(2),
        "the record without the field and the one that is not JSON"
    );
    running.shutdown().await.unwrap();
}

/// `max_connections_per_client` and `max_connections` refuse the
/// connection past them (429 and 503, naming the key), count it, and leave
/// the open ones streaming; a closed connection frees its place.
#[tokio::test]
async fn sse_connections_are_capped_per_client_and_per_sink() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [sources.in]
        type = "http"
        [sinks.live]
        type = "sse"
        max_connections = 3
        max_connections_per_client = 2
        [routes.r]
        from = "in"
        to = ["live"]
        "#;
    let running = start(text, dir.path()).await;
    let addr = running.addr;
    let a1 = SseClient::connect(addr, "live", "a").await;
    let mut a2 = SseClient::connect(addr, "live", "a").await;
    let (status, body) = get(addr, "/sse/live?client_id=a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body.contains("client `a` already has 2 connections open (max_connections_per_client)"),
        "{body}"
    );
    let mut b1 = SseClient::connect(addr, "live", "b").await;
    let (status, body) = get(addr, "/sse/live?client_id=c").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("already has 3 connections open (max_connections)"),
        "{body}"
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_sse_refused_total", &[("sink", "live")]),
        Some(2)
    );

    let (status, _) = post_ndjson(
        addr,
        "in",
        &[
            json!({"key": "a", "value": 1}),
            json!({"key": "b", "value": 2}),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a2.next(WAIT).await.unwrap().data, "1");
    assert_eq!(b1.next(WAIT).await.unwrap().data, "2");

    drop(a1);
    assert!(
        eventually_async(WAIT, || async {
            running
                .metrics
                .value("sluice_sse_connections", &[("sink", "live")])
                == Some(2)
        })
        .await
    );
    let _a3 = SseClient::connect(addr, "live", "a").await;
    running.shutdown().await.unwrap();
}
