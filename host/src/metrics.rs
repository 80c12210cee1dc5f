//! Counters and gauges, rendered in the Prometheus text format.
//!
//! Handles are looked up once, when a component is built, and are plain
//! atomics after that: nothing on the record path touches a map or a lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value to `n`.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

/// All metrics of one Sluice process.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    // (name, rendered labels) → metric
    inner: Arc<Mutex<BTreeMap<(String, String), Metric>>>,
    /// Whether each component reaches its server, for `/health`.
    links: crate::health::Links,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connection states `/health` reports.
    pub fn links(&self) -> &crate::health::Links {
        &self.links
    }

    /// The counter `name` with `labels`, created at zero if new.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Counter {
        match self.entry(name, labels, || Metric::Counter(Counter::default())) {
            Metric::Counter(c) => c,
            Metric::Gauge(_) => Counter::default(),
        }
    }

    /// The gauge `name` with `labels`, created at zero if new.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.entry(name, labels, || Metric::Gauge(Gauge::default())) {
            Metric::Gauge(g) => g,
            Metric::Counter(_) => Gauge::default(),
        }
    }

    fn entry(&self, name: &str, labels: &[(&str, &str)], new: impl FnOnce() -> Metric) -> Metric {
        let key = (name.to_owned(), render_labels(labels));
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(new).clone()
    }

    /// The current value of counter `name` with exactly `labels`, if it exists.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let key = (name.to_owned(), render_labels(labels));
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key)? {
            Metric::Counter(c) => Some(c.get()),
            Metric::Gauge(g) => u64::try_from(g.get()).ok(),
        }
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last_name = "";
        for ((name, labels), metric) in map.iter() {
            if name != last_name {
                let kind = match metric {
                    Metric::Counter(_) => "counter",
                    Metric::Gauge(_) => "gauge",
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last_name = name;
            }
            let value = match metric {
                Metric::Counter(c) => c.get().to_string(),
                Metric::Gauge(g) => g.get().to_string(),
            };
            let _ = writeln!(out, "{name}{labels} {value}");
        }
        out
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.counter("sluice_x_total", &[("route", "a\"b")]).add(3);
        m.counter("sluice_x_total", &[("route", "a\"b")]).add(1);
        m.gauge("sluice_clients", &[]).add(2);
        let text = m.render();
        assert!(
            text.contains("# TYPE sluice_x_total counter\nsluice_x_total{route=\"a\\\"b\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("sluice_clients 2\n"), "{text}");
        assert_eq!(m.value("sluice_x_total", &[("route", "a\"b")]), Some(4));
    }
}
