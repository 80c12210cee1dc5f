//! The `sluice` binary: `run` serves until SIGTERM, then shuts down cleanly
//! with everything delivered.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::*;
use hyper::StatusCode;
use serde_json::json;

/// Reads `child`'s log (stderr) as it comes, and returns once it says
/// "Sluice is running" (logged when the server accepts requests). The
/// handle yields the whole log once the process has ended.
fn wait_until_running(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = line_tx.send(line);
        }
        all
    });
    // Blocks until the line arrives, or the process ends (the channel closes).
    let up = line_rx.iter().any(|l| l.contains("Sluice is running"));
    assert!(up, "sluice did not start");
    reader
}

#[tokio::test]
async fn run_serves_until_sigterm_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Find a free port, then hand it to the process through the
    // SLUICE_LISTEN convention every example uses.
    let port = common::redis::free_port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        r#"
        [server]
        listen = "${SLUICE_LISTEN:-127.0.0.1:8080}"
        [sources.in]
        type = "http"
        [sinks.out]
        type = "file"
        path = "out.jsonl"
        [sinks.console]
        type = "stdout"
        [routes.r]
        from = "in"
        to = ["out", "console"]
        "#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&config)
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut all = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut all).unwrap();
        all
    });
    let reader = wait_until_running(&mut child);
    let child = KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, body) = post_ndjson(
        addr,
        "in",
        &[
            json!({"key": "a", "value": 1}),
            json!({"key": "b", "value": 2}),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut child = child;
    let exit = tokio::task::spawn_blocking(move || child.0.wait())
        .await
        .unwrap()
        .unwrap();
    let log = reader.join().unwrap();
    assert!(exit.success(), "exit {exit:?}:\n{log}");
    assert!(log.contains("Shutdown complete."), "{log}");
    // The stdout sink wrote the same records as JSON lines.
    let printed: Vec<serde_json::Value> = stdout_reader
        .join()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        printed,
        [
            json!({"key": "a", "value": 1, "headers": {}, "timestamp": printed[0]["timestamp"]}),
            json!({"key": "b", "value": 2, "headers": {}, "timestamp": printed[1]["timestamp"]}),
        ]
    );
    let lines = read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["value"], 2);
}

#[test]
fn check_fails_with_the_key_named_for_a_dangling_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[sources.in]\ntype = \"http\"\n[routes.r]\nfrom = \"in\"\nthrough = [\"nope\"]\nto = [\"gone\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes.r.through[0]: no plugin named `nope`"),
        "{err}"
    );
    assert!(
        err.contains("routes.r.to.default: no sink named `gone`"),
        "{err}"
    );
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_debug_level() {
    const SECRETS: [&str; 5] = [
        "ingest-tok-7d1",
        "jwt-secret-9a2",
        "redis-pw-4c3",
        "kafka-pw-5e4",
        "admin-tok-8f5",
    ];
    let dir = tempfile::tempdir().unwrap();
    let port = common::redis::free_port();
    let config = dir.path().join("sluice.toml");
    // Redis and Kafka on ports nothing listens on: their failures are
    // logged, with the URLs and settings that hold the secrets.
    std::fs::write(
        &config,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:{port}"
            admin_tokens = ["${{ADMIN_TOKEN}}"]
            [sources.in]
            type = "http"
            tokens = ["${{INGEST_TOKEN}}"]
            [sinks.stream]
            type = "redis_stream"
            url = "redis://sluice:${{REDIS_PASSWORD}}@127.0.0.1:1/0"
            stream = "s"
            [sinks.kafka]
            type = "kafka"
            bootstrap_servers = "127.0.0.1:1"
            topic = "t"
            delivery_timeout = "1s"
            options = {{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanisms" = "PLAIN", "sasl.username" = "u", "sasl.password" = "${{KAFKA_PASSWORD}}" }}
            [sinks.live]
            type = "sse"
            [sinks.live.auth]
            secret = "${{JWT_SECRET}}"
            [routes.r]
            from = "in"
            to = ["stream", "kafka", "live"]
            "#
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env("INGEST_TOKEN", SECRETS[0])
        .env("JWT_SECRET", SECRETS[1])
        .env("REDIS_PASSWORD", SECRETS[2])
        .env("KAFKA_PASSWORD", SECRETS[3])
        .env("ADMIN_TOKEN", SECRETS[4])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let reader = wait_until_running(&mut child.0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let record = [json!({"key": "client-1", "value": "x"})];
    let body: String = record.iter().map(|l| format!("{l}\n")).collect();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*format!("Bearer {}", SECRETS[0])),
    ] {
        let mut req =
            builder(addr, "POST", "/ingest/in").header("content-type", "application/x-ndjson");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (_, reply) = call(
            addr,
            req.body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
                .unwrap(),
        )
        .await;
        for s in SECRETS {
            assert!(!reply.contains(s), "{s} in a response: {reply}");
        }
    }
    for path in [
        "/sse/live?access_token=forged.token.here",
        "/health",
        "/plugins",
        "/metrics",
    ] {
        let (_, reply) = get(addr, path).await;
        for s in SECRETS {
            assert!(!reply.contains(s), "{s} in {path}: {reply}");
        }
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let _ = tokio::task::spawn_blocking(move || child.0.wait()).await;
    let log = reader.join().unwrap();
    assert!(log.contains("DEBUG"), "the log ran at debug level:\n{log}");
    assert!(
        log.contains("Redis"),
        "the Redis failure was logged:\n{log}"
    );
    for s in SECRETS {
        assert!(!log.contains(s), "{s} in the log:\n{log}");
    }
}
