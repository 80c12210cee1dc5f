//! Config reload: only what changed is rebuilt; everything else keeps
//! running, keeps its position and its connections; a config that cannot
//! run leaves the old one running. In process (`Running::reload`) and
//! through the binary (config file change, SIGHUP).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;

fn two_generators(header: &str) -> String {
    format!(
        r#"
        [sources.a]
        type = "generator"
        rate = 400.0
        batch_size = 8
        [sources.b]
        type = "generator"
        rate = 400.0
        batch_size = 8
        [sources.c]
        type = "http"

        [plugins.shape]
        path = "{plugin}"
        [plugins.shape.config]
        fields = ["seq"]
        headers = {{ version = "{header}" }}

        [sinks.out_a]
        type = "file"
        path = "a.jsonl"
        [sinks.out_b]
        type = "file"
        path = "b.jsonl"
        [sinks.live]
        type = "sse"

        [routes.ra]
        from = "a"
        through = ["shape"]
        to = ["out_a"]
        [routes.rb]
        from = "b"
        to = ["out_b"]
        [routes.rc]
        from = "c"
        to = ["live"]
        "#,
        plugin = plugin("json-transform"),
    )
}

fn seqs(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["value"]["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn changing_one_route_leaves_the_other_routes_positions_and_connections_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(&two_generators("1"), dir.path()).await;
    let addr = running.addr;
    let mut sse = SseClient::connect(addr, "live", "client-7").await;
    let b_file = dir.path().join("b.jsonl");
    assert!(eventually(Duration::from_secs(10), || read_lines(&b_file).len() >= 100).await);

    let report = running
        .reload(config(&two_generators("2"), dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.restarted, ["a"], "{report}");
    assert_eq!(report.kept, ["b", "c"], "{report}");
    assert_eq!(report.plugins, ["shape"], "{report}");
    assert!(report.sinks.is_empty() && report.started.is_empty() && report.stopped.is_empty());
    let at_reload = read_lines(&b_file).len();

    // The unchanged SSE sink and HTTP source kept the open connection.
    let (status, body) = post_ndjson(addr, "c", &[json!({"key": "client-7", "value": 1})]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = sse.take(1, Duration::from_secs(5)).await;
    assert_eq!(events[0].data, "1");
    let (_, health) = get(addr, "/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["routes"],
        json!({"ra": "running", "rb": "running", "rc": "running"})
    );

    let a_file = dir.path().join("a.jsonl");
    assert!(
        eventually(Duration::from_secs(10), || {
            read_lines(&a_file)
                .iter()
                .filter(|l| headers(l)["version"] == "2")
                .count()
                >= 50
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(10), || read_lines(&b_file).len()
            >= at_reload + 100)
        .await
    );
    running.shutdown().await.unwrap();

    // b never restarted: one run of sequence numbers, each exactly once.
    let b = seqs(&read_lines(&b_file));
    assert_eq!(b, (0..b.len() as u64).collect::<Vec<_>>());
    // a was restarted with the new plugin config: every record of the old
    // version came out before any of the new, and the new generator began
    // again at 0.
    let a = read_lines(&a_file);
    let versions: Vec<String> = a.iter().map(|l| headers(l)["version"].clone()).collect();
    let old = versions.iter().take_while(|v| *v == "1").count();
    assert!(
        old > 0 && versions[old..].iter().all(|v| v == "2"),
        "{versions:?}"
    );
    let (before, after) = a.split_at(old);
    assert_eq!(seqs(before), (0..old as u64).collect::<Vec<_>>());
    assert_eq!(seqs(after), (0..after.len() as u64).collect::<Vec<_>>());
}

const HTTP_TO_FILE: &str = r#"
    [sources.in]
    type = "http"
    [sinks.out]
    type = "file"
    path = "out.jsonl"
    [routes.r]
    from = "in"
    to = ["out"]
"#;

#[tokio::test]
async fn a_new_config_that_cannot_start_leaves_the_old_one_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(HTTP_TO_FILE, dir.path()).await;
    let addr = running.addr;
    std::fs::write(dir.path().join("garbage.wasm"), b"not a component").unwrap();

    let bad_plugin = format!(
        "{}\n[plugins.p]\npath = \"garbage.wasm\"\n",
        HTTP_TO_FILE.replace("from = \"in\"", "from = \"in\"\nthrough = [\"p\"]")
    );
    let err = running
        .reload(config(&bad_plugin, dir.path()))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("plugins.p"), "{err:#}");

    let bad_sink = HTTP_TO_FILE.replace("out.jsonl", "no/such/dir/out.jsonl");
    let err = running
        .reload(config(&bad_sink, dir.path()))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("sinks.out.path"), "{err:#}");

    let (status, body) = post_ndjson(addr, "in", &[json!({"key": "k", "value": 1})]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines = read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["value"], 1);
    let metrics = running.metrics.render();
    assert!(
        metrics.contains("sluice_config_reload_failures_total 2"),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}

/// `sluice run` on a config file, with its log lines as they come.
struct Process {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Process {
    fn start(config: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg(config)
            .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut p = Self {
            child: KillOnDrop(child),
            lines,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        p.wait_for("Sluice is running");
        p
    }

    /// Waits (up to 20 s) for a log line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?}"),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn with_listen(body: &str) -> String {
    format!("[server]\nlisten = \"${{SLUICE_LISTEN}}\"\n{body}")
}

async fn post(addr: SocketAddr, value: i64) {
    let (status, body) = post_ndjson(addr, "in", &[json!({"key": "k", "value": value})]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn values(path: &Path) -> Vec<i64> {
    read_lines(path)
        .iter()
        .map(|l| l["value"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_binary_reloads_when_the_config_file_changes_and_ignores_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, with_listen(HTTP_TO_FILE)).unwrap();
    let mut sluice = Process::start(&file);
    post(sluice.addr, 1).await;

    std::fs::write(
        &file,
        with_listen(&HTTP_TO_FILE.replace("out.jsonl", "new.jsonl")),
    )
    .unwrap();
    let line = sluice.wait_for("Config reloaded.");
    assert!(line.contains("restarted [in]"), "{line}");
    post(sluice.addr, 2).await;

    std::fs::write(&file, "[routes.r\nthis is not toml").unwrap();
    sluice.wait_for("Config reload failed");
    post(sluice.addr, 3).await;

    assert_eq!(values(&dir.path().join("out.jsonl")), [1]);
    assert_eq!(values(&dir.path().join("new.jsonl")), [2, 3]);
    let (_, metrics) = get(sluice.addr, "/metrics").await;
    assert!(
        metrics.contains("sluice_config_reloads_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_config_reload_failures_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_config_when_file_watching_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    let watch_off =
        |body: &str| with_listen(body).replace("[server]\n", "[server]\nwatch_config = false\n");
    std::fs::write(&file, watch_off(HTTP_TO_FILE)).unwrap();
    let mut sluice = Process::start(&file);

    std::fs::write(
        &file,
        watch_off(&HTTP_TO_FILE.replace("out.jsonl", "new.jsonl")),
    )
    .unwrap();
    // Not watched: the old config keeps running until SIGHUP.
    tokio::time::sleep(Duration::from_millis(500)).await;
    post(sluice.addr, 1).await;
    sluice.signal("-HUP");
    let line = sluice.wait_for("Config reloaded.");
    assert!(line.contains("restarted [in]"), "{line}");
    post(sluice.addr, 2).await;

    assert_eq!(values(&dir.path().join("out.jsonl")), [1]);
    assert_eq!(values(&dir.path().join("new.jsonl")), [2]);
}
