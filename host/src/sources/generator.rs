//! `type = "generator"`: synthetic JSON events keyed by client id, like a
//! notification feed. For the quickstart, demos and benchmarks.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuiltSource, Source, SourceKind, SourceOutput};
use crate::kinds::BuildContext;
use crate::metrics::{Counter, Metrics};
use crate::pipeline::BatchAck;
use crate::record::{FlatBatch, Origin, Position, now_millis};
use crate::shutdown::Shutdown;

/// `[sources.NAME]` with `type = "generator"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Records per second. 0 means as fast as the route accepts them.
    #[serde(default = "crate::config::defaults::generator_rate")]
    pub rate: f64,
    /// How many client ids to use: `client-0` … `client-{clients-1}`.
    #[serde(default = "crate::config::defaults::generator_clients")]
    pub clients: usize,
    /// Stop after this many records. Unset: run until shutdown.
    pub count: Option<u64>,
    /// The most records in one batch.
    #[serde(default = "crate::config::defaults::generator_batch_size")]
    pub batch_size: usize,
}

impl SourceKind for GeneratorConfig {
    fn type_name() -> &'static str {
        "generator"
    }

    fn announce(&self, name: &str, _addr: std::net::SocketAddr) {
        tracing::info!(
            source = %name,
            "Generator emits events for client ids client-0 … client-{}.",
            self.clients.max(1) - 1
        );
    }

    fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltSource> {
        Ok(BuiltSource::plain(GeneratorSource::new(
            name,
            self.clone(),
            cx.metrics,
        )))
    }
}

const EVENTS: &[&str] = &[
    "login",
    "order_placed",
    "order_shipped",
    "payment_failed",
    "logout",
];
const REGIONS: &[&str] = &["eu", "us", "apac"];

/// The client id of generated record `seq`.
pub fn client_id(seq: u64, clients: usize) -> String {
    format!("client-{}", seq % clients.max(1) as u64)
}

/// Appends generated record `seq` (about 110 bytes of JSON) to `batch`.
pub fn push_event(
    batch: &mut FlatBatch,
    seq: u64,
    clients: usize,
    now: i64,
    scratch: &mut Vec<u8>,
) {
    use std::io::Write;
    let client = client_id(seq, clients);
    // splitmix64: cheap, deterministic variety.
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let event = EVENTS[(z % EVENTS.len() as u64) as usize];
    let region = REGIONS[((z >> 8) % REGIONS.len() as u64) as usize];
    let cents = (z >> 16) % 100_000;
    scratch.clear();
    let _ = write!(
        scratch,
        r#"{{"client_id":"{client}","seq":{seq},"event":"{event}","region":"{region}","amount":{}.{:02},"ts":{now}}}"#,
        cents / 100,
        cents % 100
    );
    batch.push(
        Position {
            offset: seq,
            sequence: 0,
        },
        Some(client.as_bytes()),
        Some(scratch),
        now,
        [],
    );
}

pub(crate) struct GeneratorSource {
    name: String,
    config: GeneratorConfig,
    records: Counter,
    failures: Counter,
}

impl GeneratorSource {
    pub(crate) fn new(name: &str, config: GeneratorConfig, metrics: &Metrics) -> Self {
        Self {
            name: name.to_owned(),
            config,
            records: metrics.counter("sluice_source_records_total", &[("source", name)]),
            failures: metrics.counter("sluice_source_ack_failures_total", &[("source", name)]),
        }
    }
}

#[async_trait]
impl Source for GeneratorSource {
    async fn run(self: Box<Self>, out: SourceOutput, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let c = &self.config;
        let start = tokio::time::Instant::now();
        let mut seq = 0u64;
        let mut scratch = Vec::with_capacity(160);
        let limit = c.count.unwrap_or(u64::MAX);
        while seq < limit && !shutdown.is_triggered() {
            let due = if c.rate > 0.0 {
                let elapsed = start.elapsed().as_secs_f64();
                ((elapsed * c.rate) as u64).min(limit).saturating_sub(seq)
            } else {
                limit - seq
            };
            if due == 0 {
                let wait = Duration::from_secs_f64((1.0 / c.rate).min(0.05));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.recv() => break,
                }
                continue;
            }
            let n = due.min(c.batch_size.max(1) as u64);
            let mut batch = FlatBatch::with_capacity(
                Origin {
                    source: self.name.clone(),
                    topic: self.name.clone(),
                    partition: 0,
                    db: 0,
                },
                n as usize,
                120,
            );
            let now = now_millis();
            for _ in 0..n {
                push_event(&mut batch, seq, c.clients, now, &mut scratch);
                seq += 1;
            }
            self.records.add(n);
            let failures = self.failures.clone();
            let source = self.name.clone();
            let (_ack, hold) = BatchAck::new(move |result| {
                if let Err(e) = result {
                    failures.add(1);
                    tracing::warn!(source = %source, error = %e, "Generated batch was not delivered.");
                }
            });
            tokio::select! {
                _ = out.send(batch, hold) => {}
                _ = shutdown.recv() => break,
            }
        }
        tracing::info!(source = %self.name, records = seq, "Generator finished.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_keyed_by_client() {
        let mut b = FlatBatch::default();
        let mut scratch = Vec::new();
        for seq in 0..4 {
            push_event(&mut b, seq, 3, 1_700_000_000_000, &mut scratch);
        }
        let r: Vec<_> = b.records().collect();
        assert_eq!(r[3].key_str(), Some("client-0"));
        let v: serde_json::Value = r[1].json().unwrap();
        assert_eq!(v["client_id"], "client-1");
        assert_eq!(v["seq"], 1);
        assert!(
            (90..140).contains(&r[1].value().len()),
            "{}",
            r[1].value().len()
        );
    }
}
