//! What the benches share.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use sluice::config::Config;

/// Starts Sluice from `config` (its plugins already loaded, so building and
/// compiling are not timed) and returns the time from the first record that
/// source `in` read until sink `out` has `expected` records. Consumer-group
/// joins are therefore not counted. Fails after `limit` without progress.
pub async fn time_route(config: Config, expected: u64, limit: Duration) -> Duration {
    let running = sluice::runtime::start(config).await.unwrap();
    let metrics = running.metrics.clone();
    let read = || {
        metrics
            .value("sluice_source_records_total", &[("source", "in")])
            .unwrap_or(0)
    };
    let done = || {
        metrics
            .value("sluice_sink_records_total", &[("sink", "out")])
            .unwrap_or(0)
    };
    while read() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    while done() < expected {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            started.elapsed() < limit,
            "stalled: read {}, delivered {}",
            read(),
            done()
        );
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!("... read {}, delivered {}", read(), done());
        }
    }
    let took = started.elapsed();
    running.shutdown().await.unwrap();
    took
}

/// Runs `wasm` and `native` over `input` five times each, alternating so
/// machine noise hits both alike, and prints the best rate of each and
/// their ratio. Both must agree on the
/// number of records out.
pub fn compare(
    label: &str,
    input: &[sluice::record::FlatBatch],
    mut wasm: impl FnMut(&sluice::record::FlatBatch) -> usize,
    mut native: impl FnMut(&sluice::record::FlatBatch) -> usize,
) {
    let pass = |f: &mut dyn FnMut(&sluice::record::FlatBatch) -> usize,
                batches: &[sluice::record::FlatBatch]| {
        let start = Instant::now();
        let out: usize = batches.iter().map(&mut *f).sum();
        (start.elapsed(), out)
    };
    // Warm up: instance creation, caches.
    pass(&mut wasm, &input[..10]);
    pass(&mut native, &input[..10]);
    let (mut best_wasm, mut best_native) = (Duration::MAX, Duration::MAX);
    let (mut out_wasm, mut out_native) = (0, 0);
    for _ in 0..5 {
        let (t, n) = pass(&mut wasm, input);
        best_wasm = best_wasm.min(t);
        out_wasm = n;
        let (t, n) = pass(&mut native, input);
        best_native = best_native.min(t);
        out_native = n;
    }
    assert_eq!(
        out_wasm, out_native,
        "{label}: Wasm and native disagree on the output"
    );
    let records: usize = input.iter().map(sluice::record::FlatBatch::len).sum();
    let (w, n) = (rate(records, best_wasm), rate(records, best_native));
    println!("{label}  ({out_wasm} of {records} records out)");
    println!(
        "  wasm   (one core, epoch limits on): {w:>12.0} records/s  {:>7.1} ns/record",
        1e9 / w
    );
    println!(
        "  native (same crate, same loop):     {n:>12.0} records/s  {:>7.1} ns/record",
        1e9 / n
    );
    println!(
        "  wasm time / native time: {:.2}x",
        best_wasm.as_secs_f64() / best_native.as_secs_f64()
    );
}

/// Records per second.
pub fn rate(records: usize, took: Duration) -> f64 {
    records as f64 / took.as_secs_f64()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` without persistence on a free port, in a temporary
/// directory; stopped when dropped.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one (Debian: redis-server) and gives it 300 ms to listen.
    pub fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        std::thread::sleep(Duration::from_millis(300));
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `client-filter` compiled natively, with the benches' config: keep 5 of
/// the generator's 10 client ids.
pub fn native_client_filter() -> client_filter::ClientFilter {
    use sluice_sdk::Filter as _;
    let config = serde_json::json!({
        "clients": ["client-0", "client-2", "client-4", "client-6", "client-8"]
    });
    client_filter::ClientFilter::init(sluice_sdk::testing::config(config).unwrap()).unwrap()
}

/// `json-transform` compiled natively, with the benches' config: 4 fields,
/// one renamed, a header added.
pub fn native_json_transform() -> json_transform::JsonTransform {
    use sluice_sdk::Transform as _;
    let config = serde_json::json!({
        "fields": ["client_id", "seq", "event", "amount"],
        "rename": {"event": "type"},
        "headers": {"via": "sluice"},
    });
    json_transform::JsonTransform::init(sluice_sdk::testing::config(config).unwrap()).unwrap()
}

/// Produces `records` 100-byte values keyed by one of 10 client ids. `check_kept` verifies the broker kept it all (the mock
/// broker drops old segments); tansu's watermarks cannot be used for that.
pub fn fill(bootstrap: &str, topic: &str, records: usize, partitions: i32, check_kept: bool) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let value = format!("{{\"pad\":\"{}\"}}", "x".repeat(90));
    for i in 0..records {
        let key = format!("client-{}", i % 10);
        loop {
            match producer.send(
                rdkafka::producer::BaseRecord::to(topic)
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    if !check_kept {
        return;
    }
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let total: i64 = (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum();
    assert_eq!(
        total, records as i64,
        "the broker kept {total} of {records} records"
    );
}
