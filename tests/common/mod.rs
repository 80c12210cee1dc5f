//! Shared test harness: plugins built from source, Sluice started on a free
//! port, and a real HTTP client (hyper, over a TCP socket) for ingest and SSE.

#![allow(dead_code, clippy::unwrap_used)]

pub mod kafka;
pub mod redis;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sluice::config::Config;
use sluice::runtime::{self, Running};
use tokio::net::{TcpListener, TcpStream};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The component file of plugin crate `package`: `client-filter` is
/// `plugins/client-filter`, `fixture-trap` is `plugins/fixtures/trap`.
///
/// Built from source with the function `crate =` plugins use
/// ([`sluice::reload::build_crate`]), once per test binary and crate, so a
/// test never reads another test's (or an older build's) output: cargo
/// rebuilds whatever changed.
pub fn plugin(package: &str) -> String {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(file) = built.get(package) {
        return file.display().to_string();
    }
    let file = build(package, &[]);
    built.insert(package.to_owned(), file.clone());
    file.display().to_string()
}

/// Builds plugin crate `package` with `env` set, as `crate =` plugins are
/// built, and returns its component file.
fn build(package: &str, env: &[(&str, &str)]) -> PathBuf {
    let dir = match package.strip_prefix("fixture-") {
        Some(fixture) => workspace().join("plugins").join("fixtures").join(fixture),
        None => workspace().join("plugins").join(package),
    };
    // Its own thread and runtime, so this works from sync and async tests.
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(sluice::reload::build_crate_with(&dir, env))
        })
        .join()
        .expect("the build thread")
    })
    .unwrap_or_else(|e| panic!("building {package}: {e}"))
}

/// Parses `text` as a config whose relative paths resolve against `base`.
pub fn config(text: &str, base: &Path) -> Config {
    Config::parse(text, base, |_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Starts Sluice from `text` on a free loopback port.
pub async fn start(text: &str, base: &Path) -> Running {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    runtime::start_with_listener(config(text, base), listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Sends one request over a fresh connection.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

/// A request builder aimed at `addr`.
pub fn builder(addr: SocketAddr, method: &str, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
}

/// Sends a request and reads the whole response body as text.
pub async fn call(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let resp = request(addr, req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GET `path`.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    call(
        addr,
        builder(addr, "GET", path).body(Full::default()).unwrap(),
    )
    .await
}

/// Waits until `GET /ready` answers 200: every table has loaded and every
/// `http` source is open. Panics with the last answer otherwise.
pub async fn wait_ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(addr, "/ready").await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts newline-delimited JSON records to `/ingest/{source}`.
pub async fn post_ndjson(
    addr: SocketAddr,
    source: &str,
    lines: &[serde_json::Value],
) -> (StatusCode, String) {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let req = builder(addr, "POST", &format!("/ingest/{source}"))
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    call(addr, req).await
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    /// The `event:` name; `None` for the default (`message`).
    pub event: Option<String>,
    pub data: String,
}

/// A client reading `GET /sse/...` from a socket.
pub struct SseClient {
    body: Incoming,
    buf: String,
    /// Comments seen (heartbeats and the like), in order.
    pub comments: Vec<String>,
    pub ended: bool,
}

impl SseClient {
    /// Connects to `/sse/{sink}?client_id={client}` and waits for the
    /// opening comment, so the subscription is registered on return.
    pub async fn connect(addr: SocketAddr, sink: &str, client: &str) -> Self {
        Self::resume(addr, sink, client, None).await
    }

    /// Connects like [`SseClient::connect`], sending `Last-Event-ID` when
    /// `last` is set.
    pub async fn resume(addr: SocketAddr, sink: &str, client: &str, last: Option<&str>) -> Self {
        let headers: Vec<(&str, &str)> = last.map(|id| ("last-event-id", id)).into_iter().collect();
        Self::open(addr, &format!("/sse/{sink}?client_id={client}"), &headers).await
    }

    /// Opens `path` (with its query) sending `headers`, and waits for the
    /// opening comment.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut req = builder(addr, "GET", path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::default()).unwrap();
        let resp = request(addr, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut client = Self {
            body: resp.into_body(),
            buf: String::new(),
            comments: Vec::new(),
            ended: false,
        };
        assert!(
            client
                .next_event_or_comment(Duration::from_secs(5))
                .await
                .is_none()
        );
        assert_eq!(
            client.comments.first().map(String::as_str),
            Some("connected")
        );
        client
    }

    /// The next event, waiting at most `timeout`. `None` on timeout or end.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Some(e) = self.next_event_or_comment(left).await {
                return Some(e);
            }
            if self.ended {
                return None;
            }
        }
    }

    /// `n` events, failing the test if they do not arrive within `timeout`.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(timeout).await {
                Some(e) => out.push(e),
                None => {
                    let seen: Vec<String> = out
                        .iter()
                        .map(|e| e.data.chars().take(60).collect())
                        .collect();
                    panic!("got {} of {n} events: {seen:?}", out.len())
                }
            }
        }
        out
    }

    /// Reads until one event or comment block is complete. Returns the event,
    /// or `None` after a comment-only block, a timeout or the end.
    async fn next_event_or_comment(&mut self, timeout: Duration) -> Option<Event> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = Event {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        self.comments.push(c.trim().to_owned());
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = Some(name.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(d);
                        has_data = true;
                    }
                }
                return has_data.then_some(event);
            }
            match tokio::time::timeout(timeout, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                Ok(_) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
}

