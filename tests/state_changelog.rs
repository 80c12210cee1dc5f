//! `[routes.NAME] state_changelog`: plugin state backed by a Kafka topic,
//! kept per source partition, restored after a restart and when a partition
//! moves to another instance, and written inside the transaction of an
//! `exactly_once` route. Over the real Kafka protocol (librdkafka's mock
//! cluster), with the `tally` fixture, which counts records per key in its
//! state and stamps each output with its key's count.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::*;
use common::*;

const PARTITIONS: i32 = 4;
/// Keys `k0`..`k15`: murmur2 spreads them over all 4 partitions.
const KEYS: usize = 16;
/// Records per round: 5 per key.
const ROUND: usize = KEYS * 5;
const WAIT: Duration = Duration::from_secs(30);

/// `n` records over `KEYS` keys, numbered from `from`.
fn input(from: usize, n: usize) -> Vec<Input> {
    (from..from + n)
        .map(|i| {
            (
                format!("k{}", i % KEYS),
                format!("v{i}"),
                vec![],
                1_000 + i as i64,
            )
        })
        .collect()
}

struct Topics {
    input: String,
    output: String,
    changelog: String,
    group: String,
}

impl Topics {
    async fn create(broker: &Broker) -> Self {
        let t = Self {
            input: unique("in"),
            output: unique("out"),
            changelog: unique("changelog"),
            group: unique("group"),
        };
        for topic in [&t.input, &t.output, &t.changelog] {
            broker.create_topic(topic, PARTITIONS).await;
        }
        t
    }
}

fn route(bootstrap: &str, t: &Topics, changelog: bool, guarantee: &str) -> String {
    let changelog = if changelog {
        format!("state_changelog = \"{}\"", t.changelog)
    } else {
        String::new()
    };
    format!(
        r#"
        [server]
        instance_id = "{instance}"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{input}"]
        group_id = "{group}"
        batch_size = 8
        commit_interval = "100ms"
        # A short session, so a restarted or joining member is given its
        # partitions quickly.
        options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
        [plugins.tally]
        path = "{tally}"
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topic = "{output}"
        [routes.r]
        from = "in"
        through = ["tally"]
        to = ["out"]
        guarantee = "{guarantee}"
        {changelog}
        "#,
        instance = unique("instance"),
        input = t.input,
        output = t.output,
        group = t.group,
        tally = plugin("fixture-tally"),
    )
}

/// Reads `n` outputs and gives each key's counts (the `count` header), in
/// the order read per partition, sorted.
async fn counts(bootstrap: &str, topic: &str, n: usize) -> BTreeMap<String, Vec<u64>> {
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    let out = tokio::task::spawn_blocking(move || consume(&b, &t, n, WAIT))
        .await
        .unwrap();
    assert_eq!(out.len(), n, "outputs: {out:?}");
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &out {
        let count = r.headers.iter().find(|(k, _)| k == "count").unwrap();
        by_key
            .entry(r.key.clone().unwrap())
            .or_default()
            .push(count.1.parse().unwrap());
    }
    for counts in by_key.values_mut() {
        counts.sort_unstable();
    }
    by_key
}

/// Every key counted 1..=n, each count once.
fn counted_to(n: u64) -> BTreeMap<String, Vec<u64>> {
    (0..KEYS)
        .map(|k| (format!("k{k}"), (1..=n).collect()))
        .collect()
}

/// Runs the route over a round of records, stops it, runs it again over
/// another, and gives the counts of all outputs.
async fn restart_between_two_rounds(
    changelog: bool,
    guarantee: &str,
) -> BTreeMap<String, Vec<u64>> {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker).await;
    let config = route(&bootstrap, &t, changelog, guarantee);
    let dir = tempfile::tempdir().unwrap();

    produce(&bootstrap, &t.input, &input(0, ROUND)).await;
    let running = start(&config, dir.path()).await;
    assert_eq!(counts(&bootstrap, &t.output, ROUND).await, counted_to(5));
    running.shutdown().await.unwrap();

    produce(&bootstrap, &t.input, &input(ROUND, ROUND)).await;
    let running = start(&config, dir.path()).await;
    let all = counts(&bootstrap, &t.output, 2 * ROUND).await;
    let restored = running
        .metrics
        .value("sluice_state_restored_changes_total", &[("route", "r")])
        .unwrap_or(0);
    running.shutdown().await.unwrap();
    if changelog {
        assert!(restored > 0, "the second run restored nothing");
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_through_its_changelog() {
    assert_eq!(
        restart_between_two_rounds(true, "at_least_once").await,
        counted_to(10)
    );
}

/// The control: without a changelog the second run counts from 1 again,
/// so the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_changelog_state_starts_over_after_a_restart() {
    let counts = restart_between_two_rounds(false, "at_least_once").await;
    let twice: BTreeMap<String, Vec<u64>> = (0..KEYS)
        .map(|k| (format!("k{k}"), vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]))
        .collect();
    assert_eq!(counts, twice);
}

