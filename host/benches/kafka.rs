//! Kafka → client-filter → Kafka: Sluice (Wasm filter, at-least-once
//! commits) against a hand-written librdkafka consume-filter-produce loop
//! doing the same work natively, on the same broker, in one run.
//!
//!     cargo bench -p sluice --bench kafka
//!     SLUICE_BENCH_KAFKA=host:port cargo bench -p sluice --bench kafka   # external broker
//!
//! 100-byte values keyed by one of 10 client ids; the filter keeps 5.
//! Both sides read the same topic with their own group and write their own
//! output topic. Both are timed from their first record (group joins are not
//! counted): Sluice's until its sink has every kept record, the native
//! loop's until its producer is flushed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::common::kafka::EmbeddedKafka;
use sluice::config::Config;

// librdkafka's mock broker keeps only a few MB per partition (older
// segments are dropped), so stay well under that; an external broker gets
// more, so that group joins do not dominate.
const MOCK_RECORDS: usize = 80_000;
const EXTERNAL_RECORDS: usize = 400_000;
const PARTITIONS: i32 = 4;
const KEEP: [&str; 5] = ["client-0", "client-2", "client-4", "client-6", "client-8"];

fn create_topics(bootstrap: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topics: Vec<_> = ["in", "out-native", "out-sluice"]
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    // An existing topic is fine (a rerun); anything else is not.
    for r in rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap()
    {
        if let Err((topic, e)) = r {
            assert!(
                e == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "cannot create {topic}: {e}"
            );
        }
    }
}

/// The native baseline: consume, keep the 5 clients, produce, commit.
/// Timed from the first record (so the group join is not counted).
fn native(bootstrap: &str, from: &str, to: &str, records: usize) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-native")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", (16 << 20).to_string())
        .create()
        .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    consumer.subscribe(&[from]).unwrap();
    let mut start = None;
    let mut seen = 0;
    while seen < records {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        start.get_or_insert_with(Instant::now);
        seen += 1;
        let key = m.key().unwrap_or_default();
        if KEEP.iter().any(|k| k.as_bytes() == key) {
            let mut record = BaseRecord::to(to)
                .key(key)
                .payload(m.payload().unwrap_or_default());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(1));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    start.map_or(Duration::ZERO, |s| s.elapsed())
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let embedded;
    let bootstrap = match std::env::var("SLUICE_BENCH_KAFKA") {
        Ok(b) if !b.is_empty() => {
            // External brokers may not create topics on first use (tansu
            // does not): create them, fresh names per run.
            create_topics(&b);
            b
        }
        _ => {
            embedded = EmbeddedKafka::start().unwrap();
            for t in ["in", "out-native", "out-sluice"] {
                embedded.create_topic(t, PARTITIONS).unwrap();
            }
            embedded.bootstrap_servers().to_owned()
        }
    };
    let external = std::env::var("SLUICE_BENCH_KAFKA").is_ok_and(|b| !b.is_empty());
    let records = if external {
        EXTERNAL_RECORDS
    } else {
        MOCK_RECORDS
    };
    common::fill(&bootstrap, "in", records, PARTITIONS, !external);
    println!(
        "input: {records} records of 100 bytes in `in` ({PARTITIONS} partitions) at {bootstrap}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["in"]
        group_id = "bench-sluice"
        batch_size = 1024
        [plugins.keep]
        crate = "{root}/client-filter"
        config = {{ clients = ["client-0", "client-2", "client-4", "client-6", "client-8"] }}
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topic = "out-sluice"
        [routes.r]
        from = "in"
        through = ["keep"]
        to = ["out"]
        "#,
        root = root.display()
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    // Load (build, compile) the plugin before timing.
    rt.block_on(sluice::runtime::load_plugins(&config)).unwrap();

    let took_sluice = rt.block_on(common::time_route(
        config,
        (records / 2) as u64,
        Duration::from_secs(600),
    ));
    let took_native = native(&bootstrap, "in", "out-native", records);

    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    println!(
        "sluice (Wasm filter, commits after delivery): {:>10.0} records/s",
        rate(took_sluice)
    );
    println!(
        "native librdkafka loop (same filter):          {:>10.0} records/s",
        rate(took_native)
    );
    println!(
        "sluice rate / native rate: {:.2}",
        rate(took_sluice) / rate(took_native)
    );
}
