//! What a tap costs its route: generator → route → blackhole, without a
//! tap, with a tap whose reader never reads (its queue full, every sampled
//! event dropped), and with one sampling at its highest rate and read, in
//! one run, alternating, best of three each.
//!
//!     cargo bench -p sluice --bench tap
//!
//! The route has no plugins, so the tap's share is as large as it gets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::config::Config;
use sluice::tap::{MAX_RATE, TapFilter};

const RECORDS: u64 = 2_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Tap {
    None,
    Stalled,
    Reading,
}

async fn pass(tap: Tap) -> Duration {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.gen]
        type = "generator"
        rate = 0
        clients = 10
        count = {RECORDS}
        batch_size = 1024
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "gen"
        to = ["out"]
        "#
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    let mut running = sluice::runtime::start(config).await.unwrap();
    let started = Instant::now();
    let filter = TapFilter {
        route: "r".into(),
        port: None,
        key: None,
        rate: MAX_RATE,
    };
    let mut stream = (tap != Tap::None).then(|| running.metrics.taps().open(filter));
    let reader = match (tap, stream.take()) {
        (Tap::Reading, Some(mut s)) => Some(tokio::spawn(async move {
            let mut n = 0u64;
            while s.rx.recv().await.is_some() {
                n += 1;
            }
            n
        })),
        (_, s) => {
            stream = s;
            None
        }
    };
    running.sources_finished().await;
    let metrics = running.metrics.clone();
    running.shutdown().await.unwrap();
    let took = started.elapsed();
    drop(stream);
    if let Some(r) = reader {
        r.abort();
    }
    let delivered = metrics
        .value("sluice_sink_records_total", &[("sink", "out")])
        .unwrap_or(0);
    assert_eq!(delivered, RECORDS, "every record delivered");
    took
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut best = [Duration::MAX; 3];
    for _ in 0..3 {
        for (i, tap) in [Tap::None, Tap::Stalled, Tap::Reading]
            .into_iter()
            .enumerate()
        {
            best[i] = best[i].min(rt.block_on(pass(tap)));
        }
    }
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    println!("{RECORDS} records, generator → route → blackhole, best of 3:");
    println!(
        "  no tap:                   {:>12.0} records/s",
        rate(best[0])
    );
    println!(
        "  a tap nobody reads:       {:>12.0} records/s ({:.3}x the time without)",
        rate(best[1]),
        best[1].as_secs_f64() / best[0].as_secs_f64()
    );
    println!(
        "  a tap read at {MAX_RATE}/s:    {:>12.0} records/s ({:.3}x the time without)",
        rate(best[2]),
        best[2].as_secs_f64() / best[0].as_secs_f64()
    );
}
