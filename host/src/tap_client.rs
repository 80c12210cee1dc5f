//! `sluice tap ROUTE[:PORT]`: a running Sluice's tap (`GET /ui/tap`) as
//! NDJSON on stdout, one record a line, like `vector tap`.

use std::io::Write;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;

use crate::tap::TapFilter;

/// `ROUTE[:PORT]` as a route and an optional port.
pub fn parse_target(target: &str) -> anyhow::Result<(String, Option<String>)> {
    let (route, port) = match target.split_once(':') {
        Some((r, p)) => (r, Some(p.to_owned()).filter(|p| !p.is_empty())),
        None => (target, None),
    };
    if route.is_empty() {
        bail!("name a route: `sluice tap ROUTE[:PORT]`");
    }
    Ok((route.to_owned(), port))
}

/// The tap's path and query on the server.
fn path_of(filter: &TapFilter) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("route", &filter.route);
    if let Some(port) = &filter.port {
        q.append_pair("port", port);
    }
    if let Some(key) = &filter.key {
        q.append_pair("key", &String::from_utf8_lossy(key));
    }
    q.append_pair("rate", &filter.rate.to_string());
    format!("/ui/tap?{}", q.finish())
}

/// Follows the tap of `filter` on the Sluice at `server`
/// (`http://host:port`), writing each record's JSON as one line to `out`,
/// until the server ends the stream or `limit` records were written.
pub async fn follow(
    server: &str,
    filter: &TapFilter,
    token: Option<&str>,
    limit: Option<usize>,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let uri: Uri = server
        .parse()
        .with_context(|| format!("--server `{server}` is not a URL"))?;
    if uri.scheme_str().is_some_and(|s| s != "http") {
        bail!(
            "sluice tap speaks plain HTTP (`http://host:port`); for a server with TLS use `curl -N` on /ui/tap"
        );
    }
    let host = uri.host().context("--server needs a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "Tap connection ended.");
        }
    });
    let mut req = Request::builder()
        .uri(path_of(filter))
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::ACCEPT, "text/event-stream");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!("{status}: {}", String::from_utf8_lossy(&text).trim());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut written = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if let Some(json) = line.strip_prefix(b"data: ") {
                out.write_all(json)?;
                out.flush()?;
                written += 1;
                if limit.is_some_and(|l| written >= l) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_route_and_maybe_a_port() {
        assert_eq!(parse_target("notify").unwrap(), ("notify".into(), None));
        assert_eq!(
            parse_target("notify:vip").unwrap(),
            ("notify".into(), Some("vip".into()))
        );
        assert_eq!(parse_target("notify:").unwrap(), ("notify".into(), None));
        assert!(parse_target(":vip").is_err());
    }

    #[test]
    fn the_query_is_encoded() {
        let f = TapFilter {
            route: "a b".into(),
            port: Some("p&q".into()),
            key: Some(b"client-1".to_vec()),
            rate: 5,
        };
        assert_eq!(
            path_of(&f),
            "/ui/tap?route=a+b&port=p%26q&key=client-1&rate=5"
        );
    }
}
