//! Kafka (embedded) → client-filter (Wasm) → Redis XADD to per-client
//! streams, against `redis-benchmark` pipelined XADD of the same size on the
//! same redis-server, in one run.
//!
//!     cargo bench -p sluice --bench redis
//!
//! Needs `redis-server` and `redis-benchmark` on the PATH (Debian:
//! redis-server, redis-tools). 100-byte values keyed by one of 10 client
//! ids; the filter keeps every `client-*` record, so every record is one
//! XADD. Sluice is timed from its first record read until Redis answered
//! the last XADD (the group join is not counted).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::common::kafka::EmbeddedKafka;
use sluice::config::Config;

const RECORDS: usize = 80_000;
const PARTITIONS: i32 = 4;
const PASSES: usize = 3;

fn value() -> String {
    format!("{{\"pad\":\"{}\"}}", "x".repeat(90))
}

fn fill(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let value = value();
    for i in 0..RECORDS {
        let key = format!("client-{}", i % 10);
        while producer
            .send(BaseRecord::to("in").key(&key).payload(&value))
            .is_err()
        {
            producer.poll(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// User + system CPU time of process `pid` so far, in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() * 10
}

/// `redis-benchmark -P 64` XADD with the same fields and sizes from
/// `clients` connections; requests/s.
fn raw_xadd(port: u16, clients: usize) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string()])
        .args(["-n", "1000000", "-P", "64", "-q"])
        .args(["XADD", "rb", "*", "key", "client-1", "value", &value()])
        .output()
        .expect("redis-benchmark (Debian: redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD rb * …: 512820.50 requests per second, p50=…"; with -q the
    // progress lines are separated by carriage returns.
    let line = text
        .rsplit('\r')
        .find(|l| l.contains("requests per second"))
        .unwrap_or_else(|| panic!("unexpected redis-benchmark output: {text}"));
    let before = line.split(" requests per second").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let redis_server = common::RedisServer::start();
    let port = redis_server.port;
    let embedded = EmbeddedKafka::start().unwrap();
    embedded.create_topic("in", PARTITIONS).unwrap();
    let bootstrap = embedded.bootstrap_servers().to_owned();
    fill(&bootstrap);
    println!(
        "input: {RECORDS} records of 100 bytes in `in` ({PARTITIONS} partitions), embedded Kafka"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let xadd_sink = format!(
        "type = \"redis_stream\"\nurl = \"redis://127.0.0.1:{port}\"\nstream = \"client:{{key}}\""
    );
    // Alternating passes, best of each (these machines are noisy). Each
    // pass reads the topic with a fresh consumer group. The same route into
    // a blackhole gives the ceiling of the Kafka and Wasm side.
    let (mut took, mut ceiling) = (Duration::MAX, Duration::MAX);
    let (mut raw_rate, mut raw_one) = (0f64, 0f64);
    // The same sink with `dedupe = true` (one EVALSHA per record), into
    // streams of its own per pass so every pass writes every record.
    let mut deduped = Duration::MAX;
    for pass in 0..PASSES {
        let blackhole = rt.block_on(run_sluice(
            &bootstrap,
            &format!("bench-blackhole-{pass}"),
            "type = \"blackhole\"",
        ));
        let cpu_before = (cpu_ms(redis_server.pid()), cpu_ms(std::process::id()));
        let xadd = rt.block_on(run_sluice(
            &bootstrap,
            &format!("bench-sluice-{pass}"),
            &xadd_sink,
        ));
        // CPU time over the XADD pass (which includes the group join, so
        // Sluice's share is an upper bound).
        let redis_cpu = cpu_ms(redis_server.pid()) - cpu_before.0;
        let sluice_cpu = cpu_ms(std::process::id()) - cpu_before.1;
        eprintln!(
            "pass {pass}: CPU during the XADD pass: redis-server {redis_cpu} ms, sluice (incl. embedded Kafka) {sluice_cpu} ms"
        );
        let dedupe = rt.block_on(run_sluice(
            &bootstrap,
            &format!("bench-dedupe-{pass}"),
            &format!(
                "type = \"redis_stream\"\nurl = \"redis://127.0.0.1:{port}\"\nstream = \"dedupe-{pass}:{{key}}\"\ndedupe = true"
            ),
        ));
        eprintln!("pass {pass}: dedupe XADD {dedupe:.2?}");
        deduped = deduped.min(dedupe);
        let raw = raw_xadd(port, 50);
        let one = raw_xadd(port, 1);
        eprintln!(
            "pass {pass}: blackhole {blackhole:.2?}, XADD {xadd:.2?}, redis-benchmark {raw:.0}/s (50 clients), {one:.0}/s (1 client)"
        );
        ceiling = ceiling.min(blackhole);
        took = took.min(xadd);
        raw_rate = raw_rate.max(raw);
        raw_one = raw_one.max(one);
    }
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut total = 0;
    for i in 0..10 {
        let n: usize = redis::cmd("XLEN")
            .arg(format!("client:client-{i}"))
            .query(&mut c)
            .unwrap();
        total += n;
    }
    assert_eq!(total, RECORDS * PASSES, "every record in Redis, every pass");
    for pass in 0..PASSES {
        let n: usize = (0..10)
            .map(|i| {
                redis::cmd("XLEN")
                    .arg(format!("dedupe-{pass}:client-{i}"))
                    .query::<usize>(&mut c)
                    .unwrap()
            })
            .sum();
        assert_eq!(n, RECORDS, "the dedupe sink wrote every record once");
    }
    let sluice_rate = RECORDS as f64 / took.as_secs_f64();
    println!(
        "sluice   kafka → wasm filter → XADD: {sluice_rate:>10.0} records/s ({RECORDS} in {took:.2?}, best of {PASSES})"
    );
    println!("redis-benchmark XADD -P 64 (50 clients): {raw_rate:>10.0} requests/s");
    println!("redis-benchmark XADD -P 64 (1 client):   {raw_one:>10.0} requests/s");
    println!(
        "same route into a blackhole:        {:>10.0} records/s (the Kafka + Wasm ceiling)",
        RECORDS as f64 / ceiling.as_secs_f64()
    );
    println!(
        "ratio sluice / raw XADD (50 clients): {:.2}",
        sluice_rate / raw_rate
    );
    println!(
        "ratio sluice / raw XADD (1 client, like Sluice's one connection): {:.2}",
        sluice_rate / raw_one
    );
    println!(
        "same route, dedupe = true:          {:>10.0} records/s; dedupe / plain XADD: {:.2}",
        RECORDS as f64 / deduped.as_secs_f64(),
        took.as_secs_f64() / deduped.as_secs_f64()
    );
    println!(
        "ratio XADD sink / blackhole sink: {:.2}",
        ceiling.as_secs_f64() / took.as_secs_f64()
    );
}

/// Runs Kafka `in` → client-filter → `sink` with consumer group `group`;
/// the time from the first record read until the sink has every record.
async fn run_sluice(bootstrap: &str, group: &str, sink: &str) -> Duration {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let workers = std::env::var("SLUICE_BENCH_WORKERS").unwrap_or_else(|_| "1".into());
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["in"]
        group_id = "{group}"
        batch_size = 1024
        [plugins.keep]
        crate = "{root}/client-filter"
        config = {{ patterns = ["client-*"] }}
        [sinks.out]
        {sink}
        [routes.r]
        from = "in"
        through = ["keep"]
        to = ["out"]
        workers = {workers}
        "#,
        root = root.display(),
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    // Build and compile the plugin before timing.
    sluice::runtime::load_plugins(&config).await.unwrap();
    common::time_route(config, RECORDS as u64, Duration::from_secs(60)).await
}
