//! The same client filter and JSON projection written in Rust, Python and
//! JavaScript (plugins/client-filter, json-transform, examples-python,
//! examples-js), through the host's real stage, beside the Rust crates
//! compiled natively, in one run: records per second, component size and
//! load (compile) time per language.
//!
//!     PATH="$(scripts/plugin-tools.sh):$PATH" cargo bench -p sluice --bench polyglot
//!
//! `POLYGLOT_LANGS=python,js` runs only those languages (native always runs).
//! `POLYGLOT_PROBE=a.wasm,b.wasm` also times those filter components (config
//! `{}`), for probing the boundary: a component whose `filter` only returns
//! an all-zero `keep` measures the call and the lifting of the batch alone.
//!
//! Input as in the pipeline bench: the generator's ~110-byte JSON events
//! over 10 client ids in batches of 1,024; the filter keeps 5 of the 10
//! clients, the transform projects 4 fields and adds a header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::config::{Config, OnError};
use sluice::metrics::Metrics;
use sluice::pipeline::{Chain, StageSpec};
use sluice::record::{FlatBatch, Origin};
use sluice::sources::generator::push_event;
use sluice::wasm::{LoadedPlugin, PluginSlot, load_plugin};
use sluice_sdk::{run_filter, run_transform};

mod common;
use common::rate;

const BATCH: usize = 1024;
const BATCHES: usize = 200;
const CLIENTS: usize = 10;
const FILTER_CONFIG: &str =
    r#"{ clients = ["client-0", "client-2", "client-4", "client-6", "client-8"] }"#;
/// The same filter with a pattern that matches nothing: the Python and JS
/// examples then run their per-record function (`batch.map`) instead of
/// the key column, so this column is the SDKs' per-record cost.
const FILTER_EACH_CONFIG: &str = r#"{ clients = ["client-0", "client-2", "client-4", "client-6", "client-8"], patterns = ["nobody-*"] }"#;
const TRANSFORM_CONFIG: &str = r#"{ fields = ["client_id", "seq", "event", "amount"], rename = { event = "type" }, headers = { via = "sluice" } }"#;

fn batches() -> Vec<FlatBatch> {
    let mut scratch = Vec::new();
    (0..BATCHES)
        .map(|b| {
            let mut batch = FlatBatch::with_capacity(Origin::default(), BATCH, 120);
            for i in 0..BATCH {
                let seq = (b * BATCH + i) as u64;
                push_event(&mut batch, seq, CLIENTS, 1_700_000_000_000, &mut scratch);
            }
            batch
        })
        .collect()
}

/// The best of three passes over `input`, after a warm-up; the output count.
fn best(input: &[FlatBatch], mut f: impl FnMut(&FlatBatch) -> usize) -> (Duration, usize) {
    let _: usize = input[..5].iter().map(&mut f).sum();
    let mut best = (Duration::MAX, 0);
    for _ in 0..3 {
        let start = Instant::now();
        let out: usize = input.iter().map(&mut f).sum();
        best = (best.0.min(start.elapsed()), out);
    }
    best
}

