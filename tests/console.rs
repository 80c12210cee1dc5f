//! The console (`/ui`) in a real headless browser (Debian's `chromium`,
//! installed by scripts/test.sh), the tap's bounds, its access control,
//! and `sluice tap`.
//!
//! The page is loaded with `?snapshot=N`: it closes its streams after N
//! status events, so `--virtual-time-budget` (which waits while a request
//! is open) can end and chromium dumps the DOM or takes the screenshot.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use sluice::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

/// The quickstart, with its `slim` stage replaced by the `stamp` fixture
/// loaded from `plugin` (a file the test can replace, to hot-reload it).
fn quickstart_with(plugin: &Path) -> Config {
    let path = workspace().join("examples").join("quickstart.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[plugins.slim]").unwrap();
    let end = text.find("[sinks.notifications]").unwrap();
    let text = format!(
        "{}[plugins.slim]\npath = \"{}\"\n\n{}",
        &text[..start],
        plugin.display(),
        &text[end..]
    );
    // SLUICE_LISTEN is not set in tests: listen where the test says.
    Config::parse(&text, &workspace().join("examples"), |_| None).unwrap()
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        }
    }
    panic!("no chromium on PATH: install Debian's `chromium` (scripts/test.sh does)");
}

/// Runs headless chromium on `url` with `args` (`--dump-dom`,
/// `--screenshot=…`) and gives its stdout.
async fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=30000",
        "--window-size=1280,1100",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish in 90 s")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The serving version of `plugin`, from `/plugins`.
