//! Kafka end to end, over the real Kafka protocol (librdkafka's mock
//! cluster, or `SLUICE_TEST_KAFKA`): exact records, order per partition,
//! commits that follow delivery, and redelivery after a failed sink.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;

const PARTITIONS: i32 = 3;

fn input(n: usize) -> Vec<Input> {
    (0..n)
        .map(|i| {
            let key = format!("k{}", i % 10);
            let value = format!(r#"{{"k":"{key}","n":{i}}}"#);
            (
                key,
                value,
                vec![("n".into(), i.to_string()), ("src".into(), "test".into())],
                1_000_000 + i as i64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_kafka_delivers_exact_records_in_partition_order_and_commits_them() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic_in, topic_out, group) = (unique("in"), unique("out"), unique("group"));
    broker.create_topic(&topic_in, PARTITIONS).await;
    broker.create_topic(&topic_out, PARTITIONS).await;
    let records = input(300);
    let in_partitions = produce(&bootstrap, &topic_in, &records).await;

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{topic_in}"]
        group_id = "{group}"
        batch_size = 32
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
        "#,
        filter = plugin("client-filter")
    );
    let running = start(&text, dir.path()).await;
    let out = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topic_out.clone());
        move || consume(&b, &t, 150, Duration::from_secs(30))
    })
    .await
    .unwrap();
    running.shutdown().await.unwrap();

    // Exactly the kept records, each once, with key, value, headers and
    // timestamp as produced.
    assert_eq!(
        out.len(),
        150,
        "{:?}",
        out.iter().map(|r| &r.value).collect::<Vec<_>>()
    );
    let mut expected: Vec<_> = records
        .iter()
        .filter(|(k, ..)| ["k0", "k1", "k2", "k3", "k4"].contains(&k.as_str()))
        .cloned()
        .collect();
    let mut got: Vec<_> = out.iter().map(Rec::input).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    // Order per partition, and keys stay on the partition murmur2 gives them
    // (the same as the Java-compatible producer chose on the input topic).
    for p in 0..PARTITIONS {
        let ns: Vec<u64> = out
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.headers[0].1.parse().unwrap())
            .collect();
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {ns:?}"
        );
    }
    for r in &out {
        let n: usize = r.headers[0].1.parse().unwrap();
        assert_eq!(
            r.partition, in_partitions[n],
            "key {:?} changed partition",
            r.key
        );
    }

    // Every input record is processed, so every partition is committed to its end.
    let committed = committed(&bootstrap, &group, &topic_in, PARTITIONS);
    let mut ends = vec![0i64; PARTITIONS as usize];
    for p in &in_partitions {
        ends[*p as usize] += 1;
    }
    let ends: Vec<_> = ends
        .into_iter()
        .map(|e| if e > 0 { Some(e) } else { None })
        .collect();
    assert_eq!(committed, ends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_leaves_offsets_uncommitted_and_a_restart_redelivers() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic, group) = (unique("in"), unique("group"));
    broker.create_topic(&topic, PARTITIONS).await;
    let records = input(40);
    produce(&bootstrap, &topic, &records).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |sink: &str| {
        format!(
            r#"
            [sources.in]
            type = "kafka"
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            group_id = "{group}"
            commit_interval = "100ms"
            # Passed through to librdkafka: a short session, so the restarted
            # member does not wait out the old one's.
            options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
            [sinks.out]
            type = "file"
            path = "{sink}"
            [routes.r]
            from = "in"
            to = ["out"]
            "#
        )
    };

    let running = start(&config("/dev/full"), dir.path()).await;
    let failed = eventually(Duration::from_secs(20), || {
        running
            .metrics
            .value("sluice_source_ack_failures_total", &[("source", "in")])
            .is_some_and(|f| f > 0)
    })
    .await;
    assert!(failed, "the sink should have failed");
    // Give auto-commit several intervals: nothing may be committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.shutdown().await.unwrap();
    assert_eq!(
        committed(&bootstrap, &group, &topic, PARTITIONS),
        vec![None; PARTITIONS as usize]
    );

    let out = dir.path().join("out.jsonl");
    let running = start(&config(&out.display().to_string()), dir.path()).await;
    assert!(eventually(Duration::from_secs(40), || read_lines(&out).len() >= 40).await);
    running.shutdown().await.unwrap();
    let mut values: Vec<_> = read_lines(&out)
        .iter()
        .map(|l| l["value"]["n"].as_u64().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..40).collect::<Vec<_>>(),
        "every record, once, after the restart"
    );
    let total: i64 = committed(&bootstrap, &group, &topic, PARTITIONS)
        .into_iter()
        .flatten()
        .sum();
    assert_eq!(total, 40);
}