/// With `exactly_once`, the changes go through the route's transactional
/// producer, inside each round's transaction (a transactional producer
/// refuses writes outside one): a `read_committed` reader of the changelog
/// finds every key's last count. (A restart cannot be shown here: the mock
/// broker stores no transactional offset commit, so a restarted route reads
/// its input from the start again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_route_writes_its_state_changes_in_its_transactions() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    produce(&bootstrap, &t.input, &input(0, ROUND)).await;
    let running = start(&route(&bootstrap, &t, true, "exactly_once"), dir.path()).await;
    assert_eq!(counts(&bootstrap, &t.output, ROUND).await, counted_to(5));
    running.shutdown().await.unwrap();

    let (b, topic) = (bootstrap.clone(), t.changelog.clone());
    let last = tokio::task::spawn_blocking(move || changelog_values(&b, &topic))
        .await
        .unwrap();
    let expected: BTreeMap<String, u64> = (0..KEYS).map(|k| (format!("tally\0k{k}"), 5)).collect();
    assert_eq!(last, expected);
}

/// The last value of each key in `topic`, read `read_committed` to its end,
/// as `u64`s (the tally's counts).
fn changelog_values(bootstrap: &str, topic: &str) -> BTreeMap<String, u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut last = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
            let value: [u8; 8] = m.payload().unwrap().try_into().unwrap();
            last.insert(key, u64::from_le_bytes(value));
        }
        if last.len() == KEYS && last.values().all(|n| *n == 5) {
            break;
        }
    }
    last
}

/// A second instance joins the group: the partitions it is given bring
/// their state with them (restored from the changelog the first instance
/// wrote), so every key's count goes on from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moved_to_another_instance_takes_its_state_with_it() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let t = Topics::create(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();

    produce(&bootstrap, &t.input, &input(0, ROUND)).await;
    let a = start(&route(&bootstrap, &t, true, "at_least_once"), &dir_a).await;
    assert_eq!(counts(&bootstrap, &t.output, ROUND).await, counted_to(5));

    let b = start(&route(&bootstrap, &t, true, "at_least_once"), &dir_b).await;
    let revoked = || {
        a.metrics
            .value("sluice_source_rebalances_total", &[("source", "in")])
            .unwrap_or(0)
    };
    let lag_line = format!(
        "sluice_kafka_consumer_lag{{source=\"in\",topic=\"{}\"",
        t.input
    );
    assert!(
        eventually(WAIT, || revoked() >= 1
            && b.metrics.render().contains(&lag_line))
        .await,
        "the second instance was given no partitions: revoked {} times on the first; the second's metrics:\n{}",
        revoked(),
        b.metrics.render()
    );
    // Let the rebalance settle before the second round.
    tokio::time::sleep(Duration::from_secs(2)).await;

    produce(&bootstrap, &t.input, &input(ROUND, ROUND)).await;
    assert_eq!(
        counts(&bootstrap, &t.output, 2 * ROUND).await,
        counted_to(10)
    );
    let processed_by_b = b
        .metrics
        .value("sluice_route_records_in_total", &[("route", "r")])
        .unwrap_or(0);
    let restored_by_b = b
        .metrics
        .value("sluice_state_restored_changes_total", &[("route", "r")])
        .unwrap_or(0);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    assert!(processed_by_b > 0, "the second instance processed nothing");
    assert!(
        restored_by_b > 0,
        "the second instance restored no state for its partitions"
    );
}

#[test]
fn sluice_check_refuses_a_changelog_on_a_route_without_a_kafka_or_redis_source() {
    let (ok, err) = sluice_check(
        r#"
        [sources.web]
        type = "http"
        [sinks.out]
        type = "stdout"
        [routes.r]
        from = "web"
        to = ["out"]
        state_changelog = "r-state"
        "#,
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            "routes.r.state_changelog: needs a Kafka or Redis source, and `sources.web` is `http`"
        ),
        "{err}"
    );
}
