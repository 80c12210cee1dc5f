//! The console: `GET /ui`, one page embedded in the binary (HTML, CSS and
//! plain JavaScript; nothing fetched from elsewhere), fed by two SSE
//! streams:
//!
//! - `GET /ui/status`: every second, the route graph, the counters the
//!   page turns into records/s, route and table states, and each plugin's
//!   status (as `/plugins`);
//! - `GET /ui/tap?route=R[&port=P][&key=K][&rate=N]`: a tap's sampled
//!   records (see [`crate::tap`]); `sluice tap` reads it too.
//!
//! Access: with admin tokens set, the admin token (as a bearer header, or
//! `?access_token=` since a page's EventSource cannot send headers);
//! without them, only clients on a loopback address, because a tap shows
//! record contents. The page's script and style sheet, which hold no data,
//! are served to anyone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use hyper::body::Frame;
use hyper::{Response, StatusCode, header};

use super::{
    AppState, Body, Served, error, event_stream_response, route_states, table_states, unauthorized,
};
use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::tap::{DEFAULT_RATE, TapFilter};

const PAGE: &str = include_str!("ui/console.html");
const SCRIPT: &str = include_str!("ui/console.js");
const STYLE: &str = include_str!("ui/console.css");

/// The first frame of both streams, as `/sse` sends it.
const OPENED: &[u8] = b": connected\nretry: 2000\n\n";

/// How often the status stream sends.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Why the console may not answer this request (401 or 403); `None`: it may.
pub(super) fn refusal(
    state: &AppState,
    headers: &hyper::HeaderMap,
    query: &[(String, String)],
    peer: SocketAddr,
) -> Option<Response<Body>> {
    let admin = state.admin.read().unwrap_or_else(|p| p.into_inner());
    match &*admin {
        Some(tokens) => {
            let in_query = query
                .iter()
                .find(|(k, _)| k == "access_token")
                .is_some_and(|(_, t)| tokens.accepts(t));
            (!in_query && !tokens.allow(headers))
                .then(|| unauthorized("an admin token (Authorization: Bearer, or ?access_token=)"))
        }
        None if peer.ip().is_loopback() => None,
        None => Some(error(
            StatusCode::FORBIDDEN,
            "the console and taps answer only on loopback unless [server] admin_tokens are set",
        )),
    }
}

/// `GET /ui`, `/ui/console.js`, `/ui/console.css`.
pub(super) fn asset(name: &str) -> Response<Body> {
    let (body, content_type) = match name {
        "" => (PAGE, "text/html; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return error(StatusCode::NOT_FOUND, "no such console file"),
    };
    let mut resp = super::text(StatusCode::OK, content_type, body.to_owned());
    let headers = resp.headers_mut();
    // Everything comes from here: no CDN, no inline script.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// The route graph of `config`, as the console draws it: sources, plugins,
/// ports and sinks, by name and type. No settings (they may hold secrets).
pub fn graph(config: &Config) -> serde_json::Value {
    let sources: serde_json::Map<_, _> = config
        .sources
        .iter()
        .map(|(n, s)| (n.clone(), s.type_name().into()))
        .collect();
    let sinks: serde_json::Map<_, _> = config
        .sinks
        .iter()
        .map(|(n, s)| (n.clone(), s.type_name().into()))
        .collect();
    let routes: Vec<_> = config
        .routes
        .iter()
        .map(|(name, r)| {
            serde_json::json!({
                "name": name,
                "from": r.from,
                "through": r.through,
                "to": r.to.0,
            })
        })
        .collect();
    serde_json::json!({ "sources": sources, "sinks": sinks, "routes": routes })
}

/// One status snapshot.
fn status(state: &AppState, served: &Served) -> Bytes {
    let m = &state.metrics;
    let by = |name: &str, label: &str| -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (labels, value) in m.values(name) {
            if let Some((_, l)) = labels.iter().find(|(k, _)| k == label) {
                let sum = out.get(l).and_then(serde_json::Value::as_u64).unwrap_or(0) + value;
                out.insert(l.clone(), sum.into());
            }
        }
        out
    };
    let plugins: Vec<_> = served.plugins.values().map(|s| s.status()).collect();
    let (routes, _) = route_states(served);
    let body = serde_json::json!({
        "at_ms": crate::record::now_millis(),
        "graph": served.graph.as_ref(),
        "routes": routes,
        "tables": table_states(served, true),
        "plugins": plugins,
        "taps": m.taps().open_count(),
        "counters": {
            "source": by("sluice_source_records_total", "source"),
            "route_in": by("sluice_route_records_in_total", "route"),
            "route_out": by("sluice_route_records_out_total", "route"),
            "unrouted": by("sluice_route_unrouted_total", "route"),
            "stage_in": by("sluice_stage_records_in_total", "stage"),
            "stage_out": by("sluice_stage_records_out_total", "stage"),
            "stage_errors": by("sluice_stage_records_errored_total", "stage"),
            "stage_traps": by("sluice_stage_traps_total", "stage"),
            "sink": by("sluice_sink_records_total", "sink"),
            "sink_errors": by("sluice_sink_errors_total", "sink"),
        },
    });
    Bytes::from(format!("event: status\ndata: {body}\n\n"))
}

/// `GET /ui/status`: a status event at once, then every second, until the
/// client goes away or Sluice stops.
pub(super) fn status_stream(state: Arc<AppState>, shutdown: Shutdown) -> Response<Body> {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let opened = Some(Bytes::from_static(OPENED));
    let body = stream::unfold(
        (state, ticker, shutdown, opened),
        |(state, mut ticker, mut shutdown, first)| async move {
            if let Some(first) = first {
                return Some((Ok(Frame::data(first)), (state, ticker, shutdown, None)));
            }
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.recv() => return None,
            }
            // The config may have been reloaded since the last tick.
            let frame = status(&state, &state.served());
            Some((Ok(Frame::data(frame)), (state, ticker, shutdown, None)))
        },
    );
    event_stream_response(body)
}

