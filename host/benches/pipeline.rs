//! Records per second through client-filter → json-transform: the Wasm stage
//! chain against the same plugin crates compiled natively, in one run, and a
//! whole route (generator → chain → blackhole) through the runtime.
//!
//!     cargo bench -p sluice --bench pipeline
//!
//! Records are the generator's ~110-byte JSON events over 10 client ids; the
//! filter keeps 5 of them, the transform projects 4 fields and adds a header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sluice::config::{Config, OnError};
use sluice::metrics::Metrics;
use sluice::pipeline::{Chain, StageSpec};
use sluice::record::{FlatBatch, Origin};
use sluice::sources::generator::push_event;
use sluice::wasm::load_plugin;
use sluice_sdk::{run_filter, run_transform};

mod common;
use common::{compare, rate};

const BATCH: usize = 1024;
const BATCHES: usize = 500;
const CLIENTS: usize = 10;

fn config_text(plugins: &Path, count: u64) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.gen]
        type = "generator"
        rate = 0
        clients = {CLIENTS}
        count = {count}
        batch_size = {BATCH}
        [plugins.filter]
        crate = "{root}/client-filter"
        [plugins.filter.config]
        clients = ["client-0", "client-2", "client-4", "client-6", "client-8"]
        [plugins.transform]
        crate = "{root}/json-transform"
        [plugins.transform.config]
        fields = ["client_id", "seq", "event", "amount"]
        rename = {{ event = "type" }}
        headers = {{ via = "sluice" }}
        [sinks.count]
        type = "blackhole"
        [routes.bench]
        from = "gen"
        through = ["filter", "transform"]
        to = ["count"]
        "#,
        root = plugins.display()
    )
}

fn batches() -> Vec<FlatBatch> {
    let mut scratch = Vec::new();
    let now = 1_700_000_000_000;
    (0..BATCHES)
        .map(|b| {
            let mut batch = FlatBatch::with_capacity(Origin::default(), BATCH, 120);
            for i in 0..BATCH {
                push_event(
                    &mut batch,
                    (b * BATCH + i) as u64,
                    CLIENTS,
                    now,
                    &mut scratch,
                );
            }
            batch
        })
        .collect()
}

fn compact(batch: &FlatBatch, keep: &[u8]) -> FlatBatch {
    let mut kept = FlatBatch::new(batch.origin.clone());
    for (r, k) in batch.records().zip(keep) {
        if *k != 0 {
            kept.push_record(&r);
        }
    }
    kept
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = config_text(&root, (BATCH * BATCHES) as u64);
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    let (filter, transform) = rt.block_on(async {
        let f = load_plugin("filter", &config.plugins["filter"])
            .await
            .unwrap();
        let t = load_plugin("transform", &config.plugins["transform"])
            .await
            .unwrap();
        (f, t)
    });
    let input = batches();
    let records = BATCH * BATCHES;
    let bytes: usize = input.iter().map(|b| b.values.len()).sum();
    println!(
        "input: {records} records in batches of {BATCH}, {:.0} bytes/record on average",
        bytes as f64 / records as f64
    );

    let native_filter = common::native_client_filter;
    let native_transform = common::native_json_transform;
    let metrics = Metrics::new();
    let spec = |p: &sluice::wasm::LoadedPlugin| StageSpec {
        plugin: sluice::wasm::PluginSlot::fixed(Arc::clone(&p.plugin)),
        on_error: OnError::Drop,
        dead_letter: None,
        imports: Default::default(),
        poison_attempts: 1,
    };

    // Each pair does the same work per batch: the host clones the batch
    // (the Wasm side needs an owned one), runs the logic, and (between
    // stages) compacts the kept records into a new batch.
    let mut f = native_filter();
    let mut chain = Chain::new("filter", 0, &[spec(&filter)], &metrics);
    compare(
        "client-filter",
        &input,
        |b| chain.process(b.clone()).records.len(),
        |b| {
            let b = b.clone();
            let keep = run_filter(&mut f, &b).keep;
            compact(&b, &keep).len()
        },
    );
    let mut t = native_transform();
    let mut chain = Chain::new("transform", 0, &[spec(&transform)], &metrics);
    compare(
        "json-transform",
        &input,
        |b| chain.process(b.clone()).records.len(),
        |b| run_transform(&mut t, &b.clone()).outputs.len(),
    );
    let (mut f, mut t) = (native_filter(), native_transform());
    let mut chain = Chain::new("bench", 0, &[spec(&filter), spec(&transform)], &metrics);
    compare(
        "client-filter → json-transform",
        &input,
        |b| chain.process(b.clone()).records.len(),
        |b| {
            let b = b.clone();
            let keep = run_filter(&mut f, &b).keep;
            run_transform(&mut t, &compact(&b, &keep)).outputs.len()
        },
    );

    // The whole route: generator → route worker (blocking pool) → blackhole.
    let (took, delivered) = rt.block_on(async {
        let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
        // Plugins load (and the generator starts) inside `start`; time from
        // its return, which is within microseconds of the first record.
        let mut running = sluice::runtime::start(config).await.unwrap();
        let started = Instant::now();
        running.sources_finished().await;
        let metrics = running.metrics.clone();
        running.shutdown().await.unwrap();
        let took = started.elapsed();
        let delivered = metrics
            .value("sluice_sink_records_total", &[("sink", "count")])
            .unwrap_or(0);
        (took, delivered)
    });
    println!(
        "whole route (generator → chain → blackhole, until drained): {:>12.0} records/s ({delivered} delivered)",
        rate(records, took)
    );
}
