//! `[server] tls`: HTTPS on Sluice's own port with a certificate from a
//! test CA; plain HTTP is refused there; a renewed certificate is served
//! after a config reload, without a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::tls::make_certs_named;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS connection to `addr`, trusting only the CA in `ca`.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Sends `req` over TLS, trusting only the CA in `ca`.
async fn https(
    addr: SocketAddr,
    ca: &Path,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(StatusCode, String), String> {
    let tls = tls_connect(addr, ca).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn get_req(addr: SocketAddr, path: &str) -> hyper::Request<Full<Bytes>> {
    builder(addr, "GET", path).body(Full::default()).unwrap()
}

fn config(dir: &Path) -> String {
    format!(
        r#"
[server]
tls = {{ cert_file = "{cert}", key_file = "{key}" }}

[sources.in]
type = "http"

[sinks.out]
type = "file"
path = "out.jsonl"

[sinks.live]
type = "sse"

[routes.r]
from = "in"
to = ["out", "live"]
"#,
        cert = dir.join("server.pem").display(),
        key = dir.join("server.key").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_plain_http_is_refused_and_a_renewed_certificate_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    make_certs_named(dir.path(), "ca1", "server");
    let text = config(dir.path());
    let mut running = start(&text, dir.path()).await;
    let addr = running.addr;
    let ca1 = dir.path().join("ca1.pem");

    let (status, body) = https(addr, &ca1, get_req(addr, "/health")).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let ingest = builder(addr, "POST", "/ingest/in")
        .header("sluice-key", "k")
        .body(Full::new(Bytes::from_static(b"over tls")))
        .unwrap();
    assert_eq!(https(addr, &ca1, ingest).await.unwrap().0, StatusCode::OK);
    let lines = read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["value"], "over tls");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(get_req(addr, "/health")).await
    })
    .await
    .unwrap();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // Renew the certificate from another CA, then reload the same config.
    make_certs_named(dir.path(), "ca2", "server");
    let ca2 = dir.path().join("ca2.pem");
    running
        .reload(common::config(&text, dir.path()))
        .await
        .unwrap();
    let err = https(addr, &ca1, get_req(addr, "/health"))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let (status, _) = https(addr, &ca2, get_req(addr, "/health")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_is_served_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    make_certs_named(dir.path(), "ca1", "server");
    let running = start(&config(dir.path()), dir.path()).await;
    let addr = running.addr;
    let ca = dir.path().join("ca1.pem");
    let mut sse = tls_connect(addr, &ca).await.unwrap();
    sse.write_all(b"GET /sse/live?client_id=k HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut read_until = async |seen: &mut String, text: &str| {
        while !seen.contains(text) {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), sse.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {text:?} in {seen:?}"))
                .unwrap();
            assert!(n > 0, "closed before {text:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until(&mut seen, ": connected").await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    let ingest = builder(addr, "POST", "/ingest/in")
        .header("sluice-key", "k")
        .body(Full::new(Bytes::from_static(b"secret event")))
        .unwrap();
    assert_eq!(https(addr, &ca, ingest).await.unwrap().0, StatusCode::OK);
    read_until(&mut seen, "data: secret event\n\n").await;
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_certificate_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err =
        match sluice::runtime::start_with_listener(common::config(&text, dir.path()), listener)
            .await
        {
            Ok(_) => panic!("started without its certificate"),
            Err(e) => format!("{e:#}"),
        };
    assert!(err.contains("server.tls.cert_file"), "{err}");
}