/// A Kafka → Kafka route whose sink has a broker of its own, to take down
/// while the source reads on; 90 records, 30 of them delivered before the
/// outage.
struct SinkOutage {
    _broker: Broker,
    bootstrap: String,
    topic: String,
    group: String,
    sink: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    records: Vec<Input>,
    in_partitions: Vec<i32>,
    running: sluice::runtime::Running,
    _dir: tempfile::TempDir,
}

impl SinkOutage {
    /// Starts the route with `options` on its source, and delivers the
    /// first 30 records.
    async fn start(options: &str) -> Self {
        let broker = Broker::start();
        let bootstrap = broker.bootstrap();
        let (topic, group) = (unique("in"), unique("group"));
        broker.create_topic(&topic, PARTITIONS).await;
        let sink = rdkafka::mocking::MockCluster::new(1).unwrap();
        sink.create_topic("out", PARTITIONS, 1).unwrap();
        let text = format!(
            r#"
            [sources.in]
            type = "kafka"
            bootstrap_servers = "{bootstrap}"
            topics = ["{topic}"]
            group_id = "{group}"
            commit_interval = "100ms"
            options = {{ {options} }}
            [sinks.out]
            type = "kafka"
            bootstrap_servers = "{sink_bootstrap}"
            topic = "out"
            delivery_timeout = "1s"
            [routes.r]
            from = "in"
            to = ["out"]
            "#,
            sink_bootstrap = sink.bootstrap_servers()
        );
        let dir = tempfile::tempdir().unwrap();
        let running = start(&text, dir.path()).await;
        let records = input(90);
        let in_partitions = produce(&bootstrap, &topic, &records[..30]).await;
        let outage = Self {
            _broker: broker,
            bootstrap,
            topic,
            group,
            sink,
            records,
            in_partitions,
            running,
            _dir: dir,
        };
        let before = distinct(&outage.read(30).await);
        assert_eq!(before.len(), 30, "delivered before the outage");
        outage
    }

    /// Takes the sink's broker down, produces the other 60 records, and
    /// waits for the deliveries to fail.
    async fn produce_the_rest_while_down(&mut self) {
        self.sink.broker_down(1).unwrap();
        let more = produce(&self.bootstrap, &self.topic, &self.records[30..]).await;
        self.in_partitions.extend(more);
        assert!(
            eventually(Duration::from_secs(20), || {
                self.metric("sluice_source_ack_failures_total") > 0
            })
            .await,
            "the sink's deliveries should have failed"
        );
    }

    fn metric(&self, name: &str) -> u64 {
        self.running
            .metrics
            .value(name, &[("source", "in")])
            .unwrap_or(0)
    }

    /// What the sink's topic holds once `n` distinct records are there.
    async fn read(&self, n: usize) -> Vec<Rec> {
        let b = self.sink.bootstrap_servers();
        tokio::task::spawn_blocking(move || {
            consume_until(&b, "out", Duration::from_secs(40), |out| {
                distinct(out).len() >= n
            })
        })
        .await
        .unwrap()
    }

    fn committed(&self) -> Vec<i64> {
        committed(&self.bootstrap, &self.group, &self.topic, PARTITIONS)
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect()
    }

    /// Whether every partition gets committed to its end.
    async fn committed_to_the_end(&self) -> bool {
        let mut ends = vec![0i64; PARTITIONS as usize];
        for p in &self.in_partitions {
            ends[*p as usize] += 1;
        }
        eventually(Duration::from_secs(30), || self.committed() == ends).await
    }
}

/// A sink that cannot deliver for a while (its broker down for longer than
/// `delivery_timeout`) holds the source's commit point; once the backoff is
/// over the source reads the failed partitions again from that point,
/// with no restart: every record arrives, the last copy of each in order
/// per partition (a batch in flight may be sent twice), and the committed
/// offsets reach the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_not_delivered_is_read_again_without_a_restart() {
    let mut outage = SinkOutage::start("").await;
    outage.produce_the_rest_while_down().await;
    // Several rounds of reading again while the broker is down.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during: i64 = outage.committed().iter().sum();
    assert!(during <= 30, "nothing undelivered is committed ({during})");

    outage.sink.broker_up(1).unwrap();
    let out = outage.read(90).await;
    let mut got = distinct(&out);
    got.sort_unstable();
    assert_eq!(got, (0..90).collect::<Vec<_>>(), "every record, no restart");
    // A batch still queued in the sink when the broker returned may land
    // before the failed batch ahead of it is read again, so first copies
    // can be out of order; the last copy of every record is in order, so
    // a reader that keeps the latest per key ends right.
    for p in 0..PARTITIONS {
        let mut seen = std::collections::HashSet::new();
        let mut lasts: Vec<u64> = out
            .iter()
            .rev()
            .filter(|r| r.partition == p)
            .map(|r| r.headers[0].1.parse().unwrap())
            .filter(|n| seen.insert(*n))
            .collect();
        lasts.reverse();
        assert!(
            lasts.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order: {lasts:?}"
        );
    }
    assert!(outage.committed_to_the_end().await, "committed to the end");
    outage.running.shutdown().await.unwrap();
}

