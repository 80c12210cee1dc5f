//! `[routes.NAME] state_changelog` on a route with a Redis source: plugin
//! state kept in a Redis hash on the source's server, written with each
//! batch before its entries are acknowledged, and restored after a
//! restart. Against a real `redis-server`, with the `tally` fixture, which
//! counts records per key in its state and stamps each output with its
//! key's count.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::redis::{RedisServer, field, pending, xadd, xrange};
use common::*;

const KEYS: usize = 16;
/// Entries per round: 5 per key.
const ROUND: usize = KEYS * 5;
const WAIT: Duration = Duration::from_secs(30);
const HASH: &str = "sluice:state:r";

fn route(url: &str, changelog: bool) -> String {
    let changelog = if changelog {
        format!("state_changelog = \"{HASH}\"")
    } else {
        String::new()
    };
    format!(
        r#"
        [sources.in]
        type = "redis"
        url = "{url}"
        streams = ["in"]
        group = "g"
        consumer = "c1"
        value_field = "value"
        key_field = "key"
        batch_size = 8
        block = "100ms"
        [plugins.tally]
        path = "{tally}"
        [sinks.out]
        type = "redis_stream"
        url = "{url}"
        stream = "out"
        [routes.r]
        from = "in"
        through = ["tally"]
        to = ["out"]
        {changelog}
        "#,
        tally = plugin("fixture-tally"),
    )
}

fn add_round(c: &mut ::redis::Connection, from: usize) {
    for i in from..from + ROUND {
        let (key, value) = (format!("k{}", i % KEYS), format!("v{i}"));
        xadd(c, "in", &[("key", &key), ("value", &value)]);
    }
}

/// Each key's counts (the `count` field) in `out`, in stream order.
fn counts(c: &mut ::redis::Connection) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in xrange(c, "out") {
        by_key
            .entry(field(&e, "key").unwrap().to_owned())
            .or_default()
            .push(field(&e, "count").unwrap().parse().unwrap());
    }
    by_key
}

fn counted_to(n: u64) -> BTreeMap<String, Vec<u64>> {
    (0..KEYS)
        .map(|k| (format!("k{k}"), (1..=n).collect()))
        .collect()
}

/// The changelog hash as the tally's counts, by field.
fn hash_counts(c: &mut ::redis::Connection) -> BTreeMap<String, u64> {
    let fields: BTreeMap<Vec<u8>, Vec<u8>> = ::redis::cmd("HGETALL").arg(HASH).query(c).unwrap();
    fields
        .into_iter()
        .map(|(f, v)| {
            let v: [u8; 8] = v.try_into().unwrap();
            (String::from_utf8(f).unwrap(), u64::from_le_bytes(v))
        })
        .collect()
}

/// Runs the route over a round of entries, stops it, runs it again over
/// another, and gives each key's counts in the output, in order.
async fn two_rounds(server: &RedisServer, changelog: bool) -> BTreeMap<String, Vec<u64>> {
    let mut c = server.conn();
    let config = route(&server.url(), changelog);
    let dir = tempfile::tempdir().unwrap();

    add_round(&mut c, 0);
    let running = start(&config, dir.path()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= ROUND).await);
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    running.shutdown().await.unwrap();
    assert_eq!(counts(&mut c), counted_to(5));

    add_round(&mut c, ROUND);
    let running = start(&config, dir.path()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 2 * ROUND).await);
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    let restored = running
        .metrics
        .value("sluice_state_restored_changes_total", &[("route", "r")])
        .unwrap_or(0);
    running.shutdown().await.unwrap();
    assert_eq!(xrange(&mut c, "out").len(), 2 * ROUND, "no duplicates");
    if changelog {
        assert_eq!(restored, KEYS as u64, "one field per key restored");
    }
    counts(&mut c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_routes_state_survives_a_restart_in_its_hash() {
    let server = RedisServer::start();
    assert_eq!(two_rounds(&server, true).await, counted_to(10));
    let expected: BTreeMap<String, u64> = (0..KEYS).map(|k| (format!("tally\0k{k}"), 10)).collect();
    assert_eq!(hash_counts(&mut server.conn()), expected);
}

/// The control: without a changelog the second run counts from 1 again,
/// so the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_changelog_a_redis_routes_state_starts_over() {
    let server = RedisServer::start();
    let twice: BTreeMap<String, Vec<u64>> = (0..KEYS)
        .map(|k| (format!("k{k}"), [1, 2, 3, 4, 5, 1, 2, 3, 4, 5].into()))
        .collect();
    assert_eq!(two_rounds(&server, false).await, twice);
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(HASH)
        .query(&mut server.conn())
        .unwrap();
    assert!(!exists);
}

/// Redis goes away while entries arrive: nothing is acknowledged that the
/// hash does not have, and once Redis is back every count goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_state_change() {
    let mut server = RedisServer::start_persistent();
    let mut c = server.conn();
    let dir = tempfile::tempdir().unwrap();
    add_round(&mut c, 0);
    let running = start(&route(&server.url(), true), dir.path()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= ROUND).await);
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    server.restart();
    let mut c = server.conn();
    add_round(&mut c, ROUND);
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 2 * ROUND).await);
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    running.shutdown().await.unwrap();
    // At-least-once: a batch caught by the restart may be counted twice,
    // but every key reaches at least 10 and the hash agrees with the output.
    let counts = counts(&mut c);
    let hash = hash_counts(&mut c);
    for k in 0..KEYS {
        let key = format!("k{k}");
        let last = *counts[&key].last().unwrap();
        assert!(last >= 10, "{key}: {:?}", counts[&key]);
        assert_eq!(hash[&format!("tally\0{key}")], last, "{key}");
    }
}
