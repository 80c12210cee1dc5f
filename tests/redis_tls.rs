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
    let url = table(
        redis.tls_port,
        &format!(
            r#"password = "wrong-{PASSWORD}", ca_file = "{}""#,
            ca.display()
        ),
    );
    let (status, body) = post_one(&redis, &url, "tls-wrong").await;
    assert_ne!(status, StatusCode::OK);
    assert!(
        body.to_lowercase().contains("authentication failed"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "the password leaked: {body}");

    // A certificate from a CA Sluice was not told to trust.
    let url = table(redis.tls_port, &format!(r#"password = "{PASSWORD}""#));
    let (status, body) = post_one(&redis, &url, "tls-untrusted").await;
    assert_ne!(status, StatusCode::OK, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");

    // Unless verification is skipped, explicitly.
    let url = table(
        redis.tls_port,
        &format!(r#"password = "{PASSWORD}", insecure_skip_verify = true"#),
    );
    let (status, body) = post_one(&redis, &url, "tls-insecure").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Runs [`config`] with `url` writing to `stream`, posts one record and
/// stops again. Returns the ingest answer; checks that `stream` holds the
/// record exactly when the answer was 200.
async fn post_one(redis: &TlsRedis, url: &str, stream: &str) -> (StatusCode, String) {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(url, stream), dir.path()).await;
    let answer = post_ndjson(running.addr, "in", &[json!({"key": "k", "value": 1})]).await;
    running.shutdown().await.unwrap();
    let written = xrange(&mut redis.server.conn(), stream).len();
    assert_eq!(
        written,
        usize::from(answer.0 == StatusCode::OK),
        "{stream}: {}",
        answer.1
    );
    answer
}

/// An http source writing to one `redis_stream` sink whose url holds a
/// password; `extra` goes into the sink's table.
fn password_config(extra: &str) -> String {
    format!(
        r#"
        [sources.in]
        type = "http"
        [sinks.s]
        type = "redis_stream"
        url = "redis://sluice:hunter2-secret@localhost:6379/0"
        stream = "x"
        {extra}
        [routes.r]
        from = "in"
        to = ["s"]
        "#
    )
}

#[test]
fn a_password_in_a_url_is_shown_nowhere_in_config_errors() {
    let parse = |text: &str| sluice::config::Config::parse(text, Path::new("."), |_| None);
    let problems = match parse(&password_config("bogus = 1")) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(problems.contains("sinks.s.bogus"), "{problems}");
    assert!(!problems.contains("hunter2-secret"), "{problems}");
    let ok = parse(&password_config("")).unwrap();
    assert!(
        !format!("{ok:?}").contains("hunter2-secret"),
        "the config's Debug"
    );
}