/// With a cooperative assignor a rebalance revokes only some partitions,
/// and the others read on: their failed batches still count, so they are
/// read again and nothing is lost (a revocation anywhere used to make
/// every partition's batches in flight stale, and a later delivered batch
/// committed past the failed ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_rebalance_loses_none_of_the_failed_batches_of_the_partitions_kept() {
    let mut outage = SinkOutage::start(
        r#""partition.assignment.strategy" = "cooperative-sticky", "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500""#,
    )
    .await;
    outage.produce_the_rest_while_down().await;

    // A second member joins and takes some partitions, then leaves again.
    let (b, g, t) = (
        outage.bootstrap.clone(),
        outage.group.clone(),
        outage.topic.clone(),
    );
    let took = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let member: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", &g)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        member.subscribe(&[&t]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut took = 0;
        while std::time::Instant::now() < deadline && took == 0 {
            let _ = member.poll(Duration::from_millis(100));
            took = member.assignment().map(|a| a.count()).unwrap_or(0);
        }
        member.unsubscribe();
        for _ in 0..10 {
            let _ = member.poll(Duration::from_millis(100));
        }
        took
    })
    .await
    .unwrap();
    assert!(took > 0, "the second member got partitions");
    assert!(outage.metric("sluice_source_rebalances_total") > 0);

    outage.sink.broker_up(1).unwrap();
    let mut got = distinct(&outage.read(90).await);
    got.sort_unstable();
    assert_eq!(got, (0..90).collect::<Vec<_>>(), "every record");
    assert!(outage.committed_to_the_end().await, "committed to the end");
    outage.running.shutdown().await.unwrap();
}

/// The distinct `n` headers of what was read.
fn distinct(out: &[Rec]) -> Vec<u64> {
    let set: std::collections::BTreeSet<u64> = out
        .iter()
        .filter_map(|r| r.headers.first()?.1.parse().ok())
        .collect();
    set.into_iter().collect()
}

/// A record over the source's `max_record_size` reaches no route: it goes
/// to the source's `dead_letter` sink without its value, with the reason
/// and its origin, and its offset is committed with its neighbours'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_record_size_is_dead_lettered_and_committed() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic, group) = (unique("in"), unique("group"));
    broker.create_topic(&topic, 1).await;
    let mut records = input(10);
    records[4].1 = format!(r#"{{"n":4,"pad":"{}"}}"#, "x".repeat(2000));
    produce(&bootstrap, &topic, &records).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, dlq) = (dir.path().join("out.jsonl"), dir.path().join("dlq.jsonl"));
    let text = format!(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{topic}"]
        group_id = "{group}"
        commit_interval = "100ms"
        max_record_size = "1KiB"
        dead_letter = "dlq"
        [sinks.out]
        type = "file"
        path = "{out}"
        [sinks.dlq]
        type = "file"
        path = "{dlq}"
        [routes.r]
        from = "in"
        to = ["out"]
        "#,
        out = out.display(),
        dlq = dlq.display()
    );
    let running = start(&text, dir.path()).await;
    assert!(eventually(Duration::from_secs(30), || read_lines(&out).len() >= 9).await);
    assert!(eventually(Duration::from_secs(10), || !read_lines(&dlq).is_empty()).await);
    let committed_all = eventually(Duration::from_secs(20), || {
        committed(&bootstrap, &group, &topic, 1) == [Some(10)]
    })
    .await;
    assert!(
        committed_all,
        "the oversized record's offset is committed too"
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_source_oversized_total", &[("source", "in")]),
        Some(1)
    );
    running.shutdown().await.unwrap();

    let ns: Vec<u64> = read_lines(&out)
        .iter()
        .map(|l| l["value"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        [0, 1, 2, 3, 5, 6, 7, 8, 9],
        "every other record, in order"
    );
    let dead = read_lines(&dlq);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d["key"], "k4");
    assert_eq!(d["value"], "", "the value is left out: {d}");
    assert_eq!(d["timestamp"], 1_000_004);
    let h = headers(d);
    assert_eq!(h["n"], "4", "its own headers are kept");
    assert_eq!(h["sluice-origin-topic"], topic);
    assert_eq!(h["sluice-origin-partition"], "0");
    assert_eq!(h["sluice-origin-position"], "4");
    let size = 2 + records[4].1.len() + "n4srctest".len();
    assert_eq!(h["sluice-record-size"], size.to_string());
    assert_eq!(
        h["sluice-error"],
        format!("record of {size} bytes is over the source's max_record_size (1024 bytes)")
    );
}