async fn version(addr: SocketAddr, plugin: &str) -> String {
    let (_, body) = get(addr, "/plugins").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == plugin)
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The `data-rate` of the node `data-node="NAME"` in `dom`.
fn rate_of(dom: &str, node: &str) -> f64 {
    let at = dom
        .find(&format!("data-node=\"{node}\""))
        .unwrap_or_else(|| panic!("no rate for {node} in the page"));
    // `data-rate` comes first in the element, as the script sets it.
    let before = &dom[..at];
    let start = before.rfind("data-rate=\"").unwrap() + "data-rate=\"".len();
    let rest = &dom[start..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_quickstart_live_in_a_browser() {
    let (a, b) = stamped_plugins();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("slim.wasm");
    std::fs::copy(&a, &plugin).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(quickstart_with(&plugin), listener)
        .await
        .unwrap();
    let addr = running.addr;
    assert!(
        eventually_async(WAIT, || async {
            running
                .metrics
                .value("sluice_sink_records_total", &[("sink", "notifications")])
                .unwrap_or(0)
                > 0
        })
        .await,
        "records reach the SSE sink"
    );
    let url = format!("http://{addr}/ui?snapshot=4&tap=notify&key=client-1&rate=50");
    let dom = browse(&url, &["--dump-dom"]).await;

    // The route graph: sources, plugins and sinks of both routes.
    for part in [
        "data-route=\"produce\"",
        "data-route=\"notify\"",
        "data-source=\"generator\"",
        "data-source=\"events\"",
        "data-plugin=\"only-some-clients\"",
        "data-plugin=\"slim\"",
        "data-sink=\"events-topic\"",
        "data-sink=\"notifications\"",
    ] {
        assert!(dom.contains(part), "{part} missing from the page:\n{dom}");
    }
    // Records/s rose above 0 along the notify route.
    for node in [
        "route_in:notify",
        "stage_out:notify/0",
        "sink:notifications",
        "sink:events-topic",
    ] {
        assert!(
            rate_of(&dom, node) > 0.0,
            "{node} shows no records/s:\n{dom}"
        );
    }
    // The plugins table shows the serving version.
    let v1 = version(addr, "slim").await;
    assert!(
        dom.contains(&format!("title=\"{v1}\"")),
        "version {v1} not shown"
    );
    // The tap shows client-1's records, and only theirs.
    assert!(
        dom.contains("class=\"rec\" data-key=\"client-1\""),
        "no tapped record:\n{dom}"
    );
    for other in ["client-0", "client-2", "client-3", "client-4"] {
        assert!(
            !dom.contains(&format!("data-key=\"{other}\"")),
            "tap shows {other}"
        );
    }
    assert!(
        dom.contains("stamp=a"),
        "the tapped record's headers are shown"
    );

    // The SSE sink's own stream, as client-1 sees it.
    let sse = format!("http://{addr}/ui?snapshot=4&tap=sse:notifications&key=client-1");
    let dom_sse = browse(&sse, &["--dump-dom"]).await;
    assert!(
        dom_sse.contains("data-key=\"client-1\" data-sse-id=\""),
        "no SSE event shown:\n{dom_sse}"
    );
    assert!(
        dom_sse.contains("\"client_id\": \"client-1\""),
        "the event's data is shown"
    );

    // A hot reload: the page shows the new version.
    replace_file(&b, &plugin);
    assert!(
        eventually_async(WAIT, || async { version(addr, "slim").await != v1 }).await,
        "the plugin was not reloaded"
    );
    let v2 = version(addr, "slim").await;
    let dom = browse(&url, &["--dump-dom"]).await;
    assert!(
        dom.contains(&format!("title=\"{v2}\"")),
        "new version {v2} not shown"
    );
    assert!(
        !dom.contains(&format!("title=\"{v1}\"")),
        "old version still shown"
    );

    // The screenshot, kept as an artifact (the README's is a copy).
    let shots = workspace().join("target").join("console");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("console.png");
    let _ = std::fs::remove_file(&shot);
    browse(&url, &[&format!("--screenshot={}", shot.display())]).await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    running.shutdown().await.unwrap();
}

/// An http source straight to a file sink, and `admin` tokens if any.
fn ingest_route(out: &Path, admin: Option<&str>) -> String {
    let admin = admin.map_or(String::new(), |t| format!("admin_tokens = [\"{t}\"]"));
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        {admin}
        [sources.web]
        type = "http"
        [sinks.out]
        type = "file"
        path = "{out}"
        [routes.r]
        from = "web"
        to = ["out"]
        "#,
        out = out.display()
    )
}

/// A tap whose client never reads: the route delivers everything, and the
/// tap drops tap events (counted), never records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_that_never_reads_does_not_hold_back_its_route() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let running = start(&ingest_route(&out, None), dir.path()).await;
    let mut stalled = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    stalled
        .write_all(b"GET /ui/tap?route=r&rate=1000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(eventually(WAIT, || running.metrics.taps().open_count() == 1).await);
    // 20,000 records of 1 KiB: far more than the tap's queue and the
    // socket's buffers hold.
    let pad = "x".repeat(1000);
    let total = 20_000;
    for batch in 0..40 {
        let records: Vec<serde_json::Value> = (0..500)
            .map(|i| serde_json::json!({"key": format!("k{i}"), "value": {"n": batch * 500 + i, "pad": pad}}))
            .collect();
        let (status, text) = post_ndjson(running.addr, "web", &records).await;
        assert_eq!(status, 200, "{text}");
    }
    assert!(
        eventually(WAIT, || read_lines(&out).len() == total).await,
        "every record reached the sink"
    );
    let dropped = running
        .metrics
        .value("sluice_tap_events_dropped_total", &[])
        .unwrap_or(0);
    assert!(dropped > 0, "the stalled tap dropped no tap events");
    drop(stalled);
    assert!(eventually(WAIT, || running.metrics.taps().open_count() == 0).await);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_the_admin_token_when_admin_tokens_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(
        &ingest_route(&dir.path().join("out.ndjson"), Some("s3cret-admin")),
        dir.path(),
    )
    .await;
    for path in ["/ui", "/ui/status", "/ui/tap?route=r"] {
        let (status, _) = get(running.addr, path).await;
        assert_eq!(status, 401, "{path} without a token");
    }
    let (status, body) = get(running.addr, "/ui?access_token=s3cret-admin").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>Sluice console</title>"));
    // The script and style sheet the page loads hold no data: no token.
    let (status, body) = get(running.addr, "/ui/console.js").await;
    assert_eq!(status, 200);
    assert!(body.contains("textContent"));
    let (status, _) = get(running.addr, "/ui/console.css").await;
    assert_eq!(status, 200);
    let req = builder(running.addr, "GET", "/ui/status")
        .header("authorization", "Bearer wrong")
        .body(Default::default())
        .unwrap();
    let (status, _) = call(running.addr, req).await;
    assert_eq!(status, 401, "a wrong token");
    let (status, body) = get(running.addr, "/ui/tap?access_token=s3cret-admin").await;
    assert_eq!(status, 400);
    assert!(body.contains("missing ?route="), "{body}");
    running.shutdown().await.unwrap();
}

/// `sluice tap ROUTE:PORT` prints the chosen port's records as NDJSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_tap_prints_ndjson_records_of_the_chosen_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.gen]
        type = "generator"
        rate = 200
        clients = 3
        [plugins.router]
        path = "{router}"
        [plugins.router.config]
        field = "client_id"
        ports = {{ "client-1" = "vip" }}
        [sinks.out]
        type = "blackhole"
        [sinks.vips]
        type = "blackhole"
        [routes.r]
        from = "gen"
        through = ["router"]
        to = {{ default = ["out"], vip = ["vips"] }}
        "#,
        router = plugin("port-router"),
    );
    let running = start(&config, dir.path()).await;
    let server = format!("http://{}", running.addr);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["tap", "r:vip", "--server", &server, "--limit", "5"])
        .output();
    let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        assert_eq!(l["route"], "r");
        assert_eq!(l["port"], "vip");
        assert_eq!(l["record"]["value"]["client_id"], "client-1", "{l}");
    }
    // A route that does not exist is a clear error.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["tap", "nope", "--server", &server, "--limit", "1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("no route named `nope`"),
        "{err}"
    );
    running.shutdown().await.unwrap();
}

/// The status stream carries each table's keys, lag and readiness, and the
/// route graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_stream_reports_tables_and_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
        [server]
        listen = "127.0.0.1:0"
        [tables.products]
        type = "kafka"
        bootstrap_servers = "embedded"
        topic = "products"
        [sources.web]
        type = "http"
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "web"
        to = ["out"]
        "#;
    let running = start(text, dir.path()).await;
    wait_ready(running.addr).await;
    let mut status = SseClient::open(running.addr, "/ui/status", &[]).await;
    let event = status.next(WAIT).await.unwrap();
    assert_eq!(event.event.as_deref(), Some("status"));
    let s: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        s["tables"]["products"],
        serde_json::json!({"ready": true, "keys": 0, "lag": 0})
    );
    assert_eq!(s["graph"]["routes"][0]["name"], "r");
    assert_eq!(s["graph"]["routes"][0]["to"]["default"][0], "out");
    assert_eq!(s["graph"]["sources"]["web"], "http");
    assert_eq!(s["routes"]["r"], "running");
    running.shutdown().await.unwrap();
}
