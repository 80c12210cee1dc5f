//! `type = "http"`: records posted to `POST /ingest/{source}`.
//!
//! Two body forms:
//! - any content type: the body is one record's value. The key comes from
//!   `?key=` or the `sluice-key` request header, record headers from
//!   `sluice-header-NAME` request headers, the timestamp (ms) from
//!   `sluice-timestamp`;
//! - `content-type: application/x-ndjson`: one record per line, each
//!   `{"key": "k", "value": <JSON or string>, "headers": {"h": "v"}, "timestamp": 1}`
//!   where everything but `value` is optional. A string value is taken as
//!   its text; any other JSON value as its compact JSON.
//!
//! The response waits until every sink has the records (200), so a client
//! that retries on failure gets at-least-once delivery end to end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use hyper::HeaderMap;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{BuiltSource, Source, SourceKind, SourceOutput};
use crate::config::ByteSize;
use crate::kinds::BuildContext;
use crate::metrics::{Counter, Metrics};
use crate::pipeline::BatchAck;
use crate::record::{FlatBatch, Origin, Position, now_millis};
use crate::shutdown::Shutdown;

/// `[sources.NAME]` with `type = "http"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The largest request body accepted (`"4MiB"`).
    #[serde(default = "crate::config::defaults::http_max_body")]
    pub max_body: ByteSize,
    /// The most NDJSON records one request may carry (`10000`); more is
    /// refused whole (413) before any is parsed.
    #[serde(default = "crate::config::defaults::http_max_records")]
    pub max_records: usize,
    /// Bearer tokens a request must present (`Authorization: Bearer
    /// <token>`), usually `["${SLUICE_INGEST_TOKEN}"]`. With neither this
    /// nor `token_file`, no token is asked for.
    #[serde(default)]
    pub tokens: Vec<crate::config::Secret>,
    /// A file of accepted tokens, one a line (`#` comments and blank lines
    /// skipped), read at start and on every config reload. Relative to the
    /// config file.
    pub token_file: Option<std::path::PathBuf>,
}

impl SourceKind for HttpConfig {
    fn type_name() -> &'static str {
        "http"
    }

    fn problems(&self, at: &str) -> Vec<String> {
        crate::auth::token_problems(&format!("{at}.tokens"), &self.tokens)
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(file) = &mut self.token_file {
            *file = crate::config::resolve(base, file);
        }
    }

    fn check(&self, name: &str, _cx: &BuildContext<'_>) -> anyhow::Result<()> {
        crate::auth::Tokens::load(&self.tokens, self.token_file.as_deref())
            .map(drop)
            .map_err(|e| e.context(format!("sources.{name}.token_file")))
    }

    fn announce(&self, name: &str, addr: std::net::SocketAddr) {
        tracing::info!(
            source = %name,
            "Post records: curl -H 'sluice-key: client-1' -d '{{\"hello\":1}}' http://{addr}/ingest/{name}"
        );
    }

    fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltSource> {
        let tokens = crate::auth::Tokens::load(&self.tokens, self.token_file.as_deref())
            .map_err(|e| e.context(format!("sources.{name}.token_file")))?;
        let handle = IngestHandle::new(name, self, tokens, cx.metrics);
        Ok(BuiltSource {
            source: Box::new(HttpSource::new(Arc::clone(&handle))),
            ingest: Some(handle),
        })
    }
}

/// Why an ingest request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over `max_body`.
    #[error("body is larger than max_body ({0} bytes)")]
    TooLarge(u64),
    /// The body has more NDJSON lines than `max_records`.
    #[error("more than max_records ({0}) records in one request; send them in several")]
    TooMany(usize),
    /// The source is not open: starting (waiting for a table it joins
    /// with to load), restarting for a config reload, or shutting down.
    #[error(
        "source `{0}` is not accepting records now (starting, waiting for a table to load, or stopping); retry"
    )]
    Unavailable(String),
    /// A route or sink failed to deliver the records.
    #[error("delivery failed: {0}")]
    Failed(String),
}

/// One record as posted.
#[derive(Debug, Clone, Default)]
pub struct IngestRecord {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

/// The server's way into an `http` source.
pub struct IngestHandle {
    name: String,
    output: RwLock<Option<SourceOutput>>,
    next: AtomicU64,
    /// `max_body`.
    pub max_body: u64,
    /// `max_records`.
    pub max_records: usize,
    /// The accepted bearer tokens; `None`: no token is asked for.
    pub tokens: Option<crate::auth::Tokens>,
    records: Counter,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl IngestHandle {
    pub(crate) fn new(
        name: &str,
        config: &HttpConfig,
        tokens: Option<crate::auth::Tokens>,
        metrics: &Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            output: RwLock::new(None),
            next: AtomicU64::new(0),
            max_body: config.max_body.0,
            max_records: config.max_records,
            tokens,
            records: metrics.counter("sluice_source_records_total", &[("source", name)]),
        })
    }

