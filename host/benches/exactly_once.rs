//! Kafka → client-filter → Kafka with `guarantee = "exactly_once"` against
//! the same route at-least-once, on the same broker and input, in one run.
//!
//!     cargo bench -p sluice --bench exactly_once
//!     SLUICE_BENCH_KAFKA=host:port cargo bench -p sluice --bench exactly_once
//!
//! Each shape reads the input with its own group into its own output topic,
//! twice, alternating (the best run of each counts). Exactly-once runs at
//! commit intervals of 100 ms and 1 s. Timed from the first record read
//! until the sink has every kept record and, for exactly-once, until the
//! transaction holding the last of them has committed (so the last round's
//! wait counts). The input is spread over 16 partitions because the mock
//! broker keeps at most 5 MB per partition.
//!
//! Then latency: each shape reads a fresh one-partition topic, and the bench
//! produces 40 kept records one at a time, 50 ms apart. A record's latency
//! runs from its produce call until it is visible downstream: for
//! at-least-once, until the sink has Kafka's delivery report for it; for
//! exactly-once, until the transaction holding it has committed (which is
//! when a `read_committed` consumer may see it). Both are read from the
//! metrics, polled every millisecond.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::common::kafka::EmbeddedKafka;
use sluice::config::Config;

const MOCK_RECORDS: usize = 100_000;
const EXTERNAL_RECORDS: usize = 1_000_000;
const PARTITIONS: i32 = 16;

struct Shape {
    label: &'static str,
    guarantee: &'static str,
    commit_interval: &'static str,
}

const SHAPES: [Shape; 3] = [
    Shape {
        label: "at_least_once",
        guarantee: "at_least_once",
        commit_interval: "1s",
    },
    Shape {
        label: "exactly_once, commit_interval 100ms",
        guarantee: "exactly_once",
        commit_interval: "100ms",
    },
    Shape {
        label: "exactly_once, commit_interval 1s",
        guarantee: "exactly_once",
        commit_interval: "1s",
    },
];

fn config(bootstrap: &str, shape: &Shape, run: usize) -> Config {
    config_on(bootstrap, shape, run, "in")
}

fn config_on(bootstrap: &str, shape: &Shape, run: usize, input: &str) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        instance_id = "bench"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{input}"]
        group_id = "bench-eos-{input}-{run}"
        batch_size = 1024
        commit_interval = "{interval}"
        [plugins.keep]
        crate = "{root}/client-filter"
        config = {{ clients = ["client-0", "client-2", "client-4", "client-6", "client-8"] }}
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topic = "out-{run}"
        [routes.r]
        from = "in"
        through = ["keep"]
        to = ["out"]
        guarantee = "{guarantee}"
        "#,
        interval = shape.commit_interval,
        guarantee = shape.guarantee,
        root = root.display()
    );
    Config::parse(&text, Path::new("."), |_| None).unwrap()
}

/// From the first record read until the sink has every kept record (half
/// of `records`) and, with `exactly_once`, every record read is committed.
const PROBES: usize = 40;

/// Latency of `PROBES` kept records produced one at a time (see the module
/// docs), sorted.
async fn latencies(
    config: Config,
    bootstrap: &str,
    topic: &str,
    exactly_once: bool,
) -> Vec<Duration> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let running = sluice::runtime::start(config).await.unwrap();
    let m = running.metrics.clone();
    let seen = || {
        let name = if exactly_once {
            "sluice_source_committed_records_total"
        } else {
            "sluice_sink_records_total"
        };
        let labels: &[(&str, &str)] = if exactly_once {
            &[("source", "in")]
        } else {
            &[("sink", "out")]
        };
        m.value(name, labels).unwrap_or(0)
    };
    // Let the consumer join and the first (empty) rounds pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let before = seen();
        let sent = Instant::now();
        producer
            .send(
                FutureRecord::to(topic)
                    .key("client-0")
                    .payload(&format!("{{\"n\":{i}}}")),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        while seen() <= before {
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "probe {i} never arrived"
            );
        }
        out.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await.unwrap();
    out.sort();
    out
}

async fn time(config: Config, records: u64, exactly_once: bool) -> Duration {
    let running = sluice::runtime::start(config).await.unwrap();
    let m = running.metrics.clone();
    let value = |name: &str, labels: &[(&str, &str)]| m.value(name, labels).unwrap_or(0);
    let read = || value("sluice_source_records_total", &[("source", "in")]);
    let done = || {
        let delivered = value("sluice_sink_records_total", &[("sink", "out")]) >= records / 2;
        let committed = value("sluice_source_committed_records_total", &[("source", "in")]);
        delivered && (!exactly_once || committed >= records)
    };
    while read() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while !done() {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stalled: read {}",
            read()
        );
    }
    let took = started.elapsed();
    running.shutdown().await.unwrap();
    took
}

fn main() {
    let mut embedded = None;
    let external = std::env::var("SLUICE_BENCH_KAFKA")
        .ok()
        .filter(|b| !b.is_empty());
    let bootstrap = match &external {
        Some(b) => b.clone(),
        None => {
            let kafka = embedded.insert(EmbeddedKafka::start().unwrap());
            kafka.create_topic("in", PARTITIONS).unwrap();
            for run in 0..SHAPES.len() * 2 {
                kafka
                    .create_topic(&format!("out-{run}"), PARTITIONS)
                    .unwrap();
            }
            kafka.bootstrap_servers().to_owned()
        }
    };
    let records = if external.is_some() {
        EXTERNAL_RECORDS
    } else {
        MOCK_RECORDS
    };
    common::fill(&bootstrap, "in", records, PARTITIONS, external.is_none());
    println!(
        "input: {records} records of 100 bytes in `in` ({PARTITIONS} partitions) at {bootstrap}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sluice::runtime::load_plugins(&config(
        &bootstrap, &SHAPES[0], 0,
    )))
    .unwrap();
    let mut best = [f64::MAX; SHAPES.len()];
    for round in 0..2 {
        for (i, shape) in SHAPES.iter().enumerate() {
            let run = round * SHAPES.len() + i;
            let started = Instant::now();
            let took = rt.block_on(time(
                config(&bootstrap, shape, run),
                records as u64,
                shape.guarantee == "exactly_once",
            ));
            eprintln!(
                "run {run}: {} took {:.2}s ({:.1}s with start and stop)",
                shape.label,
                took.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            best[i] = best[i].min(took.as_secs_f64());
        }
    }
    let mut latency = Vec::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        let topic = format!("lat-{i}");
        if let Some(kafka) = &embedded {
            kafka.create_topic(&topic, 1).unwrap();
        }
        let config = config_on(&bootstrap, shape, 0, &topic);
        latency.push(rt.block_on(latencies(
            config,
            &bootstrap,
            &topic,
            shape.guarantee == "exactly_once",
        )));
    }
    let rate = |s: f64| records as f64 / s;
    for (shape, secs) in SHAPES.iter().zip(best) {
        println!("{:<38} {:>10.0} records/s", shape.label, rate(secs));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (shape, l) in SHAPES.iter().zip(&latency) {
        println!(
            "{:<38} latency p50 {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
            shape.label,
            ms(l[l.len() / 2]),
            ms(l[l.len() * 9 / 10]),
            ms(l[l.len() - 1])
        );
    }
    for (shape, secs) in SHAPES.iter().zip(best).skip(1) {
        println!(
            "{} / at_least_once: {:.2}",
            shape.label,
            rate(secs) / rate(best[0])
        );
    }
}
