//! An SSE connection on the wire, read from a raw socket: the response
//! head, chunked events, HTTP/1.0, a request head that arrives in pieces,
//! a client that leaves while no event is due, and an SSE request that is
//! not the first on its connection (served by hyper, not `direct.rs`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

const CONFIG: &str = r#"
    [sources.in]
    type = "http"
    [sinks.live]
    type = "sse"
    [routes.r]
    from = "in"
    to = ["live"]
"#;

/// Reads from `stream` until `text` has arrived; returns all read so far.
async fn read_until(stream: &mut TcpStream, seen: &mut String, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while !seen.contains(text) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in {seen:?}"))
            .unwrap();
        assert!(n > 0, "closed before {text:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

fn connections(running: &sluice::runtime::Running) -> Option<u64> {
    running
        .metrics
        .value("sluice_sse_connections", &[("sink", "live")])
}

#[tokio::test]
async fn the_response_is_chunked_over_http11_and_runs_to_the_close_over_http10() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(CONFIG, dir.path()).await;
    let addr = running.addr;

    let mut v11 = TcpStream::connect(addr).await.unwrap();
    v11.write_all(b"GET /sse/live?client_id=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen11 = String::new();
    read_until(&mut v11, &mut seen11, ": connected\nretry: 2000\n\n\r\n").await;
    let head = seen11.split("\r\n\r\n").next().unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "transfer-encoding: chunked",
        "connection: close",
        "date: ",
    ] {
        assert!(head.contains(line), "no {line:?} in {head}");
    }
    assert!(!head.contains("content-length"), "{head}");

    let mut v10 = TcpStream::connect(addr).await.unwrap();
    v10.write_all(b"GET /sse/live?client_id=a HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut seen10 = String::new();
    read_until(&mut v10, &mut seen10, ": connected\nretry: 2000\n\n").await;
    let head = seen10.split("\r\n\r\n").next().unwrap().to_lowercase();
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    let (status, _) = post_ndjson(addr, "in", &[json!({"key": "a", "value": "hello"})]).await;
    assert_eq!(status, StatusCode::OK);
    // One chunk per write, its size in hex.
    read_until(&mut v11, &mut seen11, "data: hello\n\n\r\n").await;
    let opening = ": connected\nretry: 2000\n\n";
    let body = seen11.split_once("\r\n\r\n").unwrap().1;
    let first = format!("{:x}\r\n{opening}\r\n", opening.len());
    assert!(body.starts_with(&first), "{body:?}");
    let (size, rest) = body[first.len()..].split_once("\r\n").unwrap();
    let size = usize::from_str_radix(size, 16).unwrap();
    assert!(rest[..size].ends_with("data: hello\n\n"), "{rest:?}");
    assert_eq!(&rest[size..], "\r\n");
    let body10 = {
        read_until(&mut v10, &mut seen10, "data: hello\n\n").await;
        seen10.split("\r\n\r\n").nth(1).unwrap().to_owned()
    };
    assert!(
        body10.starts_with(": connected\nretry: 2000\n\n"),
        "{body10:?}"
    );
    assert!(
        !body10.contains("\r\n"),
        "no chunk framing in 1.0: {body10:?}"
    );

    // A chunked body ends with the zero chunk when the stream ends.
    let stop = tokio::spawn(running.shutdown());
    read_until(&mut v11, &mut seen11, "\r\n0\r\n\r\n").await;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, v11.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "bytes after the last chunk: {rest:?}");
    stop.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_head_in_pieces_is_read_whole_and_errors_are_whole_responses() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(CONFIG, dir.path()).await;
    let addr = running.addr;

    let mut s = TcpStream::connect(addr).await.unwrap();
    for piece in [
        &b"GET /sse/li"[..],
        b"ve?client_id=b HTTP/1.1\r\nHo",
        b"st: x\r\nLast-Event-ID: 7\r\n",
        b"\r\n",
    ] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut seen = String::new();
    read_until(&mut s, &mut seen, ": connected").await;
    let (status, _) = post_ndjson(addr, "in", &[json!({"key": "b", "value": "x"})]).await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut s, &mut seen, "data: x\n\n").await;

    // An unknown sink: a complete 404 with its length, then the close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /sse/nope?client_id=b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    assert_eq!(body, r#"{"error":"no sse sink named `nope`"}"#);

    // No client id: 400, the same message as behind hyper.
    let (status, body) = get(addr, "/sse/live").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing ?client_id="), "{body}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_is_let_go_without_waiting_for_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(CONFIG, dir.path()).await;
    let addr = running.addr;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(SseClient::connect(addr, "live", &format!("c{i}")).await);
    }
    assert_eq!(connections(&running), Some(20));
    drop(clients);
    // No event is posted: the server must see the close by reading.
    assert!(
        eventually(WAIT, || connections(&running) == Some(0)).await,
        "connections left: {:?}",
        connections(&running)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_sse_request_after_another_on_one_connection_is_served_too() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(CONFIG, dir.path()).await;
    let addr = running.addr;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        builder(addr, "GET", path)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let health = sender.send_request(get("/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    health.into_body().collect().await.unwrap();
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(get("/sse/live?client_id=z"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let (status, _) = post_ndjson(addr, "in", &[json!({"key": "z", "value": "second"})]).await;
    assert_eq!(status, StatusCode::OK);
    let mut text = String::new();
    while !text.contains("data: second\n\n") {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no event in {text:?}"))
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.starts_with(": connected\n"), "{text:?}");
    running.shutdown().await.unwrap();
}
