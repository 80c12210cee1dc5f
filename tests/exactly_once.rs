//! `guarantee = "exactly_once"`: Kafka → Wasm → Kafka through Kafka
//! transactions, over the real Kafka protocol (librdkafka's mock cluster),
//! and `sluice check`'s refusal of route shapes a transaction cannot cover.
//! The crash harness (five SIGKILLs under load) also checks that plugin
//! state in a `state_changelog` loses no count at-least-once.
//!
//! The mock answers the transactional requests (InitProducerId,
//! AddPartitionsToTxn, TxnOffsetCommit, EndTxn) but keeps no transaction
//! state: it stores no transactional offset commit and writes no abort
//! markers, so what a crash does can only be tested on a broker with
//! transactions (see the README's delivery guarantees).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const PARTITIONS: i32 = 3;
const KEEP: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];

fn input(n: usize) -> Vec<Input> {
    (0..n)
        .map(|i| {
            let key = format!("k{}", i % 10);
            let value = format!(r#"{{"k":"{key}","n":{i}}}"#);
            (
                key,
                value,
                vec![("n".into(), i.to_string())],
                1_000_000 + i as i64,
            )
        })
        .collect()
}

fn route(bootstrap: &str, topic_in: &str, topic_out: &str, group: &str) -> String {
    format!(
        r#"
        [server]
        instance_id = "test-a"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{topic_in}"]
        group_id = "{group}"
        batch_size = 16
        commit_interval = "100ms"
        [plugins.keep]
        path = "{filter}"
        config = {{ clients = ["k0", "k1", "k2", "k3", "k4"] }}
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topic = "{topic_out}"
        [routes.r]
        from = "in"
        through = ["keep"]
        to = ["out"]
        guarantee = "exactly_once"
        "#,
        filter = plugin("client-filter")
    )
}

fn transactions(running: &sluice::runtime::Running, outcome: &str) -> u64 {
    running
        .metrics
        .value(
            "sluice_source_transactions_total",
            &[("source", "in"), ("outcome", outcome)],
        )
        .unwrap_or(0)
}

/// The kept records' `n`s per partition, in the order read.
fn by_partition(out: &[Rec]) -> Vec<Vec<u64>> {
    (0..PARTITIONS)
        .map(|p| {
            out.iter()
                .filter(|r| r.partition == p)
                .map(|r| r.headers[0].1.parse().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_route_delivers_each_record_once_through_committed_transactions() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic_in, topic_out, group) = (unique("in"), unique("out"), unique("group"));
    broker.create_topic(&topic_in, PARTITIONS).await;
    broker.create_topic(&topic_out, PARTITIONS).await;
    let records = input(600);
    produce(&bootstrap, &topic_in, &records).await;

    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &route(&bootstrap, &topic_in, &topic_out, &group),
        dir.path(),
    )
    .await;
    let out = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic_out.clone());
        move || consume(&b, &t, 300, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || transactions(
            &running,
            "committed"
        ) >= 1)
        .await,
        "no transaction committed"
    );
    let committed = transactions(&running, "committed");
    let aborted = transactions(&running, "aborted");
    running.shutdown().await.unwrap();

    // Exactly the kept records, each once, key, value, headers and
    // timestamp as produced, in order per partition.
    let mut expected: Vec<_> = records
        .iter()
        .filter(|(k, ..)| KEEP.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut got: Vec<_> = out.iter().map(Rec::input).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    for (p, ns) in by_partition(&out).iter().enumerate() {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {ns:?}"
        );
    }
    // Several rounds of 100 ms, each its own transaction, none aborted.
    assert!(committed >= 1, "{committed} transactions committed");
    assert_eq!(aborted, 0, "no transaction should abort");
}