    /// Sends `records` through the routes and waits until every sink has
    /// them. Returns how many were accepted.
    pub async fn ingest(&self, records: Vec<IngestRecord>) -> Result<usize, IngestError> {
        let output = self
            .output
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| IngestError::Unavailable(self.name.clone()))?;
        let n = records.len();
        let first = self.next.fetch_add(n as u64, Ordering::Relaxed);
        let mut batch = FlatBatch::new(Origin {
            source: self.name.clone(),
            topic: self.name.clone(),
            partition: 0,
            db: 0,
        });
        let now = now_millis();
        for (i, r) in records.iter().enumerate() {
            batch.push(
                Position {
                    offset: first + i as u64,
                    sequence: 0,
                },
                r.key.as_deref(),
                Some(&r.value),
                r.timestamp.unwrap_or(now),
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            );
        }
        self.records.add(n as u64);
        let (tx, rx) = oneshot::channel();
        let (_ack, hold) = BatchAck::new(move |result| {
            let _ = tx.send(result);
        });
        output.send(batch, hold).await;
        match rx.await {
            Ok(Ok(())) => Ok(n),
            Ok(Err(e)) => Err(IngestError::Failed(e)),
            Err(_) => Err(IngestError::Failed("acknowledgement lost".into())),
        }
    }

    pub(crate) fn open(&self, output: SourceOutput) {
        *self.output.write().unwrap_or_else(|p| p.into_inner()) = Some(output);
    }

    /// Whether the source takes records now (see [`IngestError::Unavailable`]).
    pub fn is_open(&self) -> bool {
        self.output
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn close(&self) {
        *self.output.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Parses a request into records (see the module docs for the forms).
pub fn parse_request(
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
    max_records: usize,
) -> Result<Vec<IngestRecord>, IngestError> {
    let ndjson = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-ndjson"));
    if ndjson {
        let lines = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .count();
        if lines > max_records {
            return Err(IngestError::TooMany(max_records));
        }
        return parse_ndjson(&body);
    }
    let mut record = IngestRecord {
        value: body.to_vec(),
        ..IngestRecord::default()
    };
    for (name, value) in headers {
        let name = name.as_str();
        if name == "sluice-key" {
            record.key = Some(value.as_bytes().to_vec());
        } else if name == "sluice-timestamp" {
            let ts = value.to_str().ok().and_then(|v| v.parse().ok());
            record.timestamp = Some(ts.ok_or_else(|| {
                IngestError::BadRequest(
                    "sluice-timestamp must be milliseconds since the epoch".into(),
                )
            })?);
        } else if let Some(h) = name.strip_prefix("sluice-header-") {
            record
                .headers
                .push((h.to_owned(), value.as_bytes().to_vec()));
        }
    }
    for (k, v) in query.map(parse_query).unwrap_or_default() {
        if k == "key" {
            record.key = Some(v.into_bytes());
        }
    }
    Ok(vec![record])
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<IngestRecord>, IngestError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        key: Option<String>,
        value: Box<serde_json::value::RawValue>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        timestamp: Option<i64>,
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_slice(line)
            .map_err(|e| IngestError::BadRequest(format!("line {}: {e}", i + 1)))?;
        let raw = l.value.get();
        let value = if raw.starts_with('"') {
            serde_json::from_str::<String>(raw)
                .map_err(|e| IngestError::BadRequest(format!("line {}: {e}", i + 1)))?
                .into_bytes()
        } else {
            raw.as_bytes().to_vec()
        };
        out.push(IngestRecord {
            key: l.key.map(String::into_bytes),
            value,
            headers: l
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect(),
            timestamp: l.timestamp,
        });
    }
    if out.is_empty() {
        return Err(IngestError::BadRequest("no records in the body".into()));
    }
    Ok(out)
}

/// `a=1&b=x%20y` → pairs, percent-decoded.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) struct HttpSource {
    handle: Arc<IngestHandle>,
}

impl HttpSource {
    pub(crate) fn new(handle: Arc<IngestHandle>) -> Self {
        Self { handle }
    }
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, out: SourceOutput, mut shutdown: Shutdown) -> anyhow::Result<()> {
        // Requests feed the routes through the handle, from when the
        // source runs (so after the tables its routes join with have
        // loaded) until shutdown, when the door closes so routes can drain.
        self.handle.open(out);
        shutdown.recv().await;
        self.handle.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_body_with_key_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("sluice-header-trace", "abc".parse().unwrap());
        h.insert("sluice-timestamp", "77".parse().unwrap());
        let r = parse_request(Some("key=c%201"), &h, Bytes::from_static(b"hello"), 10).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].key.as_deref(), Some(&b"c 1"[..]));
        assert_eq!(r[0].value, b"hello");
        assert_eq!(r[0].headers, vec![("trace".to_owned(), b"abc".to_vec())]);
        assert_eq!(r[0].timestamp, Some(77));
    }

    #[test]
    fn ndjson_lines() {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::CONTENT_TYPE,
            "application/x-ndjson".parse().unwrap(),
        );
        let body = "{\"key\":\"k\",\"value\":{\"a\":1},\"headers\":{\"H\":\"v\"}}\n\n{\"value\":\"text\"}\n";
        let r = parse_request(None, &h, Bytes::from(body), 10).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].value, br#"{"a":1}"#);
        assert_eq!(r[0].headers, vec![("H".to_owned(), b"v".to_vec())]);
        assert_eq!(r[1].value, b"text");
        assert_eq!(r[1].key, None);
        let bad = parse_request(None, &h, Bytes::from("{\"value\":1}\n{nope"), 10);
        assert!(matches!(bad, Err(IngestError::BadRequest(m)) if m.starts_with("line 2")));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            parse_query("a=%41%zz+b&c"),
            vec![("a".into(), "A%zz b".into()), ("c".into(), String::new())]
        );
    }
}