fn main() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let langs = [
        ("rust", "client-filter", "json-transform"),
        (
            "python",
            "examples-python/client_filter",
            "examples-python/json_transform",
        ),
        (
            "js",
            "examples-js/client-filter",
            "examples-js/json-transform",
        ),
    ];
    let only = std::env::var("POLYGLOT_LANGS").ok();
    let langs: Vec<_> = langs
        .into_iter()
        .filter(|(lang, ..)| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|l| l == *lang))
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Built first (cargo, or the project's build.sh), so the load below
    // times the compile alone.
    let build = |dir: &str| {
        rt.block_on(sluice::reload::build_crate(&plugins.join(dir)))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
    };
    let mut text = String::new();
    for &(lang, filter, transform) in &langs {
        // The Python and JS runtimes' heaps need more than the default
        // 64 MiB under a steady stream of batches (see the README).
        let memory = if lang == "rust" { "64MiB" } else { "256MiB" };
        let (filter, transform) = (build(filter), build(transform));
        let (filter, transform) = (filter.display(), transform.display());
        text.push_str(&format!(
            "[plugins.{lang}-filter]\npath = \"{filter}\"\nconfig = {FILTER_CONFIG}\nmemory_limit = \"{memory}\"\n\
             [plugins.{lang}-each]\npath = \"{filter}\"\nconfig = {FILTER_EACH_CONFIG}\nmemory_limit = \"{memory}\"\n\
             [plugins.{lang}-transform]\npath = \"{transform}\"\nconfig = {TRANSFORM_CONFIG}\nmemory_limit = \"{memory}\"\n"
        ));
    }
    let probes: Vec<String> = std::env::var("POLYGLOT_PROBE")
        .map(|p| p.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    for (i, path) in probes.iter().enumerate() {
        text.push_str(&format!(
            "[plugins.probe-{i}]\npath = \"{path}\"\nconfig = {{}}\nmemory_limit = \"256MiB\"\n"
        ));
    }
    // A config needs a route; this one is never started.
    text.push_str(
        "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"blackhole\"\n\
         [routes.r]\nfrom = \"gen\"\nto = [\"out\"]\n",
    );
    let config = Config::parse(&text, Path::new("."), |_| None).unwrap();
    let input = batches();
    let records = BATCH * BATCHES;
    println!("input: {records} records in batches of {BATCH}");

    let metrics = Metrics::new();
    let spec = |p: &LoadedPlugin| StageSpec {
        plugin: PluginSlot::fixed(Arc::clone(&p.plugin)),
        on_error: OnError::Drop,
        dead_letter: None,
        imports: Default::default(),
        poison_attempts: 1,
    };
    let (mut f, mut t) = (
        common::native_client_filter(),
        common::native_json_transform(),
    );
    let (native_filter, kept) = best(&input, |b| {
        run_filter(&mut f, &b.clone())
            .keep
            .iter()
            .filter(|k| **k != 0)
            .count()
    });
    let (native_transform, projected) =
        best(&input, |b| run_transform(&mut t, &b.clone()).outputs.len());
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "", "filter rec/s", "per-rec rec/s", "transform rec/s", "size", "load"
    );
    println!(
        "{:<8} {:>14.0} {:>14} {:>14.0} {:>10} {:>10}",
        "native",
        rate(records, native_filter),
        "-",
        rate(records, native_transform),
        "-",
        "-"
    );
    for &(lang, ..) in &langs {
        let load = |name: String| {
            let started = Instant::now();
            let p = rt
                .block_on(load_plugin(&name, &config.plugins[&name]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (p, started.elapsed())
        };
        let (filter, load_filter) = load(format!("{lang}-filter"));
        let (each, _) = load(format!("{lang}-each"));
        let (transform, _) = load(format!("{lang}-transform"));
        let size = std::fs::metadata(&filter.file)
            .map(|m| m.len())
            .unwrap_or(0);
        let mut chain = Chain::new("f", 0, &[spec(&filter)], &metrics);
        let (ft, fout) = best(&input, |b| chain.process(b.clone()).records.len());
        let mut chain = Chain::new("e", 0, &[spec(&each)], &metrics);
        let (et, eout) = best(&input, |b| chain.process(b.clone()).records.len());
        let mut chain = Chain::new("t", 0, &[spec(&transform)], &metrics);
        let (tt, tout) = best(&input, |b| chain.process(b.clone()).records.len());
        assert_eq!(
            (fout, eout, tout),
            (kept, kept, projected),
            "{lang}: outputs differ from native"
        );
        println!(
            "{:<8} {:>14.0} {:>14.0} {:>14.0} {:>9.1}M {:>9.2}s   ({:.1}x / {:.1}x native time)",
            lang,
            rate(records, ft),
            rate(records, et),
            rate(records, tt),
            size as f64 / 1e6,
            load_filter.as_secs_f64(),
            ft.as_secs_f64() / native_filter.as_secs_f64(),
            tt.as_secs_f64() / native_transform.as_secs_f64(),
        );
    }
    for (i, path) in probes.iter().enumerate() {
        let name = format!("probe-{i}");
        let p = rt
            .block_on(load_plugin(&name, &config.plugins[&name]))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut chain = Chain::new("p", 0, &[spec(&p)], &metrics);
        let (pt, _) = best(&input, |b| chain.process(b.clone()).records.len());
        println!("probe {path}: {:.0} rec/s", rate(records, pt));
    }
}
