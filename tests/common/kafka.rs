//! A Kafka-protocol broker for tests: librdkafka's mock cluster in-process,
//! or the external broker in `SLUICE_TEST_KAFKA` (for example tansu, started
//! by `../shared/tools/tansu.sh start`). Topic and group names are random.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::common::kafka::EmbeddedKafka;

pub enum Broker {
    Mock(EmbeddedKafka),
    External(String),
}

impl Broker {
    pub fn start() -> Self {
        match std::env::var("SLUICE_TEST_KAFKA") {
            Ok(addr) if !addr.is_empty() => Broker::External(addr),
            _ => Broker::Mock(EmbeddedKafka::start().unwrap()),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
            Broker::External(a) => a.clone(),
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        match self {
            Broker::Mock(m) => m.create_topic(name, partitions).unwrap(),
            Broker::External(addr) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", addr)
                    .create()
                    .unwrap();
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let r = admin
                    .create_topics([&topic], &AdminOptions::new())
                    .await
                    .unwrap();
                for t in r {
                    t.unwrap();
                }
            }
        }
    }
}

/// A random name with `prefix`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A record as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A record to produce: key, value, headers, timestamp (ms).
pub type Input = (String, String, Vec<(String, String)>, i64);

impl Rec {
    /// What was read, in the form it was produced (the key must be set).
    pub fn input(&self) -> Input {
        (
            self.key.clone().unwrap(),
            self.value.clone(),
            self.headers.clone(),
            self.timestamp,
        )
    }
}

/// Produces `(key, value, headers, timestamp)` records, partitioned by key
/// with murmur2 (as Java clients do); returns their partitions.
pub async fn produce(bootstrap: &str, topic: &str, records: &[Input]) -> Vec<i32> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut out = Vec::new();
    for (k, v, h, ts) in records {
        let mut headers = OwnedHeaders::new();
        for (hk, hv) in h {
            headers = headers.insert(Header {
                key: hk,
                value: Some(hv.as_bytes()),
            });
        }
        let r = FutureRecord::to(topic)
            .key(k)
            .payload(v)
            .headers(headers)
            .timestamp(*ts);
        let d = producer.send(r, Duration::from_secs(10)).await.unwrap();
        out.push(d.partition);
    }
    out
}

/// Reads `topic` from the start with a fresh group until `n` records
/// arrived (failing after `timeout`), then a little longer to catch extras.
pub fn consume(bootstrap: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Rec> {
    consume_until(bootstrap, topic, timeout, |out| out.len() >= n)
}

/// Reads `topic` from the start until `done` holds for what was read (then
/// 300 ms more, to catch extras) or `timeout` passes.
pub fn consume_until(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Rec]) -> bool,
) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    let mut extra_until = None;
    loop {
        let now = std::time::Instant::now();
        if now > deadline || extra_until.is_some_and(|t| now > t) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Rec {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
                partition: m.partition(),
                offset: m.offset(),
            });
        }
        if extra_until.is_none() && done(&out) {
            extra_until = Some(std::time::Instant::now() + Duration::from_millis(300));
        }
    }
    out
}

/// The offsets `group` has committed on `topic`'s partitions (`None` where
/// it has committed nothing).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| match c.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// A steady load for crash and soak tests: `per_round` records every
/// `pause`, keyed `k{n % 10}` with values `{"n":N}` (N counts from 0),
/// until `stop` is set; `produced` counts what the broker acknowledged.
pub fn spawn_load(
    bootstrap: &str,
    topic: &str,
    (per_round, pause): (u64, Duration),
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    produced: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::spawn(async move {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            // Rides out the broker outages the soak injects.
            .set("message.timeout.ms", "300000")
            .create()
            .unwrap();
        while !stop.load(Ordering::Acquire) {
            let from = produced.load(Ordering::Acquire);
            let sends = (from..from + per_round).map(|n| {
                let (key, value) = (format!("k{}", n % 10), format!(r#"{{"n":{n}}}"#));
                let (producer, topic) = (producer.clone(), topic.clone());
                async move {
                    producer
                        .send(
                            FutureRecord::to(&topic).key(&key).payload(&value),
                            Duration::from_secs(300),
                        )
                        .await
                        .unwrap();
                }
            });
            futures_util::future::join_all(sends).await;
            produced.fetch_add(per_round, Ordering::AcqRel);
            tokio::time::sleep(pause).await;
        }
    })
}
