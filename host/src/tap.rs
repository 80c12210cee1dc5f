//! Live taps: samples of the records a route sends out, for the console
//! (`GET /ui/tap`) and `sluice tap`, like `vector tap`.
//!
//! A tap is read-only and never slows its route. A route worker offers
//! each batch it dispatches; with no tap open that is one atomic load.
//! A tap takes at most `rate` records a second (a token bucket), turns
//! them into JSON lines, and hands them to its reader through a bounded
//! queue with `try_send`: when the reader is slow, the tap drops *tap
//! events* and counts them, never records.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Counter;
use crate::record::{FlatBatch, write_envelope};

/// Tap events queued for one reader before the tap drops them.
pub const TAP_QUEUE: usize = 256;
/// Records a second a tap samples by default.
pub const DEFAULT_RATE: u32 = 20;
/// The most records a second a tap may ask for.
pub const MAX_RATE: u32 = 1_000;

/// What a tap watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapFilter {
    /// `[routes.NAME]`.
    pub route: String,
    /// Only this output port (`default` for the default port); `None`: all.
    pub port: Option<String>,
    /// Only records with this key (a client id); `None`: all.
    pub key: Option<Vec<u8>>,
    /// Records a second at most (1 to [`MAX_RATE`]).
    pub rate: u32,
}

/// Every open tap of the process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Taps(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// How many taps are open: the fast path reads only this.
    open: AtomicUsize,
    next_id: AtomicU64,
    taps: Mutex<Vec<Arc<Tap>>>,
    /// `sluice_tap_events_dropped_total`, once the metrics registered it.
    dropped_total: OnceLock<Counter>,
}

#[derive(Debug)]
struct Tap {
    id: u64,
    filter: TapFilter,
    tx: mpsc::Sender<Bytes>,
    bucket: Mutex<Bucket>,
    /// Tap events dropped because the reader's queue was full.
    dropped: AtomicU64,
    /// Matching records not sampled (over `rate`).
    skipped: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// An open tap: its events, one JSON object each; closing it (dropping it)
/// removes the tap.
#[derive(Debug)]
pub struct TapStream {
    /// The events.
    pub rx: mpsc::Receiver<Bytes>,
    taps: Taps,
    id: u64,
}

impl Drop for TapStream {
    fn drop(&mut self) {
        let mut taps = self.taps.0.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.retain(|t| t.id != self.id);
        self.taps.0.open.store(taps.len(), Ordering::Release);
    }
}

impl Taps {
    /// Opens a tap.
    pub fn open(&self, mut filter: TapFilter) -> TapStream {
        filter.rate = filter.rate.clamp(1, MAX_RATE);
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let tap = Arc::new(Tap {
            id,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(filter.rate),
                at: Instant::now(),
            }),
            filter,
            tx,
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        });
        let mut taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.push(tap);
        self.0.open.store(taps.len(), Ordering::Release);
        TapStream {
            rx,
            taps: self.clone(),
            id,
        }
    }

    /// Counts dropped tap events (all taps) in `counter`; the first call
    /// wins.
    pub fn count_drops_in(&self, counter: impl FnOnce() -> Counter) {
        self.0.dropped_total.get_or_init(counter);
    }

    /// How many taps are open.
    pub fn open_count(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Offers the records route `route` is sending out: record `i` to the
    /// port `port_names[ports[i]]` (every record to the default port when
    /// `ports` is all zeros or empty).
    pub fn offer(&self, route: &str, records: &FlatBatch, ports: &[u32], port_names: &[String]) {
        if self.open_count() == 0 {
            return;
        }
        let taps: Vec<Arc<Tap>> = {
            let taps = self.0.taps.lock().unwrap_or_else(|p| p.into_inner());
            taps.iter()
                .filter(|t| t.filter.route == route)
                .cloned()
                .collect()
        };
        for tap in taps {
            let dropped = tap.offer(records, ports, port_names);
            if let (Some(total), true) = (self.0.dropped_total.get(), dropped > 0) {
                total.add(dropped);
            }
        }
    }
}

/// The name a port is shown by: `default` for the default port.
fn port_name<'a>(ports: &[u32], port_names: &'a [String], i: usize) -> &'a str {
    let name = ports
        .get(i)
        .and_then(|&p| port_names.get(p as usize))
        .map_or("", String::as_str);
    if sluice_format::is_default_port(name) {
        "default"
    } else {
        name
    }
}

