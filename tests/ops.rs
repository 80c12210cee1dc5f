//! Operations (part of issue #15): logs fit for a container runtime, and a
//! restart that loads its plugins from the persistent compile cache.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `sluice check` on a config with one plugin (`client-filter`),
/// stderr to a file (not a terminal), with `env`; returns the log.
fn check(dir: &Path, env: &[(&str, &str)]) -> String {
    let config = dir.join("sluice.toml");
    if !config.exists() {
        let wasm = common::plugin("client-filter");
        std::fs::write(
            &config,
            format!(
                r#"
                [sources.in]
                type = "http"
                [plugins.keep]
                path = "{wasm}"
                config = {{ patterns = ["client-*"] }}
                [sinks.out]
                type = "blackhole"
                [routes.r]
                from = "in"
                through = ["keep"]
                to = ["out"]
                "#
            ),
        )
        .unwrap();
    }
    let log = dir.join(format!(
        "log-{}.txt",
        std::fs::read_dir(dir).unwrap().count()
    ));
    let status = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("SLUICE_LOG_FORMAT")
        .env_remove("SLUICE_CACHE_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    text
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn a_restart_loads_plugins_from_the_compile_cache_and_a_bad_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [("SLUICE_CACHE_DIR", cache.to_str().unwrap())];

    let first = check(dir.path(), &env);
    assert!(first.contains("Component compiled."), "{first}");
    let files = cache_files(&cache);
    assert_eq!(files.len(), 1, "one entry, no temporary left: {files:?}");

    let second = check(dir.path(), &env);
    assert!(
        second.contains("Component loaded from the compile cache (no compile)."),
        "{second}"
    );
    assert!(
        !second.contains("Component compiled."),
        "no compile: {second}"
    );

    // A damaged entry is not trusted: compiled again, and replaced.
    std::fs::write(&files[0], b"not a compiled component").unwrap();
    let third = check(dir.path(), &env);
    assert!(third.contains("does not load; compiling again"), "{third}");
    assert!(third.contains("Component compiled."), "{third}");
    let fourth = check(dir.path(), &env);
    assert!(fourth.contains("from the compile cache"), "{fourth}");

    // Without the variable there is no cache: it compiles.
    let off = check(dir.path(), &[]);
    assert!(off.contains("Component compiled."), "{off}");
}

#[test]
fn logs_to_a_file_are_plain_text_and_json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = check(dir.path(), &[]);
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when stderr is a file: {text:?}"
    );

    let json = check(dir.path(), &[("SLUICE_LOG_FORMAT", "json")]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.len() >= 2, "{json}");
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    let compiled = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Component compiled.")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(compiled["level"], "INFO");
    assert!(
        compiled["fields"]["version"].is_string(),
        "fields kept: {compiled}"
    );
}

/// One sample: its name, labels (sorted) and value.
type Sample = (String, Vec<(String, String)>, f64);

/// `/metrics`, parsed by `prometheus-parse`.
async fn scrape(addr: std::net::SocketAddr) -> Vec<Sample> {
    let (status, text) = common::get(addr, "/metrics").await;
    assert_eq!(status, hyper::StatusCode::OK, "{text}");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}: {text}"));
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(b) => {
                    b.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            (s.metric, labels, value)
        })
        .collect()
}

/// The value of the first sample `name` with `label`.
fn find(samples: &[Sample], name: &str, label: (&str, &str)) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == label.0 && v == label.1))
        .map(|(_, _, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_histograms_and_lag_follow_the_traffic() {
    let broker = common::kafka::Broker::start();
    broker.create_topic("in", 1).await;
    let bootstrap = broker.bootstrap();
    let wasm = common::plugin("client-filter");
    let config = format!(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["in"]
        group_id = "metrics"
        batch_size = 10
        [plugins.keep]
        path = "{wasm}"
        config = {{ patterns = ["client-*"] }}
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["keep"]
        to = ["out"]
        "#
    );
    let running = common::start(&config, &common::workspace()).await;
    let addr = running.addr;
    let now = sluice::record::now_millis();
    let records: Vec<common::kafka::Input> = (0..100)
        .map(|i| {
            (
                "client-1".to_owned(),
                format!("{{\"n\":{i}}}"),
                vec![],
                now - 1000,
            )
        })
        .collect();
    common::kafka::produce(&bootstrap, "in", &records).await;
    let delivered = common::eventually_async(Duration::from_secs(20), || async {
        let s = scrape(addr).await;
        find(&s, "sluice_sink_records_total", ("sink", "out")) == Some(100.0)
    })
    .await;
    assert!(delivered, "{:?}", scrape(addr).await);
    // Lag is read from librdkafka's statistics, every second.
    let caught_up = common::eventually_async(Duration::from_secs(20), || async {
        let s = scrape(addr).await;
        find(&s, "sluice_kafka_consumer_lag", ("topic", "in")) == Some(0.0)
    })
    .await;
    assert!(caught_up, "lag fell to 0: {:?}", scrape(addr).await);
    let samples = scrape(addr).await;
    let count = |name: &str, label: (&str, &str)| find(&samples, name, label);
    // Histograms moved: at least 10 batches of 10 went through.
    for (name, label) in [
        ("sluice_stage_batch_seconds_count", ("plugin", "keep")),
        ("sluice_sink_ack_seconds_count", ("sink", "out")),
        ("sluice_end_to_end_seconds_count", ("sink", "out")),
    ] {
        let n = count(name, label).unwrap_or_else(|| panic!("no {name}: {samples:?}"));
        assert!(n >= 10.0, "{name} = {n}");
    }
    // The records were a second old when produced: end to end is at least that.
    let sum = count("sluice_end_to_end_seconds_sum", ("sink", "out")).unwrap();
    let n = count("sluice_end_to_end_seconds_count", ("sink", "out")).unwrap();
    assert!(sum / n >= 1.0, "none faster than their age: {sum} / {n}");
    assert!(
        samples.iter().any(|(n, l, _)| n == "sluice_build_info"
            && l.contains(&("version".into(), env!("CARGO_PKG_VERSION").into()))),
        "{samples:?}"
    );
    running.shutdown().await.unwrap();
}

#[test]
fn an_unreachable_broker_is_logged_once_not_every_retry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let port = common::redis::free_port();
    std::fs::write(
        &config,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:{port}"
            [sources.in]
            type = "http"
            [sinks.k]
            type = "kafka"
            bootstrap_servers = "127.0.0.1:1"
            topic = "x"
            [routes.r]
            from = "in"
            to = ["k"]
            "#
        ),
    )
    .unwrap();
    let log = dir.path().join("log.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    // librdkafka retries the connection many times a second, backing off
    // to 1 s (reconnect.backoff.max.ms); 5 s is several attempts.
    std::thread::sleep(Duration::from_secs(5));
    let _ = child.0.kill();
    let _ = child.0.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |s: &str| text.matches(s).count();
    assert_eq!(count("A Kafka broker connection failed."), 1, "{text}");
    assert_eq!(count("Kafka unreachable"), 1, "{text}");
    assert_eq!(count("Global error"), 0, "{text}");
    assert_eq!(count("FAIL"), 0, "{text}");
}
