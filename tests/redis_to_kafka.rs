//! Redis → Kafka sync (part of issue #14): streams found by several
//! patterns while running, mapped to topics by glob (first match wins, then
//! the fallback), keyed by a template, order kept per stream; a stream
//! matching no pattern is never read.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kafka::consume;
use common::redis::{RedisServer, pending, xadd};
use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// `XLEN stream`.
fn xlen(c: &mut ::redis::Connection, stream: &str) -> usize {
    ::redis::cmd("XLEN").arg(stream).query(c).unwrap()
}

/// The `n` field of each record's JSON value, in order.
fn ns(recs: &[common::kafka::Rec]) -> Vec<String> {
    recs.iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.value).unwrap()["n"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// `n` records of `topic`, read off the async runtime.
async fn consumed(bootstrap: &str, topic: &'static str, n: usize) -> Vec<common::kafka::Rec> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || consume(&bootstrap, topic, n, WAIT))
        .await
        .unwrap()
}

fn config(url: &str) -> String {
    format!(
        r#"
[sources.streams]
type = "redis"
url = "{url}"
patterns = ["*-stream", "device:*:stream"]
discover_interval = "200ms"
block = "100ms"
group = "sync"
key_field = "device_id"

[sinks.kafka]
type = "kafka"
bootstrap_servers = "embedded"
topic_map = [
    {{ match = "device:*:stream", topic = "device-data-topic" }},
    {{ match = "*-stream", topic = "default-stream-topic" }},
    {{ match = "never", topic = "copy-{{origin.topic}}" }},
]
topic = "default-sync-topic"
key = "{{origin.topic}}"

[routes.sync]
from = "streams"
to = ["kafka"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_found_by_patterns_land_in_their_mapped_topics_in_order() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    xadd(&mut c, "orders-stream", &[("n", "0")]);
    let running = start(&config(&redis.url()), &workspace()).await;
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    // Created after start: each pattern's, and one matching none.
    for i in 1..4 {
        xadd(&mut c, "orders-stream", &[("n", &i.to_string())]);
        xadd(
            &mut c,
            "device:7:stream",
            &[("n", &i.to_string()), ("device_id", "7")],
        );
        xadd(&mut c, "unrelated", &[("n", &i.to_string())]);
    }
    let default = consumed(&bootstrap, "default-stream-topic", 4).await;
    let devices = consumed(&bootstrap, "device-data-topic", 3).await;
    // Each stream's entries, in order (one key per stream: one partition).
    assert_eq!(ns(&default), ["0", "1", "2", "3"]);
    assert_eq!(ns(&devices), ["1", "2", "3"]);
    assert!(
        default
            .iter()
            .all(|r| r.key.as_deref() == Some("orders-stream"))
    );
    assert!(
        devices
            .iter()
            .all(|r| r.key.as_deref() == Some("device:7:stream"))
    );
    // The stream that matches no pattern was never read: no group on it.
    assert!(
        eventually(WAIT, || pending(&mut c, "orders-stream", "sync") == 0).await,
        "acknowledged after Kafka had them"
    );
    let groups: ::redis::Value = ::redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("unrelated")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        groups,
        ::redis::Value::Array(vec![]),
        "no group on `unrelated`"
    );
    running.shutdown().await.unwrap();
}

/// A synchronous connection to database `db`.
fn conn_in(redis: &RedisServer, db: u32) -> ::redis::Connection {
    ::redis::Client::open(format!("{}/{db}", redis.url()))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_database_is_discovered_and_read_and_the_origin_names_it() {
    let redis = RedisServer::start();
    let url = redis.url();
    let config = format!(
        r#"
[sources.streams]
type = "redis"
url = "{url}/9"
databases = "1-2,4"
patterns = ["*-stream"]
discover_interval = "200ms"
block = "100ms"
group = "sync"

[sinks.kafka]
type = "kafka"
bootstrap_servers = "embedded"
topic = "all"
key = "{{origin.db}}/{{origin.topic}}"

[routes.sync]
from = "streams"
to = ["kafka"]
"#
    );
    let running = start(&config, &workspace()).await;
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    // The same stream name in every database, found while running; 0, 3
    // and 9 (the URL's) are not listed.
    for db in 0..5 {
        let mut c = conn_in(&redis, db);
        for i in 0..2 {
            xadd(&mut c, "orders-stream", &[("n", &format!("{db}.{i}"))]);
        }
    }
    xadd(&mut conn_in(&redis, 9), "orders-stream", &[("n", "9.0")]);
    let got = consumed(&bootstrap, "all", 6).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.key.clone().unwrap(),
                ns(std::slice::from_ref(r)).remove(0),
            )
        })
        .collect();
    // Order holds per database's stream.
    for db in ["1", "2", "4"] {
        let of_db: Vec<&str> = seen
            .iter()
            .filter(|(k, _)| k == &format!("{db}/orders-stream"))
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(of_db, [format!("{db}.0"), format!("{db}.1")], "{got:?}");
    }
    seen.sort();
    assert_eq!(seen.len(), 6, "{seen:?}");
    for db in [1, 2, 4] {
        let mut c = conn_in(&redis, db);
        assert!(
            eventually(WAIT, || pending(&mut c, "orders-stream", "sync") == 0).await,
            "database {db}: acknowledged in its own database"
        );
    }
    for db in [0, 3, 9] {
        let groups: ::redis::Value = ::redis::cmd("XINFO")
            .arg("GROUPS")
            .arg("orders-stream")
            .query(&mut conn_in(&redis, db))
            .unwrap();
        assert_eq!(
            groups,
            ::redis::Value::Array(vec![]),
            "database {db} is not read"
        );
    }
    running.shutdown().await.unwrap();
}

