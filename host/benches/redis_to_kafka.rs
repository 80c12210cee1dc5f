//! Redis streams → Kafka (embedded), the Redis → Kafka sync design, against
//! a native baseline in the same run: XREADGROUP plus rdkafka produce,
//! written by hand with the same batch size, the same JSON conversion, the
//! same producer settings and the same XACK after delivery.
//!
//!     cargo bench -p sluice --bench redis_to_kafka
//!
//! Needs `redis-server` on the PATH. 4 streams (`dev-{i}-stream`) of
//! `ENTRIES` entries each, 4 fields (about 100 bytes); each pass reads them
//! all with a fresh consumer group. Sluice discovers the streams by pattern
//! and keys each record by its stream (`{origin.topic}`); the baseline does
//! the same. Both are timed from the first entry read until Kafka has
//! confirmed the last one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::Value;
use sluice::common::kafka::EmbeddedKafka;
use sluice::config::Config;

const STREAMS: usize = 4;
const ENTRIES: usize = 50_000;
const TOTAL: usize = STREAMS * ENTRIES;
const BATCH: usize = 1024;
const PASSES: usize = 3;

fn fill(c: &mut redis::Connection) {
    let pad = "x".repeat(60);
    for s in 0..STREAMS {
        for chunk in 0..ENTRIES / 1000 {
            let mut pipe = redis::pipe();
            for i in 0..1000 {
                let n = chunk * 1000 + i;
                pipe.cmd("XADD")
                    .arg(format!("dev-{s}-stream"))
                    .arg("*")
                    .arg("device_id")
                    .arg(s)
                    .arg("n")
                    .arg(n)
                    .arg("temp")
                    .arg("21.5")
                    .arg("pad")
                    .arg(&pad)
                    .ignore();
            }
            pipe.query::<()>(c).unwrap();
        }
    }
}

fn main() {
    let redis = common::RedisServer::start();
    let port = redis.port;
    let url = format!("redis://127.0.0.1:{port}");
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    fill(&mut c);
    let embedded = EmbeddedKafka::start().unwrap();
    embedded.create_topic("out", 4).unwrap();
    let bootstrap = embedded.bootstrap_servers().to_owned();
    println!(
        "input: {STREAMS} streams × {ENTRIES} entries (4 fields, ~100 bytes), batches of {BATCH}, embedded Kafka `out` (4 partitions)"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut sluice_best, mut native_best) = (Duration::MAX, Duration::MAX);
    for pass in 0..PASSES {
        let took = rt.block_on(run_sluice(&url, &bootstrap, &format!("sluice-{pass}")));
        let group = format!("native-{pass}");
        let native = rt.block_on(run_native(&url, &bootstrap, &group));
        eprintln!("pass {pass}: sluice {took:.2?}, native {native:.2?}");
        sluice_best = sluice_best.min(took);
        native_best = native_best.min(native);
        for g in [format!("sluice-{pass}"), group] {
            for s in 0..STREAMS {
                let pending: Value = redis::cmd("XPENDING")
                    .arg(format!("dev-{s}-stream"))
                    .arg(&g)
                    .query(&mut c)
                    .unwrap();
                let Value::Array(parts) = pending else {
                    panic!("XPENDING: {pending:?}")
                };
                assert_eq!(parts[0], Value::Int(0), "{g}: every entry XACKed");
            }
        }
    }
    let rate = |d: Duration| TOTAL as f64 / d.as_secs_f64();
    println!(
        "sluice  redis → kafka: {:>10.0} records/s (best of {PASSES})",
        rate(sluice_best)
    );
    println!(
        "native  XREADGROUP + rdkafka produce + XACK: {:>10.0} records/s (best of {PASSES})",
        rate(native_best)
    );
    println!(
        "ratio sluice / native: {:.2}",
        native_best.as_secs_f64() / sluice_best.as_secs_f64()
    );
}

/// Sluice: the streams found by pattern, each entry as a JSON object of its
/// fields, keyed by its stream.
async fn run_sluice(url: &str, bootstrap: &str, group: &str) -> Duration {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "redis"
        url = "{url}"
        patterns = ["*-stream"]
        group = "{group}"
        batch_size = {BATCH}
        block = "100ms"
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topic = "out"
        key = "{{origin.topic}}"
        [routes.r]
        from = "in"
        to = ["out"]
        "#
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    common::time_route(config, TOTAL as u64, Duration::from_secs(120)).await
}

/// The native baseline: one consumer reads every stream `BATCH` entries at
/// a time, produces each entry as a JSON object of its fields (the same
/// producer settings as Sluice's sink) and XACKs a batch once Kafka has
/// confirmed all of it, with up to 16 batches in flight.
async fn run_native(url: &str, bootstrap: &str, group: &str) -> Duration {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let streams: Vec<String> = (0..STREAMS).map(|s| format!("dev-{s}-stream")).collect();
    for s in &streams {
        let _: Value = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(s)
            .arg(group)
            .arg("0")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(16));
    let mut started = None;
    let mut read = 0;
    while read < TOTAL {
        let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg("bench")
            .arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS");
        for s in &streams {
            cmd.arg(s);
        }
        for _ in &streams {
            cmd.arg(">");
        }
        let reply: redis::streams::StreamReadReply = cmd.query_async(&mut conn).await.unwrap();
        started.get_or_insert_with(Instant::now);
        for key in reply.keys {
            let stream = key.key;
            let mut ids = Vec::with_capacity(key.ids.len());
            let mut deliveries = Vec::with_capacity(key.ids.len());
            for entry in key.ids {
                let mut object = serde_json::Map::new();
                for (field, value) in &entry.map {
                    let text = match value {
                        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        other => format!("{other:?}"),
                    };
                    object.insert(field.clone(), serde_json::Value::String(text));
                }
                let payload = serde_json::to_vec(&object).unwrap();
                let record = FutureRecord::to("out").key(&stream).payload(&payload);
                deliveries.push(producer.send_result(record).unwrap());
                ids.push(entry.id);
            }
            read += ids.len();
            let mut ack = conn.clone();
            let delivered = Arc::clone(&delivered);
            let stream = stream.clone();
            let group = group.to_owned();
            let permit = Arc::clone(&in_flight).acquire_owned().await.unwrap();
            tokio::spawn(async move {
                let n = ids.len() as u64;
                for result in join_all(deliveries).await {
                    result.unwrap().unwrap();
                }
                // Counted when Kafka confirms, as Sluice's sink count is.
                delivered.fetch_add(n, Ordering::AcqRel);
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(&group)
                    .arg(&ids)
                    .query_async(&mut ack)
                    .await
                    .unwrap();
                drop(permit);
            });
        }
        drop(permit);
    }
    while delivered.load(Ordering::Acquire) < TOTAL as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.unwrap().elapsed()
}
