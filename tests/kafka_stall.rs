//! A Kafka source whose routes stall for longer than librdkafka's
//! `max.poll.interval.ms` keeps its group membership: while it waits for the
//! routes it pauses its partitions and keeps polling, so it is not thrown
//! out of the group (which would hand its partitions over and redeliver
//! everything in flight).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kafka::*;
use common::*;

const RECORDS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_poll_interval_keeps_the_group_and_delivers_once() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (topic, group) = (unique("stall"), unique("group"));
    broker.create_topic(&topic, 1).await;
    // Together far more than a pipe's 64 KiB buffer, so the sink blocks
    // until the reader reads, and batches back up into the source.
    let big = "x".repeat(5_000);
    let records: Vec<Input> = (0..RECORDS)
        .map(|i| {
            let value = format!(r#"{{"n":{i},"pad":"{big}"}}"#);
            ("k".to_owned(), value, vec![], 1_000 + i as i64)
        })
        .collect();
    produce(&bootstrap, &topic, &records).await;

    let dir = tempfile::tempdir().unwrap();
    let fifo = HeldFifo::new(dir.path());
    let text = format!(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "{bootstrap}"
        topics = ["{topic}"]
        group_id = "{group}"
        batch_size = 1
        [sources.in.options]
        "max.poll.interval.ms" = "3000"
        "session.timeout.ms" = "3000"
        "heartbeat.interval.ms" = "300"
        [sinks.slow]
        type = "file"
        path = "{fifo}"
        [routes.r]
        from = "in"
        to = ["slow"]
        workers = 1
        queue = 1
        "#,
        fifo = fifo.path.display()
    );
    let running = start(&text, dir.path()).await;
    let source_read = |n: u64| {
        running
            .metrics
            .value("sluice_source_records_total", &[("source", "in")])
            .is_some_and(|v| v >= n)
    };
    // The pipe, the sink's queue and the route's queue fill up; the source
    // then waits for the routes, well short of every record.
    assert!(eventually(Duration::from_secs(20), || source_read(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !source_read(RECORDS as u64),
        "the sink did not hold the source back"
    );
    // Stall for more than twice the poll interval.
    tokio::time::sleep(Duration::from_secs(7)).await;
    fifo.release();

    assert!(
        eventually(Duration::from_secs(30), || source_read(RECORDS as u64)).await,
        "the source did not resume"
    );
    let rebalances = running
        .metrics
        .value("sluice_source_rebalances_total", &[("source", "in")])
        .unwrap_or(0);
    running.shutdown().await.unwrap();
    let out = String::from_utf8(fifo.written()).unwrap();
    let seen: Vec<u64> = out
        .lines()
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            line["value"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        seen,
        (0..RECORDS as u64).collect::<Vec<_>>(),
        "every record once, in order"
    );
    assert_eq!(rebalances, 0, "the stall cost the group membership");
}
