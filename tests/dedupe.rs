//! `dedupe = true` on a `redis_stream` sink, against a real `redis-server`:
//! a redelivered source (a Redis group rewound, a Kafka topic read again by
//! a second group) writes nothing twice, new records still go through, and
//! the same redelivery without `dedupe` does write twice (so the tests can
//! fail). Also the `sluice check` refusals.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::kafka::{Broker, produce, unique};
use common::redis::{RedisServer, field, xadd, xrange};
use common::*;
use sluice::config::Config;

const WAIT: Duration = Duration::from_secs(30);

fn redis_route(url: &str, dedupe: bool) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "redis"
        url = "{url}"
        streams = ["in"]
        group = "g"
        consumer = "c1"
        value_field = "value"
        key_field = "key"
        batch_size = 32
        block = "100ms"
        [sinks.out]
        type = "redis_stream"
        url = "{url}"
        stream = "out"
        dedupe = {dedupe}
        [routes.copy]
        from = "in"
        to = ["out"]
        "#
    )
}

fn duplicates(running: &sluice::runtime::Running) -> u64 {
    running
        .metrics
        .value("sluice_sink_duplicates_total", &[("sink", "out")])
        .unwrap_or(0)
}

/// Copies 300 entries, rewinds the group to the start (every entry is
/// delivered again), then adds 10 more. Returns the output's values and
/// the duplicates counted.
async fn redeliver_redis(dedupe: bool) -> (Vec<String>, u64) {
    let server = RedisServer::start();
    let mut c = server.conn();
    let add = |c: &mut ::redis::Connection, range: std::ops::Range<usize>| {
        for i in range {
            xadd(
                c,
                "in",
                &[("key", &format!("k{}", i % 3)), ("value", &i.to_string())],
            );
        }
    };
    add(&mut c, 0..300);
    let running = start(&redis_route(&server.url(), dedupe), &workspace()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 300).await);
    ::redis::cmd("XGROUP")
        .arg("SETID")
        .arg("in")
        .arg("g")
        .arg("0")
        .query::<()>(&mut c)
        .unwrap();
    let expected = if dedupe { 300 } else { 600 };
    let settled = eventually(WAIT, || {
        let n = xrange(&mut c, "out").len();
        n >= expected && (!dedupe || duplicates(&running) >= 300)
    })
    .await;
    assert!(settled, "the rewound group was read again");
    add(&mut c, 300..310);
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= expected + 10).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let values = xrange(&mut c, "out")
        .iter()
        .map(|e| field(e, "value").unwrap_or_default().to_owned())
        .collect();
    let dups = duplicates(&running);
    running.shutdown().await.unwrap();
    (values, dups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_sink_writes_a_rewound_redis_group_once() {
    let (values, dups) = redeliver_redis(true).await;
    let expected: Vec<String> = (0..310).map(|i| i.to_string()).collect();
    assert_eq!(values, expected, "each entry once, in order");
    assert_eq!(dups, 300, "every redelivery recognised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dedupe_the_same_rewind_writes_twice() {
    let (values, dups) = redeliver_redis(false).await;
    assert_eq!(
        values.len(),
        610,
        "the control: a redelivery is written again"
    );
    assert_eq!(dups, 0);
}

/// A Kafka topic of 4 partitions, all into one stream: positions are kept
/// per partition, so interleaved partitions are not taken for duplicates,
/// and a second group reading the topic again writes nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_sink_keeps_positions_per_kafka_partition() {
    let broker = Broker::start();
    let server = RedisServer::start();
    let mut c = server.conn();
    let topic = unique("in");
    broker.create_topic(&topic, 4).await;
    let records: Vec<_> = (0..200)
        .map(|i: i64| {
            (
                format!("k{}", i % 11),
                i.to_string(),
                vec![],
                1_700_000_000_000 + i,
            )
        })
        .collect();
    let partitions: std::collections::BTreeSet<i32> =
        produce(&broker.bootstrap(), &topic, &records)
            .await
            .into_iter()
            .collect();
    assert!(partitions.len() > 1, "the records span partitions");
    let config = |group: &str| {
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [sources.in]
            type = "kafka"
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            group_id = "{group}"
            batch_size = 16
            [sinks.out]
            type = "redis_stream"
            url = "{url}"
            stream = "out"
            dedupe = true
            [routes.copy]
            from = "in"
            to = ["out"]
            "#,
            bootstrap = broker.bootstrap(),
            url = server.url()
        )
    };
    let first = start(&config(&unique("g")), &workspace()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 200).await);
    first.shutdown().await.unwrap();
    let second = start(&config(&unique("g")), &workspace()).await;
    assert!(
        eventually(WAIT, || duplicates(&second) >= 200).await,
        "the second group read everything again ({} duplicates seen)",
        duplicates(&second)
    );
    second.shutdown().await.unwrap();
    let mut values: Vec<u64> = xrange(&mut c, "out")
        .iter()
        .map(|e| field(e, "value").unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 200, "nothing written twice");
    values.sort_unstable();
    assert_eq!(values, (0..200).collect::<Vec<_>>(), "nothing lost");
    let positions: std::collections::BTreeMap<String, String> = ::redis::cmd("HGETALL")
        .arg("out:sluice-positions")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        positions.len(),
        partitions.len(),
        "one position per partition: {positions:?}"
    );
}

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("."), |_| None) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.problems,
    }
}

#[test]
fn sluice_check_refuses_dedupe_without_stable_positions_or_with_two_routes() {
    let http = problems(
        r#"
        [sources.web]
        type = "http"
        [sinks.out]
        type = "redis_stream"
        url = "redis://127.0.0.1:1"
        stream = "out"
        dedupe = true
        [routes.r]
        from = "web"
        to = ["out"]
        "#,
    );
    assert!(
        http.iter().any(|p| p.starts_with("sinks.out.dedupe:")
            && p.contains("`routes.r` reads `sources.web`, which is `http`")),
        "{http:?}"
    );
    let two = problems(
        r#"
        [sources.a]
        type = "redis"
        url = "redis://127.0.0.1:1"
        streams = ["a"]
        group = "g"
        [sources.b]
        type = "redis"
        url = "redis://127.0.0.1:1"
        streams = ["b"]
        group = "g"
        [sinks.out]
        type = "redis_stream"
        url = "redis://127.0.0.1:1"
        stream = "out"
        dedupe = true
        [routes.r1]
        from = "a"
        to = ["out"]
        [routes.r2]
        from = "b"
        to = ["out"]
        "#,
    );
    assert!(
        two.iter()
            .any(|p| p.contains("sinks.out.dedupe: routes r1, r2 all write here")),
        "{two:?}"
    );
}
