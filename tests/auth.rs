//! Access control over real sockets: bearer tokens on ingest and on the
//! admin endpoints, JWT-authorised SSE subscriptions where the token (not
//! the query) names the client, and no secret in any response.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis::RedisServer;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "jwt-test-secret-0123456789abcdef";
const INGEST_TOKEN: &str = "ingest-token-abc";
const ADMIN_TOKEN: &str = "admin-token-xyz";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `client`, expiring `ttl` seconds from now (negative: past).
fn token(client: &str, ttl: i64, alg: Algorithm, secret: &str) -> String {
    let exp = i64::try_from(now()).unwrap() + ttl;
    encode(
        &Header::new(alg),
        &json!({ "sub": client, "exp": exp }),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn good(client: &str) -> String {
    token(client, 300, Algorithm::HS256, SECRET)
}

fn config(dir: &std::path::Path, redis: Option<&str>) -> String {
    let backing = match redis {
        Some(url) => format!("[sinks.notifications.redis]\nurl = \"{url}\"\n"),
        None => String::new(),
    };
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, "# one a line\nfile-token-1\n\n").unwrap();
    format!(
        r#"
[server]
admin_tokens = ["{ADMIN_TOKEN}"]

[sources.events-in]
type = "http"
tokens = ["{INGEST_TOKEN}"]
token_file = "{tokens}"

[sinks.notifications]
type = "sse"
format = "envelope"
[sinks.notifications.auth]
secret = "{SECRET}"
cookie = "sluice_token"
{backing}
[sinks.out]
type = "file"
path = "out.jsonl"

[routes.r]
from = "events-in"
to = ["notifications", "out"]
"#,
        tokens = tokens.display()
    )
}

async fn post(
    addr: std::net::SocketAddr,
    auth: Option<&str>,
    lines: &[serde_json::Value],
) -> StatusCode {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut req =
        builder(addr, "POST", "/ingest/events-in").header("content-type", "application/x-ndjson");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    call(addr, req.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .0
}

async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, String) {
    let mut req = builder(addr, "GET", path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    call(addr, req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn ingest_needs_a_listed_token_and_a_refused_request_ingests_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path(), None), dir.path()).await;
    let addr = running.addr;
    let rec = |v: &str| json!({"key": "client-1", "value": v});
    assert_eq!(
        post(addr, None, &[rec("none")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(addr, Some("Bearer wrong"), &[rec("wrong")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(addr, Some(INGEST_TOKEN), &[rec("no scheme")]).await,
        StatusCode::UNAUTHORIZED
    );
    let req = builder(addr, "POST", "/ingest/events-in")
        .body(Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    let resp = request(addr, req).await;
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"sluice\""
    );
    assert_eq!(
        post(addr, Some(&format!("Bearer {INGEST_TOKEN}")), &[rec("a")]).await,
        StatusCode::OK
    );
    assert_eq!(
        post(addr, Some("Bearer file-token-1"), &[rec("b")]).await,
        StatusCode::OK
    );
    let values: Vec<String> = read_lines(&dir.path().join("out.jsonl"))
        .iter()
        .map(|l| l["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, ["a", "b"], "only the authorised records arrived");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token_while_probes_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path(), None), dir.path()).await;
    let addr = running.addr;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for path in ["/metrics", "/plugins"] {
        assert_eq!(
            get_with(addr, path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            get_with(addr, path, Some(&format!("Bearer {INGEST_TOKEN}")))
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{path} with another token"
        );
        assert_eq!(
            get_with(addr, path, Some(&admin)).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    let (status, body) = get_with(addr, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ok"}"#, "no detail without the token");
    let (_, body) = get_with(addr, "/health", Some(&admin)).await;
    assert!(body.contains(r#""routes":{"r":"running"}"#), "{body}");
    assert_eq!(get_with(addr, "/ready", None).await.0, StatusCode::OK);
    // No secret in any of it.
    let mut all = String::new();
    for path in ["/metrics", "/plugins", "/health", "/ready"] {
        all.push_str(&get_with(addr, path, Some(&admin)).await.1);
    }
    for secret in [SECRET, INGEST_TOKEN, ADMIN_TOKEN, "file-token-1"] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn sse_refuses_missing_forged_expired_and_foreign_algorithm_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path(), None), dir.path()).await;
    let addr = running.addr;
    let sse =
        |q: String| async move { get_with(addr, &format!("/sse/notifications?{q}"), None).await };
    let (status, body) = sse("client_id=client-1".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    for (what, t) in [
        (
            "forged",
            token("client-1", 300, Algorithm::HS256, "another-secret"),
        ),
        ("expired", token("client-1", -120, Algorithm::HS256, SECRET)),
        ("HS512", token("client-1", 300, Algorithm::HS512, SECRET)),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let (status, body) = sse(format!("access_token={t}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(!body.contains(SECRET), "{body}");
    }
    let no_exp = encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "client-1" }),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sse(format!("access_token={no_exp}")).await.0,
        StatusCode::UNAUTHORIZED,
        "a token without exp"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_for_client_1_reads_exactly_client_1s_events_whatever_the_query_says() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path(), None), dir.path()).await;
    let addr = running.addr;
    let t = good("client-1");
    let path = format!("/sse/notifications?client_id=client-2&access_token={t}");
    let mut by_query = SseClient::open(addr, &path, &[]).await;
    let auth = format!("Bearer {t}");
    let mut by_header = SseClient::open(
        addr,
        "/sse/notifications?client_id=client-2",
        &[("authorization", &auth)],
    )
    .await;
    let cookie = format!("other=1; sluice_token={t}");
    let mut by_cookie = SseClient::open(addr, "/sse/notifications", &[("cookie", &cookie)]).await;
    let lines: Vec<_> = ["client-2", "client-1", "client-2", "client-1"]
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"key": c, "value": {"n": i}}))
        .collect();
    assert_eq!(
        post(addr, Some(&format!("Bearer {INGEST_TOKEN}")), &lines).await,
        StatusCode::OK
    );
    for client in [&mut by_query, &mut by_header, &mut by_cookie] {
        let events = client.take(2, Duration::from_secs(5)).await;
        let got: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    envelope(e)["key"].clone(),
                    envelope(e)["value"]["n"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(json!("client-1"), json!(1)), (json!("client-1"), json!(3))]
        );
        assert!(
            client.next(Duration::from_millis(300)).await.is_none(),
            "nothing of client-2"
        );
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expiring_token_closes_the_stream_and_a_fresh_one_resumes_exactly() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let running = start(&config(dir.path(), Some(&redis.url())), dir.path()).await;
    let addr = running.addr;
    let ingest = format!("Bearer {INGEST_TOKEN}");
    let rec = |n: u64| json!({"key": "client-1", "value": {"n": n}});
    // Expires in 2 s (exp has one-second resolution).
    let short = token("client-1", 2, Algorithm::HS256, SECRET);
    let mut sse = SseClient::open(
        addr,
        &format!("/sse/notifications?access_token={short}"),
        &[],
    )
    .await;
    assert_eq!(
        post(addr, Some(&ingest), &[rec(0), rec(1)]).await,
        StatusCode::OK
    );
    let first = sse.take(2, Duration::from_secs(5)).await;
    // The stream ends when the token expires, saying why.
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        if sse.next(Duration::from_millis(200)).await.is_some() {
            panic!("no event was posted");
        }
        if sse.ended {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream outlived its token: {:?}", sse.comments);
    assert!(
        sse.comments.iter().any(|c| c.starts_with("token expired")),
        "{:?}",
        sse.comments
    );
    // Missed while disconnected, then picked up with a fresh token.
    assert_eq!(
        post(addr, Some(&ingest), &[rec(2), rec(3)]).await,
        StatusCode::OK
    );
    let last = first[1].id.clone().unwrap();
    let fresh = format!("Bearer {}", good("client-1"));
    let mut again = SseClient::open(
        addr,
        "/sse/notifications",
        &[("authorization", &fresh), ("last-event-id", &last)],
    )
    .await;
    let resumed: Vec<_> = again
        .take(2, Duration::from_secs(5))
        .await
        .iter()
        .map(|e| envelope(e)["value"]["n"].clone())
        .collect();
    assert_eq!(resumed, [json!(2), json!(3)], "exactly what was missed");
    assert!(again.next(Duration::from_millis(300)).await.is_none());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_notifications_example_serves_each_client_only_its_own_events() {
    init_logging();
    let redis = RedisServer::start();
    let path = workspace()
        .join("examples")
        .join("secure-notifications.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let url = redis.url();
    let config = sluice::config::Config::parse(&text, path.parent().unwrap(), |var| match var {
        "REDIS_URL" => Some(url.clone()),
        "SLUICE_JWT_SECRET" => Some(SECRET.to_owned()),
        "SLUICE_INGEST_TOKEN" => Some(INGEST_TOKEN.to_owned()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let addr = running.addr;
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    let t1 = good("client-1");
    // Asking for client-2's stream with client-1's token still reads client-1's.
    let mut sse = SseClient::open(
        addr,
        &format!("/sse/notifications?client_id=client-2&access_token={t1}"),
        &[],
    )
    .await;
    assert_eq!(
        get_with(addr, "/sse/notifications?client_id=client-1", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let records: Vec<common::kafka::Input> = (0..4)
        .map(|i| {
            let key = ["client-1", "client-2"][i % 2];
            (
                key.to_owned(),
                format!(r#"{{"n":{i}}}"#),
                vec![],
                1_700_000_000_000 + i as i64,
            )
        })
        .collect();
    common::kafka::produce(&bootstrap, "events", &records).await;
    let from_kafka: Vec<String> = sse
        .take(2, Duration::from_secs(20))
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(from_kafka, [r#"{"n":0}"#, r#"{"n":2}"#]);
    // The http source takes the same path, with its token only.
    let posted = [
        json!({"key": "client-1", "value": {"n": 9}}),
        json!({"key": "client-2", "value": {"n": 10}}),
    ];
    assert_eq!(post(addr, None, &posted).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(addr, Some(&format!("Bearer {INGEST_TOKEN}")), &posted).await,
        StatusCode::OK
    );
    let via_http = sse.take(1, Duration::from_secs(10)).await;
    assert_eq!(via_http[0].data, r#"{"n":9}"#);
    assert!(
        sse.next(Duration::from_millis(300)).await.is_none(),
        "nothing of client-2"
    );
    running.shutdown().await.unwrap();
}

/// An SSE-only config whose `auth` table is `auth`.
fn sse_only(auth: &str) -> String {
    format!(
        r#"
[sources.in]
type = "http"
[sinks.notifications]
type = "sse"
[sinks.notifications.auth]
{auth}
[routes.r]
from = "in"
to = ["notifications"]
"#
    )
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_a_public_key_or_a_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    openssl(d, &["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
    );
    openssl(d, &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(d.join("rsa.key")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(d.join("ec.key")).unwrap()).unwrap();
    let exp = now() + 300;
    let sign = |alg: Algorithm, key: &EncodingKey, kid: Option<&str>| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, &json!({"sub": "client-7", "exp": exp}), key).unwrap()
    };
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    std::fs::write(d.join("jwks.json"), json!({"keys": [jwk]}).to_string()).unwrap();

    for (auth, good_token, bad_token) in [
        (
            format!(r#"public_key = "{}""#, d.join("rsa.pub").display()),
            sign(Algorithm::RS256, &rsa, None),
            sign(Algorithm::ES256, &ec, None),
        ),
        (
            format!(r#"public_key = "{}""#, d.join("ec.pub").display()),
            sign(Algorithm::ES256, &ec, None),
            sign(Algorithm::RS256, &rsa, None),
        ),
        (
            format!(r#"jwks = "{}""#, d.join("jwks.json").display()),
            sign(Algorithm::RS256, &rsa, Some("k1")),
            sign(Algorithm::RS256, &rsa, Some("unknown")),
        ),
    ] {
        let running = start(&sse_only(&auth), d).await;
        let addr = running.addr;
        let mut sse = SseClient::open(
            addr,
            &format!("/sse/notifications?access_token={good_token}"),
            &[],
        )
        .await;
        let (status, _) = get_with(
            addr,
            &format!("/sse/notifications?access_token={bad_token}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}");
        let (status, _) =
            post_ndjson(addr, "in", &[json!({"key": "client-7", "value": "hi"})]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            sse.take(1, Duration::from_secs(5)).await[0].data,
            "hi",
            "{auth}"
        );
        running.shutdown().await.unwrap();
    }
}