/// Parses an envelope-format event's data.
pub fn envelope(e: &Event) -> serde_json::Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("bad envelope {:?}: {err}", e.data))
}

/// Reads a JSON-lines file written by a `file` sink.
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `f` is true, checking every 20 ms, for at most `timeout`.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Like [`eventually`], for a check that is itself async (and may act,
/// say produce more records): tries every 20 ms for at most `timeout`.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A child process that is killed if the test fails before waiting for it,
/// so no stray `sluice` outlives a failed test.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Header map of an envelope.
pub fn headers(v: &serde_json::Value) -> BTreeMap<String, String> {
    v["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Two builds of the `stamp` fixture, stamping `a` and `b`, for hot-reload
/// tests. Built once per test binary.
pub fn stamped_plugins() -> (PathBuf, PathBuf) {
    stamped_builds("fixture-stamp")
}

/// Two builds of fixture crate `package`, compiled with `SLUICE_STAMP` set
/// to `a` and to `b`. Built once per test binary and package.
pub fn stamped_builds(package: &str) -> (PathBuf, PathBuf) {
    static FILES: Mutex<BTreeMap<String, (PathBuf, PathBuf)>> = Mutex::new(BTreeMap::new());
    let mut files = FILES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(built) = files.get(package) {
        return built.clone();
    }
    let out = workspace()
        .join("target")
        .join("sluice-plugins")
        .join("stamps");
    std::fs::create_dir_all(&out).unwrap();
    let stamped = |stamp: &str| {
        let built = build(package, &[("SLUICE_STAMP", stamp)]);
        let file = out.join(format!("{package}-{stamp}.wasm"));
        std::fs::copy(built, &file).unwrap();
        file
    };
    let built = (stamped("a"), stamped("b"));
    files.insert(package.to_owned(), built.clone());
    built
}

/// Replaces `to` with a copy of `from` the way deploy tools do: write a
/// temporary file beside it, then rename it over.
pub fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A FIFO whose reader opens it at once (opening for writing blocks until
/// then) but reads nothing until [`HeldFifo::release`]: a `file` sink
/// writing to it stalls once the pipe's 64 KiB buffer is full.
pub struct HeldFifo {
    pub path: PathBuf,
    go: std::sync::mpsc::Sender<()>,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

impl HeldFifo {
    pub fn new(dir: &Path) -> Self {
        let path = dir.join("slow.fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut f = std::fs::File::open(reader_path).unwrap();
            let _ = go_rx.recv();
            let mut all = Vec::new();
            f.read_to_end(&mut all).unwrap();
            all
        });
        Self { path, go, reader }
    }

    /// Lets the reader read.
    pub fn release(&self) {
        let _ = self.go.send(());
    }

    /// Everything written, once the writer has closed the FIFO.
    pub fn written(self) -> Vec<u8> {
        self.release();
        self.reader.join().unwrap()
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a finished command succeeded, and its stdout then stderr.
pub fn outcome(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `sluice check` on a config file holding `text`: whether it passed,
/// and what it wrote to stderr.
pub fn sluice_check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