/// What `GET /ui/tap` asks for, from its query.
pub(super) fn tap_filter(query: &[(String, String)]) -> Result<TapFilter, String> {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let route = get("route")
        .filter(|r| !r.is_empty())
        .ok_or("missing ?route=")?;
    let rate = match get("rate") {
        None | Some("") => DEFAULT_RATE,
        Some(r) => r
            .parse()
            .ok()
            .filter(|r| (1..=crate::tap::MAX_RATE).contains(r))
            .ok_or_else(|| {
                format!(
                    "rate: `{r}` is not a number of records a second from 1 to {}",
                    crate::tap::MAX_RATE
                )
            })?,
    };
    Ok(TapFilter {
        route: route.to_owned(),
        port: get("port").filter(|p| !p.is_empty()).map(str::to_owned),
        key: get("key")
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec()),
        rate,
    })
}

/// `GET /ui/tap`: the tap's records as `event: record` SSE events (one JSON
/// object each), a heartbeat comment every 10 s, until the client goes away.
pub(super) fn tap_stream(
    state: &AppState,
    served: &Served,
    filter: TapFilter,
    shutdown: Shutdown,
) -> Response<Body> {
    if !served.routes.iter().any(|r| r.name() == filter.route) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no route named `{}`", filter.route),
        );
    }
    let tap = state.metrics.taps().open(filter);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let opened = Some(Bytes::from_static(OPENED));
    let body = stream::unfold(
        (tap, heartbeat, shutdown, opened),
        |(mut tap, mut heartbeat, mut shutdown, first)| async move {
            let frame = match first {
                Some(first) => first,
                None => tokio::select! {
                    event = tap.rx.recv() => {
                        let event = event?;
                        let mut frame = Vec::with_capacity(event.len() + 24);
                        frame.extend_from_slice(b"event: record\ndata: ");
                        frame.extend_from_slice(&event);
                        frame.extend_from_slice(b"\n\n");
                        Bytes::from(frame)
                    }
                    _ = heartbeat.tick() => Bytes::from_static(b": keep-alive\n\n"),
                    _ = shutdown.recv() => return None,
                },
            };
            Some((Ok(Frame::data(frame)), (tap, heartbeat, shutdown, None)))
        },
    );
    event_stream_response(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_tap_query_names_a_route_and_a_sane_rate() {
        let f = tap_filter(&q(&[
            ("route", "notify"),
            ("port", "vip"),
            ("key", "client-1"),
            ("rate", "5"),
        ]))
        .unwrap();
        assert_eq!(f.route, "notify");
        assert_eq!(f.port.as_deref(), Some("vip"));
        assert_eq!(f.key.as_deref(), Some(&b"client-1"[..]));
        assert_eq!(f.rate, 5);
        assert_eq!(
            tap_filter(&q(&[("route", "r")])).unwrap().rate,
            DEFAULT_RATE
        );
        assert_eq!(tap_filter(&q(&[])).unwrap_err(), "missing ?route=");
        assert!(
            tap_filter(&q(&[("route", "r"), ("rate", "0")]))
                .unwrap_err()
                .starts_with("rate: `0`")
        );
        assert!(tap_filter(&q(&[("route", "r"), ("rate", "x")])).is_err());
    }
}