/// Two `sluice run` processes in one group share the partitions; when one is
/// killed (SIGKILL, no goodbye), the other takes its partitions over from
/// the committed offsets and every record is delivered at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_group_and_the_survivor_takes_over() {
    use std::process::{Command, Stdio};
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic, group) = (unique("in"), unique("group"));
    broker.create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
                [server]
                listen = "127.0.0.1:0"
                [sources.in]
                type = "kafka"
                bootstrap_servers = "{bootstrap}"
                topics = ["{topic}"]
                group_id = "{group}"
                commit_interval = "100ms"
                options = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}
                [sinks.out]
                type = "file"
                path = "{name}.jsonl"
                [routes.r]
                from = "in"
                to = ["out"]
                "#
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
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
    let mut a = spawn("a");
    let mut b = spawn("b");
    let (file_a, file_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let n_of = |path: &std::path::Path| -> Vec<u64> {
        read_lines(path)
            .iter()
            .map(|l| l["value"]["n"].as_u64().unwrap())
            .collect()
    };

    // Keep producing until both members have records: then both hold partitions.
    let mut produced = 0;
    let shared = eventually_async(Duration::from_secs(40), || {
        let bootstrap = bootstrap.clone();
        let topic = topic.clone();
        let start = produced;
        produced += 40;
        let (fa, fb) = (file_a.clone(), file_b.clone());
        async move {
            let batch: Vec<_> = input(start + 40).into_iter().skip(start).collect();
            produce(&bootstrap, &topic, &batch).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            !read_lines(&fa).is_empty() && !read_lines(&fb).is_empty()
        }
    })
    .await;
    assert!(shared, "both processes should get partitions");

    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let before = produced;
    let more: Vec<_> = input(before + 200).into_iter().skip(before).collect();
    produce(&bootstrap, &topic, &more).await;
    let total = before + 200;
    let all = eventually(Duration::from_secs(60), || {
        let mut seen: Vec<u64> = n_of(&file_a);
        seen.extend(n_of(&file_b));
        seen.sort_unstable();
        seen.dedup();
        seen.len() == total
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status();
    b.0.wait().unwrap();
    let mut seen: Vec<u64> = n_of(&file_a);
    seen.extend(n_of(&file_b));
    seen.sort_unstable();
    seen.dedup();
    let survivor_log = std::fs::read_to_string(dir.path().join("b.log")).unwrap_or_default();
    assert!(
        all,
        "records missing: have {} of {total}; survivor's log:\n{survivor_log}",
        seen.len()
    );
    // The survivor took over: it has records produced after the kill on
    // every partition, including the ones the killed member held.
    let late: Vec<u64> = n_of(&file_b)
        .into_iter()
        .filter(|n| *n as usize >= before)
        .collect();
    assert!(
        late.len() >= 200,
        "survivor delivered {} of the 200 late records",
        late.len()
    );
}

/// `examples/kafka-fanout.toml`, end to end on its embedded broker: orders of
/// known clients go to the topic of their region, others are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_fanout_example_routes_orders_by_region() {
    init_logging();
    let path = workspace().join("examples").join("kafka-fanout.toml");
    let config = sluice::config::Config::load(&path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap();
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    let order = |client: &str, region: &str, n: u32| {
        let value = format!(r#"{{"client_id":"{client}","region":"{region}","n":{n}}}"#);
        (client.to_owned(), value, vec![], 1_000 + i64::from(n))
    };
    let orders = vec![
        order("client-1", "eu", 1),
        order("client-9", "eu", 2),
        order("vip-7", "us", 3),
        order("client-2", "apac", 4),
        order("client-1", "eu", 5),
    ];
    produce(&bootstrap, "orders", &orders).await;
    let read = |topic: &'static str, n: usize| {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || consume(&b, topic, n, Duration::from_secs(30)))
    };
    let europe = read("orders-europe", 2).await.unwrap();
    let americas = read("orders-americas", 1).await.unwrap();
    let apac = read("orders-apac", 1).await.unwrap();
    running.shutdown().await.unwrap();
    let ns = |recs: &[Rec]| -> Vec<String> {
        let mut v: Vec<_> = recs.iter().map(|r| r.value.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ns(&europe), [orders[0].1.clone(), orders[4].1.clone()]);
    assert_eq!(ns(&americas), [orders[2].1.clone()]);
    assert_eq!(
        ns(&apac),
        [orders[3].1.clone()],
        "unmapped regions use the templated default topic"
    );
    assert!(europe.iter().all(|r| r.key.as_deref() == Some("client-1")));
}
