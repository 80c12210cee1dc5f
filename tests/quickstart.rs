//! The quickstart example, end to end: an SSE client sees only its own
//! client's events, transformed.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sluice::config::Config;
use tokio::net::TcpListener;

#[tokio::test]
async fn quickstart_streams_only_the_subscribed_clients_events() {
    let path = workspace().join("examples").join("quickstart.toml");
    let config = Config::load(&path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap();
    let mut mine = SseClient::connect(running.addr, "notifications", "client-1").await;
    let mut filtered = SseClient::connect(running.addr, "notifications", "client-0").await;
    // 20 records/s over 5 clients: client-1 gets one every 250 ms.
    let events = mine.take(3, Duration::from_secs(10)).await;
    let mut last_seq = -1;
    for e in &events {
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["client_id"], "client-1");
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["amount", "client_id", "seq", "type"],
            "projected and renamed"
        );
        let seq = v["seq"].as_i64().unwrap();
        assert_eq!(seq % 5, 1);
        assert!(seq > last_seq, "in order");
        last_seq = seq;
    }
    assert!(
        filtered.next(Duration::from_millis(300)).await.is_none(),
        "client-0 is not in the quickstart's filter"
    );
    running.shutdown().await.unwrap();
}
