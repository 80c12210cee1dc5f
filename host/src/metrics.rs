//! Counters, gauges and histograms, kept and rendered by `prometheus-client`
//! (the OpenMetrics text format, which Prometheus scrapes natively).
//!
//! Handles are looked up once, when a component is built, and are plain
//! atomics after that (a histogram takes one short lock per observation,
//! and is observed per batch, never per record): nothing on the record path
//! touches a map.
//!
//! Names are given whole (`sluice_source_records_total`); a counter's
//! `_total` is the suffix OpenMetrics adds to its family name, so it renders
//! exactly as given.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PGauge;
use prometheus_client::metrics::histogram::{Histogram as PHistogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, PHistogram, fn() -> PHistogram>;

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(PCounter);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(PGauge);

impl Gauge {
    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.inc_by(n);
    }

    /// Sets the value to `n`.
    pub fn set(&self, n: i64) {
        self.0.set(n);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A distribution of durations, in seconds.
#[derive(Debug, Clone)]
pub struct Histogram(PHistogram);

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Buckets for every latency histogram: 0.5 ms doubling to about 16 s.
fn latency_histogram() -> PHistogram {
    PHistogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    counters: HashMap<String, Family<Labels, PCounter>>,
    gauges: HashMap<String, Family<Labels, PGauge>>,
    histograms: HashMap<String, Histograms>,
    /// Metrics without labels, registered as they are (so they render as
    /// `name 2`, not `name{} 2`).
    plain: HashMap<String, Metric>,
    /// (name, labels) → handle, for [`Metrics::value`].
    index: BTreeMap<(String, Labels), Metric>,
}

impl Default for Inner {
    fn default() -> Self {
        let mut registry = Registry::default();
        registry.register(
            "sluice_build",
            "The Sluice build: its version",
            Info::new(vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )]),
        );
        Self {
            registry,
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
            plain: HashMap::new(),
            index: BTreeMap::new(),
        }
    }
}

/// All metrics of one Sluice process.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    /// Whether each component reaches its server, for `/health`.
    links: crate::health::Links,
    /// The open taps (`/ui/tap`, `sluice tap`) routes offer records to.
    taps: crate::tap::Taps,
}

/// The label set, values escaped as the text format wants (`\`, `"` and
/// newlines): `prometheus-client` writes label values as they are.
fn labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            ((*k).to_owned(), v)
        })
        .collect()
}

impl Metrics {
    /// An empty registry (with `sluice_build_info`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection states `/health` reports.
    pub fn links(&self) -> &crate::health::Links {
        &self.links
    }

    /// The open taps routes offer their records to.
    pub fn taps(&self) -> &crate::tap::Taps {
        self.taps
            .count_drops_in(|| self.counter("sluice_tap_events_dropped_total", &[]));
        &self.taps
    }

