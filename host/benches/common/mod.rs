//! What the benches share.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

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
