//! What a Kafka client tells `/health`, and how its errors are logged.
//!
//! librdkafka reports trouble three ways: a `FAIL` log line per broker
//! connection attempt, an error callback (`BrokerTransportFailure` for one
//! broker, `AllBrokersDown` when none is left), and, with
//! `statistics.interval.ms`, each broker's state. [`KafkaLink`] turns them
//! into one link state and one log line per change: the link is up while any
//! broker is `UP`, down when none is, and a failure is logged once, not every
//! second while it lasts; the next line about it (another error, or `Kafka
//! reachable`) carries how often it repeated meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;

use crate::health::{LinkPart, Links};

/// How often librdkafka reports broker states (`statistics.interval.ms`).
pub const STATS_INTERVAL_MS: &str = "1000";

/// One Kafka client's part of its component's link.
#[derive(Debug)]
pub struct KafkaLink {
    component: String,
    part: LinkPart,
    /// The last transport error logged, so a repeat is not logged again.
    last_logged: Mutex<Option<String>>,
    /// How often the last logged error came again without being logged.
    repeats: std::sync::atomic::AtomicU64,
    /// For a consumer: its lag per partition.
    lag: Option<Lag>,
}

/// The part of librdkafka's statistics that says which brokers are up.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Deserialize)]
struct PartitionStats {
    partition: i32,
    /// -1 when unknown (not assigned to this consumer).
    #[serde(default = "unknown")]
    consumer_lag: i64,
}

fn unknown() -> i64 {
    -1
}

/// `sluice_kafka_consumer_lag{source,topic,partition}`, from the statistics.
#[derive(Debug)]
struct Lag {
    metrics: crate::metrics::Metrics,
    source: String,
    /// Partitions reported so far: one no longer assigned drops to 0.
    reported: Mutex<std::collections::BTreeSet<(String, i32)>>,
}

#[derive(Deserialize)]
struct BrokerStats {
    #[serde(default)]
    nodename: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    state: String,
}

impl KafkaLink {
    /// The link of `component` (`"sinks.kafka"`).
    pub fn new(links: &Links, component: &str) -> Self {
        Self {
            component: component.to_owned(),
            part: links.part(component, "client"),
            last_logged: Mutex::new(None),
            repeats: std::sync::atomic::AtomicU64::new(0),
            lag: None,
        }
    }

    /// Also reports a consumer's lag per partition, as
    /// `sluice_kafka_consumer_lag{source,topic,partition}`.
    pub fn with_lag(mut self, metrics: &crate::metrics::Metrics, source: &str) -> Self {
        self.lag = Some(Lag {
            metrics: metrics.clone(),
            source: source.to_owned(),
            reported: Mutex::new(Default::default()),
        });
        self
    }

    fn report_lag(&self, topics: &HashMap<String, TopicStats>) {
        let Some(lag) = &self.lag else { return };
        let mut reported = lag.reported.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = std::collections::BTreeSet::new();
        for (topic, t) in topics {
            for p in t.partitions.values() {
                if p.partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                let partition = p.partition.to_string();
                lag.metrics
                    .gauge(
                        "sluice_kafka_consumer_lag",
                        &[
                            ("source", &lag.source),
                            ("topic", topic),
                            ("partition", &partition),
                        ],
                    )
                    .set(p.consumer_lag);
                now.insert((topic.clone(), p.partition));
            }
        }
        for (topic, partition) in reported.difference(&now) {
            let partition = partition.to_string();
            lag.metrics
                .gauge(
                    "sluice_kafka_consumer_lag",
                    &[
                        ("source", &lag.source),
                        ("topic", topic),
                        ("partition", &partition),
                    ],
                )
                .set(0);
        }
        reported.extend(now);
    }

    /// Takes librdkafka's statistics JSON.
    pub fn stats(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Stats>(json) else {
            return;
        };
        self.report_lag(&stats.topics);
        let brokers: Vec<&BrokerStats> = stats
            .brokers
            .values()
            .filter(|b| b.source != "internal" && b.source != "logical")
            .collect();
        if brokers.is_empty() {
            return;
        }
        if brokers.iter().any(|b| b.state == "UP") {
            if !self.part.is_up() {
                self.part.up();
                let repeats = self.repeats.swap(0, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(component = %self.component, last_error_repeats = repeats, "Kafka reachable.");
                *self.last_logged.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            return;
        }
        let mut states: Vec<String> = brokers
            .iter()
            .map(|b| format!("{} {}", b.nodename, b.state))
            .collect();
        states.sort();
        let last = self
            .last_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let reason = match last {
            Some(error) => format!(
                "no broker is up ({}); last error: {error}",
                states.join(", ")
            ),
            None => format!("no broker is up ({})", states.join(", ")),
        };
        if self.part.down(reason.clone()) {
            tracing::warn!(component = %self.component, %reason, "Kafka unreachable; records wait and are retried.");
        }
    }

    /// Takes an error from librdkafka's error callback.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            let last = self
                .last_logged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let why = last.unwrap_or_else(|| reason.to_owned());
            if self
                .part
                .down(format!("all brokers are down; last error: {why}"))
            {
                tracing::warn!(component = %self.component, reason = %why, "Kafka unreachable: all brokers are down; records wait and are retried.");
            }
            return;
        }
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref().map(gist) == Some(gist(reason)) {
            self.repeats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(component = %self.component, %error, %reason, "librdkafka error (repeated).");
            return;
        }
        *last = Some(reason.to_owned());
        // The count of the error this one replaces, so the log says how
        // often it came without a line each time.
        let previous_repeats = self.repeats.swap(0, std::sync::atomic::Ordering::Relaxed);
        if code == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::warn!(component = %self.component, %reason, previous_repeats, "A Kafka broker connection failed.");
        } else {
            tracing::error!(component = %self.component, %error, %reason, previous_repeats, "librdkafka error.");
        }
    }

    /// Takes a librdkafka log line. Connection failures (`FAIL`) also reach
    /// [`KafkaLink::error`], which logs them once; here they are debug.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let c = &self.component;
        match level {
            _ if fac == "FAIL" => {
                tracing::debug!(target: "librdkafka", component = %c, "{fac} {message}")
            }
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", component = %c, "{fac} {message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", component = %c, "{fac} {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", component = %c, "{fac} {message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", component = %c, "{fac} {message}");
            }
        }
    }
}

/// `reason` without librdkafka's changing tail (`(after 0ms in state
/// CONNECT, 1 identical error(s) suppressed)`), to tell a repeat.
fn gist(reason: &str) -> &str {
    reason.split(" (after ").next().unwrap_or(reason)
}

/// A client context that only reports its link: for producers and
/// consumers that need no other callbacks.
#[derive(Debug)]
pub struct LinkContext(pub KafkaLink);

impl ClientContext for LinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.0.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LinkContext {}
