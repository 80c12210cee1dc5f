//! Restoring plugin state from a route's `state_changelog`: how long the
//! first batch of a partition waits, and what the restored state holds.
//!
//!     cargo bench -p sluice --bench state_restore
//!
//! For each size, a one-partition changelog topic on the embedded broker
//! (librdkafka's mock cluster, in the bench process) is filled with that
//! many distinct keys of the `tally` fixture (a `tally\0key-N` key, an
//! 8-byte count), and one record is produced to the route's input. Timed
//! from the moment the source has read that record until the sink has its
//! output: the restore plus one plugin call, best of three runs. The first row is the same
//! route without a changelog (the call alone); the row with 0 keys is the
//! fixed cost of a restore (a consumer, its connection, one fetch). The mock keeps at most 5 MB per partition, so sizes stop at
//! 50,000 keys here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::common::kafka::EmbeddedKafka;
use sluice::config::Config;

const SIZES: [usize; 4] = [0, 1_000, 10_000, 50_000];

fn config(bootstrap: &str, size: usize, changelog: bool, run: usize) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["in-{size}"]
        group_id = "bench-restore-{size}-{flag}-{run}"
        [plugins.tally]
        crate = "{root}/fixtures/tally"
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["tally"]
        to = ["out"]
        {changelog}
        "#,
        root = root.display(),
        flag = changelog,
        changelog = if changelog {
            format!("state_changelog = \"changelog-{size}\"")
        } else {
            String::new()
        }
    );
    Config::parse(&text, Path::new("."), |_| None).unwrap()
}

fn fill(bootstrap: &str, size: usize) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let send = |record: BaseRecord<'_, [u8], [u8]>| {
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    };
    for i in 0..size {
        let key = format!("tally\0key-{i}");
        let value = 1u64.to_le_bytes();
        send(
            BaseRecord::to(&format!("changelog-{size}"))
                .partition(0)
                .key(key.as_bytes())
                .payload(&value[..]),
        );
    }
    send(
        BaseRecord::to(&format!("in-{size}"))
            .partition(0)
            .key(&b"key-0"[..])
            .payload(&b"x"[..]),
    );
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// The restore plus one call, and the restored state's size in bytes.
async fn time(config: Config, size: Option<usize>) -> (Duration, u64) {
    let running = sluice::runtime::start(config).await.unwrap();
    let m = running.metrics.clone();
    let value = |name: &str, labels: &[(&str, &str)]| m.value(name, labels).unwrap_or(0);
    while value("sluice_source_records_total", &[("source", "in")]) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while value("sluice_sink_records_total", &[("sink", "out")]) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(started.elapsed() < Duration::from_secs(300), "stalled");
    }
    let took = started.elapsed();
    let bytes = match size {
        Some(size) => {
            let restored = value("sluice_state_restored_changes_total", &[("route", "r")]);
            // Each run's call adds one change (key-0's count).
            assert!(restored >= size as u64, "restored {restored} changes");
            value(
                "sluice_plugin_state_bytes",
                &[("plugin", "tally"), ("route", "r"), ("partition", "0")],
            )
        }
        None => value("sluice_plugin_state_bytes", &[("plugin", "tally")]),
    };
    running.shutdown().await.unwrap();
    (took, bytes)
}

fn main() {
    let kafka = EmbeddedKafka::start().unwrap();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    for size in SIZES {
        kafka.create_topic(&format!("in-{size}"), 1).unwrap();
        kafka.create_topic(&format!("changelog-{size}"), 1).unwrap();
        fill(&bootstrap, size);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sluice::runtime::load_plugins(&config(
        &bootstrap, 0, true, 0,
    )))
    .unwrap();
    // Best of three runs, each with its own group (so each reads the input
    // record again) and so each restoring the changelog.
    let best = |size: usize, changelog: bool| {
        (0..3)
            .map(|run| {
                let config = config(&bootstrap, size, changelog, run);
                rt.block_on(time(config, changelog.then_some(size)))
            })
            .min()
            .unwrap()
    };
    println!("keys restored   first batch   state bytes   keys/s");
    let (took, bytes) = best(0, false);
    println!(
        "no changelog    {:>8.1} ms   {bytes:>11}",
        took.as_secs_f64() * 1e3
    );
    for size in SIZES {
        let (took, bytes) = best(size, true);
        let rate = size as f64 / took.as_secs_f64();
        println!(
            "{size:>13}   {:>8.1} ms   {bytes:>11}   {rate:>8.0}",
            took.as_secs_f64() * 1e3
        );
    }
}
