//! SSE fan-out: N concurrent SSE clients on one `sluice` process (the
//! release binary), events posted over HTTP ingest at a fixed rate, each
//! for a random client. Prints delivery latency (ingest request sent →
//! event read by the client) p50/p99/max, and the process's memory per
//! connection (RSS growth while the clients connect, divided by N).
//!
//!     cargo bench -p sluice --bench sse_fanout
//!     SLUICE_BENCH_SSE_CLIENTS=2000 SLUICE_BENCH_SSE_RATE=5000 cargo bench -p sluice --bench sse_fanout
//!     SLUICE_BENCH_SSE_REDIS=1 SLUICE_BENCH_SSE_CLIENTS=2000 cargo bench -p sluice --bench sse_fanout
//!
//! With `SLUICE_BENCH_SSE_REDIS=1` the sink is backed by Redis (a
//! redis-server started here): each event is XADDed to its client's stream
//! and read back over the sink's shared readers (`readers`, default 4); the
//! bench prints redis-server's `connected_clients` with every client on.
//! With `SLUICE_BENCH_SSE_INSTANCES=3` (Redis only) that many `sluice`
//! processes share the one Redis: clients are spread over them, events are
//! posted to the first, and memory is the sum of their RSS growth.
//!
//!     SLUICE_BENCH_SSE_REDIS=1 SLUICE_BENCH_SSE_INSTANCES=3 SLUICE_BENCH_SSE_CLIENTS=18000 cargo bench -p sluice --bench sse_fanout
//!
//! Both ends run on this machine, so the clients compete with Sluice for
//! the same cores; file descriptors: 2 per client (`ulimit -n`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let clients = env_usize("SLUICE_BENCH_SSE_CLIENTS", 10_000);
    let rate = env_usize("SLUICE_BENCH_SSE_RATE", 2_000);
    let seconds = env_usize("SLUICE_BENCH_SSE_SECONDS", 10);
    let instances = env_usize("SLUICE_BENCH_SSE_INSTANCES", 1).max(1);
    let dir = tempfile::tempdir().unwrap();
    let redis_mode = std::env::var_os("SLUICE_BENCH_SSE_REDIS").is_some();
    assert!(
        redis_mode || instances == 1,
        "instances share their clients' events through Redis: set SLUICE_BENCH_SSE_REDIS=1"
    );
    let mut _redis = None;
    let mut redis_url = None;
    let mut backing = String::new();
    if redis_mode {
        let redis_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        _redis = Some(Child(
            Command::new("redis-server")
                .args([
                    "--port",
                    &redis_port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--maxclients", "20000"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server"),
        ));
        std::thread::sleep(Duration::from_millis(300));
        redis_url = Some(format!("redis://127.0.0.1:{redis_port}"));
        backing =
            format!("[sinks.live.redis]\nurl = \"redis://127.0.0.1:{redis_port}\"\nmaxlen = 100\n");
    }
    let mut sluices = Vec::new();
    let mut addrs = Vec::new();
    for n in 0..instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join(format!("fanout-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
[sources.in]
type = "http"
[sinks.live]
type = "sse"
heartbeat = "60s"
queue = 64
{backing}
[routes.r]
from = "in"
to = ["live"]
"#
            ),
        )
        .unwrap();
        sluices.push(Child(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("run")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(match std::env::var_os("SLUICE_BENCH_LOG") {
                    Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                    None => Stdio::null(),
                })
                .spawn()
                .unwrap(),
        ));
        addrs.push(format!("127.0.0.1:{port}"));
    }
    let pids: Vec<u32> = sluices.iter().map(|c| c.0.id()).collect();
    let rss = || pids.iter().map(|pid| rss_kib(*pid)).sum::<u64>();
    for addr in &addrs {
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss();

    let base = Instant::now();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::with_capacity(
        rate * seconds,
    )));
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let addr = addrs[i % instances].clone();
        let latencies = Arc::clone(&latencies);
        let connected = Arc::clone(&connected);
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream
                .write_all(
                    format!("GET /sse/live?client_id=c{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
                )
                .await
                .unwrap();
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(": connected") {
                    connected.fetch_add(1, Ordering::Relaxed);
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let now = base.elapsed().as_micros() as u64;
                    // Chunked encoding may put a size line before; the data
                    // line itself is `{"t":<micros>}`.
                    if let Some(t) = data
                        .strip_prefix("{\"t\":")
                        .and_then(|r| r.strip_suffix('}'))
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        latencies.lock().unwrap().push(now.saturating_sub(t));
                    }
                }
            }
        }));
        if i % 256 == 255 {
            // Let the accept loop keep up.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let connect_started = Instant::now();
    while connected.load(Ordering::Relaxed) < clients as u64 {
        assert!(
            connect_started.elapsed() < Duration::from_secs(120),
            "only {} connected",
            connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss();
    let redis_clients = redis_url.as_ref().map(|url| {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_default()
    });

    // Load: one ingest request every 10 ms, `rate / 100` events each, on a
    // keep-alive connection.
    let addr = &addrs[0];
    let pid = pids[0];
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("ingest connection: {e:?}");
        }
    });
    let per_tick = (rate / 100).max(1);
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0usize;
    let load_started = Instant::now();
    while load_started.elapsed() < Duration::from_secs(seconds as u64) {
        tick.tick().await;
        let mut body = String::with_capacity(per_tick * 48);
        let t = base.elapsed().as_micros() as u64;
        for _ in 0..per_tick {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let client = seed % clients as u64;
            body.push_str(&format!(
                "{{\"key\":\"c{client}\",\"value\":{{\"t\":{t}}}}}\n"
            ));
        }
        let req = hyper::Request::post("/ingest/in")
            .header("host", "x")
            .header("content-type", "application/x-ndjson")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        // Until the connection task has finished the previous exchange, a
        // request sent now is refused ("connection was not ready").
        sender.ready().await.unwrap();
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => panic!(
                "ingest after {sent} events, {:?} into the load: {e} (sluice {})",
                load_started.elapsed(),
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("State"))
                    .unwrap_or("gone")
                    .to_owned()
            ),
        };
        assert_eq!(resp.status(), 200);
        // Read to its end: an HTTP/1 client that drops an unread body
        // closes the connection, which then cannot take the next request.
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        sent += per_tick;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    for t in &tasks {
        t.abort();
    }
    lat.sort_unstable();
    let mode = if redis_mode {
        "backed by Redis"
    } else {
        "in memory"
    };
    println!(
        "SSE fan-out ({mode}): {clients} clients connected to {instances} sluice process(es), {rate} events/s for {seconds}s (each for a random client)"
    );
    println!(
        "delivered {} of {sent} events (the rest still in flight when sampled)",
        lat.len()
    );
    println!(
        "latency ingest → client: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "sluice RSS (all instances): {} MiB idle, {} MiB with {clients} connections: {:.1} KiB per connection",
        rss_before / 1024,
        rss_after / 1024,
        (rss_after.saturating_sub(rss_before)) as f64 / clients as f64
    );
    if let Some(n) = redis_clients {
        println!(
            "redis-server connected_clients with {clients} SSE connections open: {n} (this bench's own included)"
        );
    }
    drop(sluices);
}