/// A member a rebalance has replaced is refused when it adds its offsets
/// (KIP-447: `ILLEGAL_GENERATION` on TxnOffsetCommit). The source aborts,
/// seeks back to the committed offsets and reads the round again: nothing
/// is lost, and the next transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_offset_commit_aborts_the_round_and_reads_it_again() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (topic_in, topic_out, group) = (unique("in"), unique("out"), unique("group"));
    cluster.create_topic(&topic_in, PARTITIONS, 1).unwrap();
    cluster.create_topic(&topic_out, PARTITIONS, 1).unwrap();
    let records = input(300);
    produce(&bootstrap, &topic_in, &records).await;
    cluster.request_errors(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
    );

    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &route(&bootstrap, &topic_in, &topic_out, &group),
        dir.path(),
    )
    .await;
    let settled = eventually(Duration::from_secs(30), || {
        transactions(&running, "aborted") >= 1 && transactions(&running, "committed") >= 1
    })
    .await;
    let read = running
        .metrics
        .value("sluice_source_records_total", &[("source", "in")])
        .unwrap_or(0);
    let (committed, aborted) = (
        transactions(&running, "committed"),
        transactions(&running, "aborted"),
    );
    // Every kept record reached the output topic. (The mock keeps the
    // aborted round's records visible; a real broker hides them from
    // read_committed readers.)
    let out = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic_out.clone());
        move || consume(&b, &t, 150 + 1, Duration::from_secs(10))
    })
    .await
    .unwrap();
    running.shutdown().await.unwrap();
    assert!(settled, "committed {committed}, aborted {aborted}");
    assert!(
        read > 300,
        "the aborted round should be read again: {read} records read"
    );
    let mut seen: Vec<u64> = by_partition(&out).concat();
    seen.sort_unstable();
    seen.dedup();
    let expected: Vec<u64> = (0..300u64).filter(|n| n % 10 < 5).collect();
    assert_eq!(seen, expected, "a kept record is missing");
}

#[test]
fn sluice_check_refuses_exactly_once_where_a_transaction_cannot_cover_the_route() {
    let (ok, err) = sluice_check(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "localhost:9092"
        topics = ["orders"]
        group_id = "g"
        [sources.web]
        type = "http"
        [sinks.topic]
        type = "kafka"
        bootstrap_servers = "localhost:9092"
        topic = "orders-out"
        [sinks.elsewhere]
        type = "kafka"
        bootstrap_servers = "other:9092"
        topic = "orders-out"
        [sinks.events]
        type = "redis_stream"
        url = "redis://localhost"
        stream = "orders"
        [routes.mixed]
        from = "in"
        to = ["topic", "events"]
        guarantee = "exactly_once"
        [routes.two_clusters]
        from = "in"
        to = ["elsewhere"]
        guarantee = "exactly_once"
        [routes.plain]
        from = "in"
        to = ["topic"]
        [routes.ingest]
        from = "web"
        to = ["topic"]
        guarantee = "exactly_once"
        "#,
    );
    assert!(!ok, "{err}");
    for needle in [
        "routes.mixed.guarantee: exactly_once needs every sink to be Kafka, and `sinks.events` is `redis_stream`: its writes cannot join the Kafka transaction",
        "routes.two_clusters.guarantee: exactly_once: `sinks.elsewhere` writes to `other:9092` but the source reads `localhost:9092`; one Kafka transaction covers one cluster",
        "routes.plain.guarantee: `sources.in` also feeds an exactly_once route",
        "routes.ingest.guarantee: exactly_once needs a Kafka source, and `sources.web` is `http`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains(
            "routes.mixed.guarantee: exactly_once needs every sink to be Kafka, and `sinks.topic`"
        ),
        "a Kafka sink on the source's cluster is fine:\n{err}"
    );

    let (ok, err) = sluice_check(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "localhost:9092"
        topics = ["orders"]
        group_id = "g"
        isolation = "read_committed"
        [sinks.topic]
        type = "kafka"
        bootstrap_servers = "localhost:9092"
        topic = "orders-out"
        [routes.r]
        from = "in"
        to = ["topic"]
        guarantee = "exactly_once"
        "#,
    );
    assert!(ok, "a Kafka → Kafka route on one cluster passes: {err}");
}

/// `examples/exactly-once.toml` on its embedded broker: each order, slimmed
/// by the Wasm transform, once in `orders-out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exactly_once_example_transforms_each_order_once() {
    init_logging();
    let path = workspace().join("examples").join("exactly-once.toml");
    let config = sluice::config::Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap();
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    let orders: Vec<Input> = (0..20)
        .map(|n| {
            let client = format!("client-{}", n % 3);
            let value =
                format!(r#"{{"client_id":"{client}","region":"eu","amount":{n},"secret":"x"}}"#);
            (client, value, vec![], 1_000 + i64::from(n))
        })
        .collect();
    produce(&bootstrap, "orders", &orders).await;
    let out = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || consume(&b, "orders-out", 20, Duration::from_secs(30))
    })
    .await
    .unwrap();
    running.shutdown().await.unwrap();
    let mut amounts: Vec<u64> = out
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            assert_eq!(v.get("secret"), None, "the transform drops other fields");
            v["amount"].as_u64().unwrap()
        })
        .collect();
    amounts.sort_unstable();
    assert_eq!(amounts, (0..20).collect::<Vec<_>>());
    assert!(
        out.iter()
            .all(|r| r.headers.contains(&("via".into(), "sluice".into())))
    );
}

