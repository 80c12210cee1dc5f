//! Redis over real TLS with an ACL user: a `redis-server` with a TLS port
//! and a certificate from a CA this test makes with `openssl`. Records flow
//! through a TLS sink and a TLS source; a wrong password and an untrusted
//! certificate fail clearly, and no password shows in what Sluice says.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::redis::{RedisServer, field, free_port, xrange};
use common::tls::make_certs;
use common::*;
use hyper::StatusCode;
use serde_json::json;

const PASSWORD: &str = "acl-pass-5f1e9c";

struct TlsRedis {
    server: RedisServer,
    tls_port: u16,
    certs: tempfile::TempDir,
}

fn start_tls_redis() -> TlsRedis {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = free_port();
    let path = |f: &str| certs.path().join(f).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let password = format!(">{PASSWORD}");
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--user",
        "sluice",
        "on",
        &password,
        "~*",
        "&*",
        "+@all",
    ]);
    TlsRedis {
        server,
        tls_port,
        certs,
    }
}

/// An http source writing to a TLS stream sink, and a TLS stream source
/// reading it back into a file. `url` is the TOML value of both `url` keys.
fn config(url: &str, stream: &str) -> String {
    format!(
        r#"
[sources.in]
type = "http"

[sources.back]
type = "redis"
url = {url}
streams = ["{stream}"]
group = "g"
start = "earliest"
value_field = "value"
key_field = "key"

[sinks.stream]
type = "redis_stream"
url = {url}
stream = "{stream}"

[sinks.out]
type = "file"
path = "out.jsonl"

[routes.write]
from = "in"
to = ["stream"]

[routes.read]
from = "back"
to = ["out"]
"#
    )
}

fn table(port: u16, extra: &str) -> String {
    format!(r#"{{ url = "rediss://localhost:{port}/0", username = "sluice", {extra} }}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_over_tls_with_an_acl_user_and_bad_credentials_fail_clearly() {
    let redis = start_tls_redis();
    let ca = redis.certs.path().join("ca.pem");
    let dir = tempfile::tempdir().unwrap();
    let url = table(
        redis.tls_port,
        &format!(r#"password = "{PASSWORD}", ca_file = "{}""#, ca.display()),
    );
    let running = start(&config(&url, "tls-events"), dir.path()).await;
    let lines: Vec<_> = (0..3)
        .map(|i| json!({"key": format!("k{i}"), "value": {"n": i}}))
        .collect();
    let (status, body) = post_ndjson(running.addr, "in", &lines).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // In Redis, over TLS, as the ACL user.
    let entries = xrange(&mut redis.server.conn(), "tls-events");
    let values: Vec<_> = entries
        .iter()
        .map(|e| field(e, "value").unwrap().to_owned())
        .collect();
    assert_eq!(values, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    // And back out through the TLS source.
    let out = dir.path().join("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || read_lines(&out).len() == 3).await);
    let keys: Vec<_> = read_lines(&out).iter().map(|r| r["key"].clone()).collect();
    assert_eq!(keys, [json!("k0"), json!("k1"), json!("k2")]);
    running.shutdown().await.unwrap();

    // A wrong password: the delivery fails, saying why, and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let url = table(
        redis.tls_port,
        &format!(
            r#"password = "wrong-{PASSWORD}", ca_file = "{}""#,
            ca.display()
        ),
    );
    let running = start(&config(&url, "tls-wrong"), dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &lines[..1]).await;
    assert_ne!(status, StatusCode::OK);
    assert!(
        body.to_lowercase().contains("authentication failed"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "the password leaked: {body}");
    running.shutdown().await.unwrap();
    assert!(xrange(&mut redis.server.conn(), "tls-wrong").is_empty());

    // A certificate from a CA Sluice was not told to trust.
    let dir = tempfile::tempdir().unwrap();
    let url = table(redis.tls_port, &format!(r#"password = "{PASSWORD}""#));
    let running = start(&config(&url, "tls-untrusted"), dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &lines[..1]).await;
    assert_ne!(status, StatusCode::OK, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    running.shutdown().await.unwrap();
    assert!(xrange(&mut redis.server.conn(), "tls-untrusted").is_empty());

    // Unless verification is skipped, explicitly.
    let dir = tempfile::tempdir().unwrap();
    let url = table(
        redis.tls_port,
        &format!(r#"password = "{PASSWORD}", insecure_skip_verify = true"#),
    );
    let running = start(&config(&url, "tls-insecure"), dir.path()).await;
    let (status, body) = post_ndjson(running.addr, "in", &lines[..1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    running.shutdown().await.unwrap();
    assert_eq!(xrange(&mut redis.server.conn(), "tls-insecure").len(), 1);
}

#[test]
fn a_password_in_a_url_is_shown_nowhere_in_config_errors() {
    let problems = match sluice::config::Config::parse(
        r#"
        [sources.in]
        type = "http"
        [sinks.s]
        type = "redis_stream"
        url = "redis://sluice:hunter2-secret@localhost:6379/0"
        stream = "x"
        bogus = 1
        [routes.r]
        from = "in"
        to = ["s"]
        "#,
        Path::new("."),
        |_| None,
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(problems.contains("sinks.s.bogus"), "{problems}");
    assert!(!problems.contains("hunter2-secret"), "{problems}");
    let ok = sluice::config::Config::parse(
        r#"
        [sources.in]
        type = "http"
        [sinks.s]
        type = "redis_stream"
        url = "redis://sluice:hunter2-secret@localhost:6379/0"
        stream = "x"
        [routes.r]
        from = "in"
        to = ["s"]
        "#,
        Path::new("."),
        |_| None,
    )
    .unwrap();
    assert!(
        !format!("{ok:?}").contains("hunter2-secret"),
        "the config's Debug"
    );
}