    /// Every counter or gauge called `name`: its labels and value, in label
    /// order.
    pub fn values(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        let inner = self.inner();
        let mut out: Vec<_> = inner
            .index
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), m)| {
                let value = match m {
                    Metric::Counter(c) => c.get(),
                    Metric::Gauge(g) => u64::try_from(g.get()).unwrap_or(0),
                };
                (labels.clone(), value)
            })
            .collect();
        out.sort();
        out
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counter `name` with `labels`, created at zero if new.
    pub fn counter(&self, name: &str, label_pairs: &[(&str, &str)]) -> Counter {
        let labels = labels(label_pairs);
        let mut inner = self.inner();
        let inner = &mut *inner;
        if labels.is_empty() {
            let metric = inner.plain.entry(name.to_owned()).or_insert_with(|| {
                let counter = Counter::default();
                let base = name.strip_suffix("_total").unwrap_or(name);
                inner.registry.register(base, help(name), counter.0.clone());
                Metric::Counter(counter)
            });
            let counter = match metric {
                Metric::Counter(c) => c.clone(),
                Metric::Gauge(_) => Counter::default(),
            };
            inner
                .index
                .insert((name.to_owned(), labels), Metric::Counter(counter.clone()));
            return counter;
        }
        let family = inner
            .counters
            .entry(name.to_owned())
            .or_insert_with(|| {
                let family = Family::<Labels, PCounter>::default();
                let base = name.strip_suffix("_total").unwrap_or(name);
                inner.registry.register(base, help(name), family.clone());
                family
            })
            .clone();
        let counter = Counter(family.get_or_create(&labels).clone());
        inner
            .index
            .insert((name.to_owned(), labels), Metric::Counter(counter.clone()));
        counter
    }

    /// The gauge `name` with `labels`, created at zero if new.
    pub fn gauge(&self, name: &str, label_pairs: &[(&str, &str)]) -> Gauge {
        let labels = labels(label_pairs);
        let mut inner = self.inner();
        let inner = &mut *inner;
        if labels.is_empty() {
            let metric = inner.plain.entry(name.to_owned()).or_insert_with(|| {
                let gauge = Gauge::default();
                inner.registry.register(name, help(name), gauge.0.clone());
                Metric::Gauge(gauge)
            });
            let gauge = match metric {
                Metric::Gauge(g) => g.clone(),
                Metric::Counter(_) => Gauge::default(),
            };
            inner
                .index
                .insert((name.to_owned(), labels), Metric::Gauge(gauge.clone()));
            return gauge;
        }
        let family = inner
            .gauges
            .entry(name.to_owned())
            .or_insert_with(|| {
                let family = Family::<Labels, PGauge>::default();
                inner.registry.register(name, help(name), family.clone());
                family
            })
            .clone();
        let gauge = Gauge(family.get_or_create(&labels).clone());
        inner
            .index
            .insert((name.to_owned(), labels), Metric::Gauge(gauge.clone()));
        gauge
    }

    /// The latency histogram `name` (seconds) with `labels`.
    pub fn histogram(&self, name: &str, label_pairs: &[(&str, &str)]) -> Histogram {
        let labels = labels(label_pairs);
        let mut inner = self.inner();
        let inner = &mut *inner;
        let family = inner
            .histograms
            .entry(name.to_owned())
            .or_insert_with(|| {
                let family: Histograms = Family::new_with_constructor(latency_histogram);
                inner.registry.register(name, help(name), family.clone());
                family
            })
            .clone();
        Histogram(family.get_or_create(&labels).clone())
    }

    /// The current value of counter or gauge `name` with exactly `labels`,
    /// if it exists.
    pub fn value(&self, name: &str, label_pairs: &[(&str, &str)]) -> Option<u64> {
        let key = (name.to_owned(), labels(label_pairs));
        match self.inner().index.get(&key)? {
            Metric::Counter(c) => Some(c.get()),
            Metric::Gauge(g) => u64::try_from(g.get()).ok(),
        }
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.inner().registry) {
            tracing::warn!(error = %e, "Cannot render the metrics.");
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `# HELP` text of a metric.
fn help(name: &str) -> &'static str {
    match name {
        "sluice_source_records_total" => "Records read by a source",
        "sluice_source_ack_failures_total" => "Source batches that were not delivered",
        "sluice_source_rebalances_total" => "Kafka partition assignments revoked",
        "sluice_source_transactions_total" => {
            "Kafka transactions of exactly_once routes, by outcome"
        }
        "sluice_source_committed_records_total" => "Records read in committed Kafka transactions",
        "sluice_route_records_in_total" => "Records into a route",
        "sluice_route_records_out_total" => "Records a route delivered",
        "sluice_sink_records_total" => "Records a sink acknowledged",
        "sluice_sink_duplicates_total" => {
            "Redeliveries a dedupe sink recognised and did not write again"
        }
        "sluice_sink_errors_total" => "Sink batches that failed",
        "sluice_tap_events_dropped_total" => {
            "Tap events dropped because a tap's reader fell behind (records are never dropped)"
        }
        "sluice_redis_pending" => "Entries read but not yet acknowledged, per Redis stream",
        "sluice_kafka_consumer_lag" => "Records behind the partition's end, per Kafka partition",
        "sluice_stage_batch_seconds" => "Time one plugin call took for one batch",
        "sluice_sink_ack_seconds" => {
            "Time from a batch reaching a sink until the sink acknowledged it"
        }
        "sluice_end_to_end_seconds" => {
            "Time from a batch's oldest record timestamp until every sink acknowledged it"
        }
        _ => "A Sluice metric (see the README's HTTP endpoints)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_text() {
        let m = Metrics::new();
        m.counter("sluice_x_total", &[("route", "a\"b")]).add(3);
        m.counter("sluice_x_total", &[("route", "a\"b")]).add(1);
        m.gauge("sluice_clients", &[]).add(2);
        m.histogram("sluice_t_seconds", &[("sink", "s")])
            .observe(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("# TYPE sluice_x counter\n"), "{text}");
        assert!(
            text.contains("sluice_x_total{route=\"a\\\"b\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("sluice_clients 2\n"), "{text}");
        assert!(
            text.contains("sluice_t_seconds_count{sink=\"s\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_build_info{version=\"0.1.0\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(m.value("sluice_x_total", &[("route", "a\"b")]), Some(4));
    }
}