/// What a run of [`kill_five_times`] left in the output topic.
struct Crashed {
    produced: u64,
    /// Output `n`s per output partition, in the order read.
    outputs: Vec<Vec<u64>>,
    /// With [`Plugin::Tally`]: the highest count each key reached.
    counts: std::collections::BTreeMap<String, u64>,
    logs: String,
}

/// The plugin a crash run goes through.
#[derive(Clone, Copy)]
enum Plugin {
    /// `json-transform`, keeping `n`.
    Slim,
    /// The `tally` fixture: it counts records per key in its state, and
    /// forwards each with its key's count; with a `state_changelog` or not.
    Tally { changelog: bool },
}

/// A Kafka → json-transform → Kafka route in a `sluice run` process, fed
/// continuously, SIGKILLed five times and restarted (same `instance_id`),
/// then left to catch up. Returns what a `read_committed` reader of the
/// output sees.
async fn kill_five_times(broker: &Broker, guarantee: &str, plugin: Plugin) -> Crashed {
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let bootstrap = broker.bootstrap();
    let (topic_in, topic_out, group) = (unique("in"), unique("out"), unique("group"));
    broker.create_topic(&topic_in, PARTITIONS).await;
    broker.create_topic(&topic_out, PARTITIONS).await;
    let changelog = unique("changelog");
    broker.create_topic(&changelog, PARTITIONS).await;
    let (plugin_block, route_extra) = match plugin {
        Plugin::Slim => (
            format!(
                "path = \"{}\"\nconfig = {{ fields = [\"n\"] }}",
                common::plugin("json-transform")
            ),
            String::new(),
        ),
        Plugin::Tally { changelog: with } => (
            format!("path = \"{}\"", common::plugin("fixture-tally")),
            if with {
                format!("state_changelog = \"{changelog}\"")
            } else {
                String::new()
            },
        ),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            instance_id = "crash-test"
            [sources.in]
            type = "kafka"
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic_in}"]
            group_id = "{group}"
            batch_size = 20
            commit_interval = "300ms"
            options = {{ "session.timeout.ms" = "3000", "heartbeat.interval.ms" = "300" }}
            [plugins.slim]
            {plugin_block}
            [sinks.out]
            type = "kafka"
            bootstrap_servers = "{bootstrap}"
            topic = "{topic_out}"
            [routes.r]
            from = "in"
            through = ["slim"]
            to = ["out"]
            guarantee = "{guarantee}"
            {route_extra}
            "#,
        ),
    )
    .unwrap();
    let spawn = |i: usize| {
        let log = std::fs::File::create(dir.path().join(format!("run-{i}.log"))).unwrap();
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("run")
                .arg(&config)
                .env("RUST_LOG", "info,librdkafka=warn")
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };

    // The load: 50 records every 20 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let load = common::kafka::spawn_load(
        &bootstrap,
        &topic_in,
        (50, Duration::from_millis(20)),
        Arc::clone(&stop),
        Arc::clone(&produced),
    );

    // Each run is killed once it has had its partitions for a while (a
    // restart waits out the dead member's session first), at a different
    // point of its commit interval each time.
    let assigned = |i: usize| {
        std::fs::read_to_string(dir.path().join(format!("run-{i}.log")))
            .unwrap_or_default()
            .contains("Partitions assigned")
    };
    let mut running = spawn(0);
    for i in 1..=5 {
        assert!(
            eventually(Duration::from_secs(30), || assigned(i - 1)).await,
            "run {} never got its partitions",
            i - 1
        );
        tokio::time::sleep(Duration::from_millis(800 + 77 * i as u64)).await;
        running.0.kill().unwrap();
        running.0.wait().unwrap();
        running = spawn(i);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    load.await.unwrap();
    let produced = produced.load(Ordering::Acquire);

    // Read until every input has an output (duplicates count once), then
    // a little more.
    let out = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic_out.clone());
        move || {
            let mut seen = std::collections::HashSet::new();
            let mut read = 0;
            consume_until(&b, &t, Duration::from_secs(120), move |out| {
                for r in &out[read..] {
                    seen.insert(r.value.clone());
                }
                read = out.len();
                seen.len() as u64 >= produced
            })
        }
    })
    .await
    .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status();
    running.0.wait().unwrap();
    let logs = (0..=5)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("run-{i}.log"))).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n----\n");
    let outputs = (0..PARTITIONS)
        .map(|p| {
            out.iter()
                .filter(|r| r.partition == p)
                .map(|r| {
                    let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
                    v["n"].as_u64().unwrap()
                })
                .collect()
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for r in &out {
        if let Some((_, c)) = r.headers.iter().find(|(k, _)| k == "count") {
            let max = counts.entry(r.key.clone().unwrap()).or_insert(0);
            *max = c.parse::<u64>().unwrap().max(*max);
        }
    }
    Crashed {
        produced,
        outputs,
        counts,
        logs,
    }
}

/// How many records of key `k{k}` a crash run produced (`n % 10 == k`).
fn inputs_of(produced: u64) -> std::collections::BTreeMap<String, u64> {
    (0..10u64)
        .map(|k| {
            (
                format!("k{k}"),
                (0..produced).filter(|n| n % 10 == k).count() as u64,
            )
        })
        .collect()
}

/// Plugin state in a changelog, at-least-once, through the same five
/// SIGKILLs: no count is lost. Every key's count reaches at least its
/// number of records (a redelivered record may be counted twice, as it is
/// written twice), because a batch's position is acknowledged only after
/// the changelog has its state changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_in_a_changelog_loses_no_count_across_five_sigkills() {
    let broker = Broker::start();
    let run = kill_five_times(&broker, "at_least_once", Plugin::Tally { changelog: true }).await;
    let inputs = inputs_of(run.produced);
    for (key, n) in &inputs {
        let counted = run.counts.get(key).copied().unwrap_or(0);
        assert!(
            counted >= *n,
            "{key}: counted to {counted} of {n} records; logs:\n{}",
            tail(&run.logs)
        );
    }
}