impl Tap {
    /// Offers the records; gives how many tap events it dropped.
    fn offer(&self, records: &FlatBatch, ports: &[u32], port_names: &[String]) -> u64 {
        let mut tokens = self.take_tokens();
        if tokens == 0 && self.filter.port.is_none() && self.filter.key.is_none() {
            // Nothing to sample this time, and every record matches: count
            // them without looking at them.
            self.skipped
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            return 0;
        }
        let mut dropped = 0;
        for (i, record) in records.records().enumerate() {
            let port = port_name(ports, port_names, i);
            if self.filter.port.as_deref().is_some_and(|p| p != port)
                || self
                    .filter
                    .key
                    .as_deref()
                    .is_some_and(|k| record.key() != Some(k))
            {
                continue;
            }
            if tokens == 0 {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tokens -= 1;
            let event = self.event(&record, port);
            if self.tx.try_send(event).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                dropped += 1;
            }
        }
        self.give_back(tokens);
        dropped
    }

    /// The whole tokens the bucket has now, taken out.
    fn take_tokens(&self) -> u32 {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = f64::from(self.filter.rate);
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        let whole = b.tokens.floor();
        b.tokens -= whole;
        whole as u32
    }

    fn give_back(&self, tokens: u32) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.tokens = (b.tokens + f64::from(tokens)).min(f64::from(self.filter.rate));
    }

    /// One tap event: the record as the JSON envelope, with where it came
    /// from and went, and the tap's drop counts so far.
    fn event(&self, record: &sluice_format::Record<'_>, port: &str) -> Bytes {
        let mut envelope = Vec::with_capacity(256);
        write_envelope(record, &mut envelope);
        let origin = record.origin();
        let head = serde_json::json!({
            "route": self.filter.route,
            "port": port,
            "origin": {
                "source": origin.source,
                "topic": origin.topic,
                "partition": origin.partition,
                "offset": record.position().offset,
            },
            "dropped": self.dropped.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
        });
        let mut out = head.to_string().into_bytes();
        // `{"route":…}` + `,"record":{…}}`: the envelope is JSON already.
        out.pop();
        out.extend_from_slice(b",\"record\":");
        out.extend_from_slice(&envelope);
        out.push(b'}');
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Origin, Position};

    fn batch(keys: &[&str]) -> FlatBatch {
        let origin = Origin {
            source: "gen".into(),
            topic: "gen".into(),
            partition: 0,
            db: 0,
        };
        let mut b = FlatBatch::with_capacity(origin, keys.len(), 0);
        for (i, k) in keys.iter().enumerate() {
            let position = Position {
                offset: i as u64,
                sequence: 0,
            };
            b.push(position, Some(k.as_bytes()), Some(br#"{"n":1}"#), 7, []);
        }
        b
    }

    fn filter(port: Option<&str>, key: Option<&str>, rate: u32) -> TapFilter {
        TapFilter {
            route: "r".into(),
            port: port.map(str::to_owned),
            key: key.map(|k| k.as_bytes().to_vec()),
            rate,
        }
    }

    fn drain(s: &mut TapStream) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(e) = s.rx.try_recv() {
            out.push(serde_json::from_slice(&e).unwrap());
        }
        out
    }

    #[test]
    fn samples_matching_records_at_its_rate() {
        let taps = Taps::default();
        let mut s = taps.open(filter(None, Some("c1"), 3));
        let b = batch(&["c1", "c2", "c1", "c1", "c1", "c1"]);
        taps.offer("r", &b, &[], &[]);
        taps.offer("other", &b, &[], &[]);
        let events = drain(&mut s);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0]["record"]["key"], "c1");
        assert_eq!(events[0]["record"]["value"]["n"], 1);
        assert_eq!(events[0]["port"], "default");
        assert_eq!(events[1]["origin"]["offset"], 2);
        assert_eq!(events[2]["skipped"], 0);
        taps.offer("r", &b, &[], &[]);
        assert!(drain(&mut s).is_empty(), "no tokens left this second");
    }

    #[test]
    fn picks_a_port() {
        let taps = Taps::default();
        let mut s = taps.open(filter(Some("vip"), None, 100));
        let names = [String::new(), "vip".to_owned()];
        taps.offer("r", &batch(&["a", "b", "c"]), &[0, 1, 0], &names);
        let events = drain(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["record"]["key"], "b");
        assert_eq!(events[0]["port"], "vip");
    }

    #[test]
    fn a_full_queue_drops_tap_events_and_a_closed_tap_is_gone() {
        let taps = Taps::default();
        let mut s = taps.open(filter(None, None, MAX_RATE));
        let keys: Vec<String> = (0..TAP_QUEUE + 10).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        taps.offer("r", &batch(&keys), &[], &[]);
        let events = drain(&mut s);
        assert_eq!(events.len(), TAP_QUEUE);
        taps.offer("r", &batch(&["late"]), &[], &[]);
        let events = drain(&mut s);
        assert_eq!(events[0]["dropped"], 10, "{events:?}");
        assert_eq!(taps.open_count(), 1);
        drop(s);
        assert_eq!(taps.open_count(), 0);
    }
}
