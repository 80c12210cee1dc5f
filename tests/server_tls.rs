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

/// Sends `req` over TLS, trusting only the CA in `ca`.
async fn https(
    addr: SocketAddr,
    ca: &Path,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(StatusCode, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
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

[routes.r]
from = "in"
to = ["out"]
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