/// Its control: the same run with the state in memory loses counts at
/// every kill, so the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_in_memory_loses_counts_across_five_sigkills() {
    let broker = Broker::start();
    let run = kill_five_times(&broker, "at_least_once", Plugin::Tally { changelog: false }).await;
    let inputs = inputs_of(run.produced);
    let short = inputs
        .iter()
        .filter(|(key, n)| run.counts.get(*key).copied().unwrap_or(0) < **n)
        .count();
    assert!(
        short > 0,
        "no key lost a count: {:?} of {inputs:?}",
        run.counts
    );
}

fn tail(logs: &str) -> &str {
    &logs[logs.floor_char_boundary(logs.len().saturating_sub(12_000))..]
}

/// The crash test's control: at-least-once, the same kills redeliver what
/// was delivered but not yet committed, so the output has duplicates (and
/// nothing is missing). This is what the exactly-once run must not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_redelivers_after_sigkill_so_the_crash_test_can_fail() {
    let broker = Broker::start();
    let run = kill_five_times(&broker, "at_least_once", Plugin::Slim).await;
    let mut all: Vec<u64> = run.outputs.concat();
    all.sort_unstable();
    let total = all.len();
    all.dedup();
    assert_eq!(
        all,
        (0..run.produced).collect::<Vec<_>>(),
        "a record is missing; logs:\n{}",
        tail(&run.logs)
    );
    assert!(
        total > all.len(),
        "five SIGKILLs under load should redeliver something at-least-once ({total} outputs of {} records); logs:\n{}",
        run.produced,
        tail(&run.logs)
    );
}

/// The exactly-once crash test. It needs a broker that keeps transaction
/// state (the mock broker stores no transactional offset commits and
/// writes no abort markers, and tansu has no transactions):
///
///     SLUICE_TEST_KAFKA=host:port cargo test -p sluice --test exactly_once -- --ignored
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker with transactions in SLUICE_TEST_KAFKA"]
async fn exactly_once_survives_five_sigkills_with_each_output_once_in_order() {
    let broker = Broker::start();
    let run = kill_five_times(&broker, "exactly_once", Plugin::Slim).await;
    for (p, ns) in run.outputs.iter().enumerate() {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: a duplicate or out of order; logs:\n{}",
            tail(&run.logs)
        );
    }
    let mut all: Vec<u64> = run.outputs.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..run.produced).collect::<Vec<_>>(),
        "each record once; logs:\n{}",
        tail(&run.logs)
    );
}
