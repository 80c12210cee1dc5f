//! Stream-table join: records per second through `json-enrich` against a
//! table of 1M products, and the table's memory per key.
//!
//!     cargo bench -p sluice --bench join
//!
//! Purchases (`{"id":N,"price":12.34}`, ~30 bytes) pick ids uniformly from
//! a range 10% larger than the table, so about 9% miss and get the default.
//! Table entries are `N → {"id":N,"name":"produit N"}`.
//!
//! - **Wasm, 1M keys**: the host's stage chain with the `json-enrich`
//!   component, its `tables` import reading the host's table.
//! - **Native, 1M keys**: the same crate compiled natively over the SDK's
//!   test table (a `HashMap` too), through the same batch loop.
//! - **Wasm, 1K keys**: as the first, with a table that fits in cache: the
//!   difference is the price of looking up in a table that does not.
//!
//! Memory per key is measured twice: bytes the table's allocations asked for
//! (a counting allocator), and the process's resident set before and after
//! filling it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice::config::{Config, OnError};
use sluice::metrics::Metrics;
use sluice::pipeline::{Chain, StageSpec};
use sluice::record::{FlatBatch, Origin, Position};
use sluice::tables::{Table, Tables};
use sluice::wasm::{HostImports, LoadedPlugin, PluginSlot, load_plugin_with};
use sluice_sdk::{Transform, run_transform};

mod common;
use common::compare;

const KEYS: usize = 1_000_000;
const SMALL_KEYS: usize = 1_000;
const BATCH: usize = 1024;
const BATCHES: usize = 300;

/// Counts the bytes currently allocated, to weigh the table.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resident set size, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn product(id: usize) -> (String, String) {
    (
        id.to_string(),
        format!(r#"{{"id":{id},"name":"produit {id}"}}"#),
    )
}

fn fill(table: &Table, keys: usize) {
    let mut chunk = Vec::with_capacity(10_000);
    for id in 0..keys {
        chunk.push(product(id));
        if chunk.len() == chunk.capacity() || id + 1 == keys {
            table.apply(
                chunk
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes()))),
            );
            chunk.clear();
        }
    }
}

/// Purchases with ids drawn from `0..keys * 1.1` (xorshift, fixed seed).
fn purchases(keys: usize) -> Vec<FlatBatch> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let range = (keys + keys / 10) as u64;
    (0..BATCHES)
        .map(|b| {
            let mut batch = FlatBatch::with_capacity(Origin::default(), BATCH, 32);
            for i in 0..BATCH {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = x % range;
                let value = format!(r#"{{"id":{id},"price":{}.{:02}}}"#, id % 100, i % 100);
                batch.push(
                    Position {
                        offset: (b * BATCH + i) as u64,
                        sequence: 0,
                    },
                    None,
                    Some(value.as_bytes()),
                    1_700_000_000_000,
                    std::iter::empty(),
                );
            }
            batch
        })
        .collect()
}

fn config_text(plugins: &Path) -> String {
    format!(
        r#"
        [sources.in]
        type = "http"
        [tables.products]
        type = "redis"
        url = "redis://127.0.0.1:1"
        hash = "products"
        [plugins.enrich]
        crate = "{root}/json-enrich"
        tables = ["products"]
        [plugins.enrich.config]
        table = "products"
        join_field = "id"
        fields = ["name"]
        default = {{ name = "REF INCONNUE" }}
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["enrich"]
        to = ["out"]
        "#,
        root = plugins.display()
    )
}

fn chain(plugin: &LoadedPlugin, table: &Arc<Table>, metrics: &Metrics) -> Chain {
    let spec = StageSpec {
        plugin: PluginSlot::fixed(Arc::clone(&plugin.plugin)),
        on_error: OnError::Drop,
        dead_letter: None,
        imports: HostImports {
            tables: Tables::of([Arc::clone(table)]),
            ..HostImports::default()
        },
        poison_attempts: 1,
    };
    Chain::new("join", 0, &[spec], metrics)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let config = Config::parse(&config_text(&root), Path::new("."), |_| None).unwrap();
    let metrics = Metrics::new();

    // The table, weighed as it is filled.
    let table = Arc::new(Table::new("products", &metrics));
    let (heap_before, rss_before) = (ALLOCATED.load(Ordering::Relaxed), rss());
    fill(&table, KEYS);
    let (heap_after, rss_after) = (ALLOCATED.load(Ordering::Relaxed), rss());
    let entry_bytes: usize = (0..KEYS)
        .map(|id| {
            let (k, v) = product(id);
            k.len() + v.len()
        })
        .sum();
    println!("table: {} keys", table.len());
    println!(
        "  key + value bytes:        {:>6.1} bytes/key",
        entry_bytes as f64 / KEYS as f64
    );
    println!(
        "  allocated (heap):         {:>6.1} bytes/key ({:.0} MiB)",
        (heap_after - heap_before) as f64 / KEYS as f64,
        (heap_after - heap_before) as f64 / (1 << 20) as f64
    );
    println!(
        "  resident set growth:      {:>6.1} bytes/key ({:.0} MiB)",
        rss_after.saturating_sub(rss_before) as f64 / KEYS as f64,
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64
    );

    let plugin = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let imports = HostImports {
            tables: Tables::of([Arc::clone(&table)]),
            ..HostImports::default()
        };
        rt.block_on(load_plugin_with(
            "enrich",
            &config.plugins["enrich"],
            imports,
        ))
        .unwrap()
    };
    let plugin_config = serde_json::json!({
        "table": "products",
        "join_field": "id",
        "fields": ["name"],
        "default": {"name": "REF INCONNUE"},
    });
    let native = || {
        json_enrich::JsonEnrich::init(sluice_sdk::testing::config(plugin_config.clone()).unwrap())
            .unwrap()
    };

    let small = Arc::new(Table::new("products", &metrics));
    fill(&small, SMALL_KEYS);
    for (label, table, keys) in [
        ("json-enrich, 1M-key table", &table, KEYS),
        ("json-enrich, 1K-key table", &small, SMALL_KEYS),
    ] {
        let input = purchases(keys);
        sluice_sdk::testing::set_table("products", (0..keys).map(product));
        let (mut wasm, mut nat) = (chain(&plugin, table, &metrics), native());
        compare(
            label,
            &input,
            |b| wasm.process(b.clone()).records.len(),
            |b| run_transform(&mut nat, &b.clone()).outputs.len(),
        );
    }
}
