//! Kafka over real TLS: librdkafka's mock broker behind a TLS terminator
//! this test runs (rustls, a certificate from a test CA), with the broker
//! advertising the TLS port, so every connection (bootstrap and broker) is
//! TLS. Sluice consumes with `security.protocol = "SSL"` and the test CA,
//! and produces the records on over TLS; without the CA it is refused.
//! (The mock broker speaks no SASL; SASL settings are checked in
//! `tests/config.rs`.)

#![allow(clippy::unwrap_used, unsafe_code)]

mod common;

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::tls::make_certs;
use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A mock cluster (one broker) that advertises `localhost:<tls_port>`.
/// The cluster lives as long as the returned client.
fn mock_broker(tls_port: u16, topics: &[&str]) -> (BaseProducer, String) {
    let client: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .unwrap();
    // SAFETY: the handle is this live client's; the mock cluster it returns
    // lives as long as the client, which the caller keeps.
    let plain = unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(client.client().native_ptr());
        assert!(!cluster.is_null(), "no mock cluster");
        let host = CString::new("localhost").unwrap();
        rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
            cluster,
            1,
            host.as_ptr(),
            i32::from(tls_port),
        );
        for topic in topics {
            let name = CString::new(*topic).unwrap();
            let err = rdkafka::bindings::rd_kafka_mock_topic_create(cluster, name.as_ptr(), 2, 1);
            assert_eq!(
                err,
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            );
        }
        let bootstraps = rdkafka::bindings::rd_kafka_mock_cluster_bootstraps(cluster);
        std::ffi::CStr::from_ptr(bootstraps)
            .to_string_lossy()
            .into_owned()
    };
    (client, plain)
}

/// Terminates TLS on `listener` and forwards each connection to `upstream`.
fn tls_terminator(listener: tokio::net::TcpListener, upstream: String, certs: &Path) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

fn tls_client(bootstrap: &str, ca: &Path) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", ca.display().to_string());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_consumes_and_produces_over_tls_and_refuses_an_untrusted_broker() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.pem");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let (_cluster, plain) = mock_broker(tls_port, &["tls-in", "tls-out"]);
    tls_terminator(listener, plain, certs.path());
    let bootstrap = format!("localhost:{tls_port}");

    let dir = tempfile::tempdir().unwrap();
    let security = format!(
        r#"{{ "security.protocol" = "SSL", "ssl.ca.location" = "{}" }}"#,
        ca.display()
    );
    let config = format!(
        r#"
[sources.in]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["tls-in"]
group_id = "tls-group"
options = {security}

[sinks.out]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "tls-out"
options = {security}

[routes.r]
from = "in"
to = ["out"]
"#
    );
    let running = start(&config, dir.path()).await;

    let producer: FutureProducer = tls_client(&bootstrap, &ca).create().unwrap();
    for i in 0..5 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::to("tls-in").key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let consumer: StreamConsumer = tls_client(&bootstrap, &ca)
        .set("group.id", "tls-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["tls-out"]).unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
            .await
            .expect("records over TLS")
            .unwrap();
        got.push((
            String::from_utf8_lossy(m.key().unwrap()).into_owned(),
            String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
        ));
    }
    got.sort();
    let want: Vec<_> = (0..5).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    assert_eq!(got, want);
    running.shutdown().await.unwrap();

    // Without the CA, the broker's certificate is not trusted: nothing
    // flows, and librdkafka says why.
    let untrusted: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("security.protocol", "SSL")
        .set("message.timeout.ms", "3000")
        .create()
        .unwrap();
    let refused = untrusted
        .send(
            FutureRecord::to("tls-in").key("x").payload("y"),
            Duration::from_secs(5),
        )
        .await;
    assert!(refused.is_err(), "an untrusted broker was used");
}