#[test]
fn malformed_database_lists_are_refused_with_the_forms_that_work() {
    let base = std::path::Path::new(".");
    for (databases, reason) in [
        (r#""3-1""#, "runs backwards"),
        (r#""0-x""#, "`x` is not a database number"),
        (r#""0-99999""#, "more than 1024 databases"),
        ("[]", "name at least one database"),
    ] {
        let text = format!(
            r#"
            [sources.in]
            type = "redis"
            url = "redis://127.0.0.1:1"
            streams = ["s"]
            group = "g"
            databases = {databases}
            [sinks.out]
            type = "stdout"
            [routes.r]
            from = "in"
            to = ["out"]
            "#
        );
        let err = sluice::config::Config::parse(&text, base, |_| None).unwrap_err();
        assert!(
            err.to_string().contains(reason) && err.to_string().contains("sources.in.databases"),
            "{databases}: {err}"
        );
    }
    for ok in [r#""0-15""#, r#""0,3,5-7""#, "[0, 3]", "4"] {
        let text = format!(
            "[sources.in]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nstreams = [\"s\"]\ngroup = \"g\"\ndatabases = {ok}\n[sinks.out]\ntype = \"stdout\"\n[routes.r]\nfrom = \"in\"\nto = [\"out\"]\n"
        );
        sluice::config::Config::parse(&text, base, |_| None).unwrap();
    }
}

#[test]
fn a_map_without_a_fallback_or_a_topic_is_refused_and_origin_placeholders_parse() {
    let base = std::path::Path::new(".");
    let text = |sink: &str| {
        format!(
            r#"
            [sources.in]
            type = "http"
            [sinks.out]
            type = "kafka"
            bootstrap_servers = "embedded"
            {sink}
            [routes.r]
            from = "in"
            to = ["out"]
            "#
        )
    };
    let err = sluice::config::Config::parse(&text(""), base, |_| None).unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("sinks.out: set `topic`, `topic_map`, or both")),
        "{err}"
    );
    let err = sluice::config::Config::parse(&text(r#"topic = "x-{origin.nope}""#), base, |_| None)
        .unwrap_err();
    assert!(err.to_string().contains("{origin.topic}"), "{err}");
    sluice::config::Config::parse(
        &text(r#"topic_map = [{ match = "a*", topic = "{origin.topic}-{origin.partition}" }]"#),
        base,
        |_| None,
    )
    .unwrap();
}

/// A stream → Kafka route on `bootstrap`, deleting entries once delivered.
fn xdel_config(url: &str, bootstrap: &str) -> String {
    format!(
        r#"
[sources.s]
type = "redis"
url = "{url}"
streams = ["jobs-stream"]
group = "sync"
consumer = "one"
block = "100ms"
on_ack = "xdel"

[sinks.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "jobs"
delivery_timeout = "1s"

[routes.r]
from = "s"
to = ["kafka"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ack_xdel_deletes_an_entry_only_after_kafka_has_it() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    for i in 0..3 {
        xadd(&mut c, "jobs-stream", &[("n", &i.to_string())]);
    }
    // No broker: the deliveries fail, and every entry stays, pending.
    let running = start(&xdel_config(&redis.url(), "127.0.0.1:1"), &workspace()).await;
    assert!(eventually(WAIT, || pending(&mut c, "jobs-stream", "sync") == 3).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        xlen(&mut c, "jobs-stream"),
        3,
        "nothing deleted before Kafka had it"
    );
    running.shutdown().await.unwrap();

    // With a broker, the same consumer re-reads its pending entries,
    // delivers them, and only then are they deleted.
    let broker = sluice::common::kafka::EmbeddedKafka::start().unwrap();
    broker.create_topic("jobs", 1).unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    let running = start(&xdel_config(&redis.url(), &bootstrap), &workspace()).await;
    let got = consumed(&bootstrap, "jobs", 3).await;
    assert_eq!(got.len(), 3);
    assert!(
        eventually(WAIT, || xlen(&mut c, "jobs-stream") == 0).await,
        "deleted once delivered"
    );
    assert_eq!(pending(&mut c, "jobs-stream", "sync"), 0);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_to_kafka_example_syncs_mapped_streams_and_direct_messages() {
    init_logging();
    let redis = RedisServer::start();
    let mut c = redis.conn();
    let path = workspace().join("examples").join("redis-to-kafka.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let url = redis.url();
    let config = sluice::config::Config::parse(&text, path.parent().unwrap(), |var| {
        (var == "REDIS_URL").then(|| url.clone())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    xadd(
        &mut c,
        "device:1:stream",
        &[("device_id", "1"), ("temp", "21.5")],
    );
    xadd(&mut c, "orders-stream", &[("order", "7")]);
    xadd(&mut c, "unrelated", &[("x", "1")]);
    // The example reads databases 0-15.
    let mut db15 = conn_in(&redis, 15);
    xadd(&mut db15, "device:2:stream", &[("device_id", "2")]);
    // A direct message is acknowledged once Redis has it.
    let (status, body) = post_ndjson(
        running.addr,
        "direct",
        &[serde_json::json!({"key": "d1", "value": {"kind": "direct"}})],
    )
    .await;
    assert_eq!(status, hyper::StatusCode::OK, "{body}");
    let mut devices = consumed(&bootstrap, "device-data-topic", 2).await;
    devices.sort_by(|a, b| a.key.cmp(&b.key));
    let json = |v: &str| serde_json::from_str::<serde_json::Value>(v).unwrap();
    assert_eq!(
        json(&devices[0].value),
        serde_json::json!({"device_id": "1", "temp": "21.5"})
    );
    assert_eq!(devices[0].key.as_deref(), Some("device:1:stream"));
    assert_eq!(
        json(&devices[1].value),
        serde_json::json!({"device_id": "2"})
    );
    assert!(
        eventually(WAIT, || xlen(&mut db15, "device:2:stream") == 0).await,
        "cleaned up in its own database"
    );
    let mut others: Vec<serde_json::Value> = consumed(&bootstrap, "default-stream-topic", 2)
        .await
        .iter()
        .map(|r| json(&r.value))
        .collect();
    others.sort_by_key(|v| v.to_string());
    assert_eq!(
        others,
        [
            serde_json::json!({"key": "d1", "value": r#"{"kind":"direct"}"#}),
            serde_json::json!({"order": "7"}),
        ]
    );
    for stream in ["device:1:stream", "orders-stream", "direct-stream"] {
        assert!(
            eventually(WAIT, || xlen(&mut c, stream) == 0).await,
            "{stream} cleaned up after Kafka confirmed"
        );
    }
    assert_eq!(
        xlen(&mut c, "unrelated"),
        1,
        "a stream matching no pattern is left alone"
    );
    running.shutdown().await.unwrap();
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_longer_than_delivery_timeout_loses_nothing_and_needs_no_restart() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("jobs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let running = start(&xdel_config(&redis.url(), &bootstrap), &workspace()).await;
    let addr = running.addr;
    xadd(&mut c, "jobs-stream", &[("n", "0")]);
    let first = consumed(&bootstrap, "jobs", 1).await;
    assert_eq!(first.len(), 1, "the broker works before the outage");

    // The broker goes away for longer than delivery_timeout (1 s), while
    // entries keep arriving.
    cluster.broker_down(1).unwrap();
    for i in 1..6 {
        xadd(&mut c, "jobs-stream", &[("n", &i.to_string())]);
    }
    let pending_metric = "sluice_redis_pending{source=\"s\",db=\"0\",stream=\"jobs-stream\"}";
    let backlog = eventually_async(WAIT, || async {
        let (_, text) = get(addr, "/metrics").await;
        metric(&text, pending_metric) == Some(5)
    })
    .await;
    assert!(
        backlog,
        "the pending figure rose to the 5 undelivered entries"
    );
    let kafka_is = |state: &'static str| {
        eventually_async(WAIT, move || async move {
            health(addr)
                .await
                .2
                .contains(&("sinks.kafka".into(), state.into()))
        })
    };
    assert!(kafka_is("down").await, "/health names the broker down");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        xlen(&mut c, "jobs-stream"),
        5,
        "nothing deleted during the outage"
    );
    assert_eq!(
        pending(&mut c, "jobs-stream", "sync"),
        5,
        "nothing acknowledged"
    );

    cluster.broker_up(1).unwrap();
    let all = consumed(&bootstrap, "jobs", 6).await;
    // A redelivery after the outage may repeat an entry (at-least-once).
    let mut delivered = ns(&all);
    delivered.dedup();
    assert_eq!(
        delivered,
        ["0", "1", "2", "3", "4", "5"],
        "all of them, in order"
    );
    assert!(
        eventually(WAIT, || xlen(&mut c, "jobs-stream") == 0).await,
        "cleaned up once confirmed"
    );
    let drained = eventually_async(WAIT, || async {
        let (_, text) = get(addr, "/metrics").await;
        metric(&text, pending_metric) == Some(0)
    })
    .await;
    assert!(drained, "the pending figure fell back to 0");
    assert!(kafka_is("up").await, "/health sees it back");
    running.shutdown().await.unwrap();
}

/// `/health`'s status and the state of each link it names.
async fn health(addr: std::net::SocketAddr) -> (hyper::StatusCode, String, Vec<(String, String)>) {
    let (code, body) = get(addr, "/health").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let links = json["links"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["state"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (
        code,
        json["status"].as_str().unwrap_or("").to_owned(),
        links,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_unreachable_redis_and_kafka_and_sees_them_return() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("jobs", 1, 1).unwrap();
    cluster.broker_down(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let config = format!(
        "[server]\nready_grace = \"1s\"\n{}",
        xdel_config(&url, &bootstrap)
    );
    let running = start(&config, &workspace()).await;
    let addr = running.addr;
    let both_down = |links: &[(String, String)]| {
        links.contains(&("sources.s".into(), "down".into()))
            && links.contains(&("sinks.kafka".into(), "down".into()))
    };
    let last = std::cell::RefCell::new(None);
    let down = eventually_async(WAIT, || async {
        let seen = health(addr).await;
        let ok = seen.0 == hyper::StatusCode::OK && seen.1 == "degraded" && both_down(&seen.2);
        *last.borrow_mut() = Some(seen);
        ok
    })
    .await;
    assert!(
        down,
        "degraded (200: a restart would not help), both named: {last:?}"
    );
    let (_, body) = get(addr, "/health").await;
    assert!(body.contains("cannot reach redis://127.0.0.1:"), "{body}");
    // Past `ready_grace`, /ready says 503 and names both.
    let unready = eventually_async(WAIT, || async {
        let (code, body) = get(addr, "/ready").await;
        code == hyper::StatusCode::SERVICE_UNAVAILABLE
            && body.contains("`sources.s` cannot reach its server")
            && body.contains("`sinks.kafka` cannot reach its server")
    })
    .await;
    assert!(unready, "{:?}", get(addr, "/ready").await);

    redis.restart();
    cluster.broker_up(1).unwrap();
    let up = eventually_async(WAIT, || async {
        let seen = health(addr).await;
        let ok = seen.1 == "ok"
            && seen.2.contains(&("sources.s".into(), "up".into()))
            && seen.2.contains(&("sinks.kafka".into(), "up".into()));
        *last.borrow_mut() = Some(seen);
        ok
    })
    .await;
    assert!(up, "ok once both are back: {last:?}");
    let (code, body) = get(addr, "/ready").await;
    assert_eq!(code, hyper::StatusCode::OK, "{body}");
    let (_, body) = get(addr, "/health").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kafka = &json["links"]["sinks.kafka"];
    assert!(kafka["last_ok_secs_ago"].is_u64(), "{kafka}");
    assert!(
        kafka["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("broker"),
        "the outage is remembered: {kafka}"
    );
    let mut c = redis.conn();
    xadd(&mut c, "jobs-stream", &[("n", "0")]);
    assert_eq!(ns(&consumed(&bootstrap, "jobs", 1).await), ["0"]);
    running.shutdown().await.unwrap();
}

/// `sluice run` on `config` (written to `dir`), its log discarded.
fn spawn_sluice(dir: &std::path::Path, config: &str) -> KillOnDrop {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_killed_during_a_kafka_outage_delivers_everything_after_a_restart() {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("jobs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let port = common::redis::free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{}",
        xdel_config(&redis.url(), &bootstrap)
    );
    cluster.broker_down(1).unwrap();
    let sluice = spawn_sluice(dir.path(), &config);
    for i in 0..5 {
        xadd(&mut c, "jobs-stream", &[("n", &i.to_string())]);
    }
    assert!(
        eventually(WAIT, || pending(&mut c, "jobs-stream", "sync") == 5).await,
        "read, and held pending while Kafka is down"
    );
    // SIGKILL: nothing is flushed, nothing acknowledged.
    drop(sluice);
    cluster.broker_up(1).unwrap();
    let _sluice = spawn_sluice(dir.path(), &config);
    let got = consumed(&bootstrap, "jobs", 5).await;
    // A redelivery after the outage may repeat an entry (at-least-once).
    let mut delivered = ns(&got);
    delivered.dedup();
    assert_eq!(
        delivered,
        ["0", "1", "2", "3", "4"],
        "every entry, after the restart"
    );
    assert!(
        eventually(WAIT, || xlen(&mut c, "jobs-stream") == 0).await,
        "cleaned up once confirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_is_accepted_while_kafka_is_down_and_reaches_it_after() {
    let redis = RedisServer::start();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("direct-out", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let config = format!(
        r#"
[sources.direct]
type = "http"
[sinks.cache]
type = "redis_stream"
url = "{url}"
stream = "direct-stream"
[routes.cache]
from = "direct"
to = ["cache"]

[sources.streams]
type = "redis"
url = "{url}"
patterns = ["direct-*"]
discover_interval = "200ms"
block = "100ms"
group = "sync"
on_ack = "xdel"
[sinks.kafka]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "direct-out"
delivery_timeout = "1s"
[routes.sync]
from = "streams"
to = ["kafka"]
"#,
        url = redis.url()
    );
    cluster.broker_down(1).unwrap();
    let running = start(&config, &workspace()).await;
    let (status, body) = post_ndjson(
        running.addr,
        "direct",
        &[serde_json::json!({"key": "d1", "value": "cached first"})],
    )
    .await;
    assert_eq!(status, hyper::StatusCode::OK, "durable in Redis: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.broker_up(1).unwrap();
    let got = consumed(&bootstrap, "direct-out", 1).await;
    let entry = serde_json::from_str::<serde_json::Value>(&got[0].value).unwrap();
    assert_eq!(
        entry,
        serde_json::json!({"key": "d1", "value": "cached first"})
    );
    running.shutdown().await.unwrap();
}
