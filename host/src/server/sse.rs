//! `GET /sse/{sink}`: who the client is (the query's `client_id`, or the
//! verified claim of its JWT), where it resumes (`Last-Event-ID`), and the
//! event stream until the hub ends it, the hold time is over, the token
//! expires or the client goes away.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};

use super::{Body, error, error_with_auth, event_stream_response, unauthorized};
use crate::common::redis::EntryId;
use crate::shutdown::Shutdown;
use crate::sinks::SseHub;
use crate::sinks::sse::{OverLimit, Subscription};
use crate::sources::http::parse_query;

/// `GET /sse/{sink}`: one client's events from `hub`, as a stream.
pub(super) async fn serve<B>(
    req: &Request<B>,
    hub: &Arc<SseHub>,
    shutdown: Shutdown,
) -> Response<Body> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    // With `auth`, the client is the token's, whatever the query says.
    let (client, expires_in) = match hub.verifier() {
        Some(verifier) => {
            let Some(token) = verifier.token_in(req.headers(), &query) else {
                return unauthorized(
                    "a token (Authorization: Bearer, ?access_token= or the cookie)",
                );
            };
            match verifier.verify(token) {
                Ok(v) => (v.client, Some(v.expires_in)),
                Err(e) => return error_with_auth(StatusCode::UNAUTHORIZED, &e.to_string()),
            }
        }
        None => match query.iter().find(|(k, _)| k == "client_id") {
            Some((_, v)) => (v.clone(), None),
            None => return error(StatusCode::BAD_REQUEST, "missing ?client_id="),
        },
    };
    // Where to resume: the `Last-Event-ID` header (sent by EventSource on
    // reconnect), or `last_event_id=` for clients that cannot set headers.
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "last_event_id")
                .map(|(_, v)| v.clone())
        })
        .filter(|id| !id.trim().is_empty());
    let after = match (&hub.config().redis, last_id) {
        (Some(_), Some(id)) => match id.trim().parse::<EntryId>() {
            Ok(id) => Some(id),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Last-Event-ID: {e}")),
        },
        // In memory, ids are per process: there is nothing to resume from.
        _ => None,
    };
    match hub.over_limit(&client) {
        Some(OverLimit::Client(n)) => {
            hub.refused.add(1);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "client `{client}` already has {n} connections open (max_connections_per_client)"
                ),
            );
        }
        Some(OverLimit::Sink(n)) => {
            hub.refused.add(1);
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("this sink already has {n} connections open (max_connections)"),
            );
        }
        None => {}
    }
    let subscription = match hub.subscribe(&client, after).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let heartbeat = hub.config().heartbeat.0;
    // The connection ends at the hold time or when the token expires,
    // whichever is first, with a comment saying which.
    let hold = hub.config().hold.map(|h| h.0);
    let end = match (hold, expires_in) {
        (Some(h), Some(e)) if e < h => Some((e, TOKEN_EXPIRED)),
        (None, Some(e)) => Some((e, TOKEN_EXPIRED)),
        (Some(h), _) => Some((h, HOLD_OVER)),
        (None, None) => None,
    };
    event_stream_response(event_stream(subscription, heartbeat, end, shutdown))
}

/// The body of one SSE connection: an opening comment, then events and
/// heartbeats until the hub ends the subscription, the hold time is over,
/// or the client goes away (hyper drops the stream, and with it the
/// subscription).
fn event_stream(
    subscription: Subscription,
    heartbeat: Duration,
    end: Option<(Duration, &'static [u8])>,
    shutdown: Shutdown,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    enum Phase {
        Open,
        Streaming,
        Done,
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Far enough away to never fire when there is no end.
    let (end_in, end_comment) = end.unwrap_or((Duration::from_secs(100 * 365 * 86_400), HOLD_OVER));
    let hold_until = tokio::time::Instant::now() + end_in;
    let state = (subscription, ticker, shutdown, Phase::Open);
    stream::unfold(
        state,
        move |(mut sub, mut ticker, mut shutdown, phase)| async move {
            let frame = match phase {
                Phase::Done => return None,
                Phase::Open => Bytes::from_static(b": connected\nretry: 2000\n\n"),
                Phase::Streaming => tokio::select! {
                    biased;
                    event = sub.rx.recv() => match event {
                        Some(bytes) => bytes,
                        None if sub.lagged.load(Ordering::Acquire) => {
                            let last = Bytes::from_static(b": disconnected: client fell behind; reconnect\n\n");
                            return Some((Ok(Frame::data(last)), (sub, ticker, shutdown, Phase::Done)));
                        }
                        None => return None,
                    },
                    _ = ticker.tick() => Bytes::from_static(b": keep-alive\n\n"),
                    _ = tokio::time::sleep_until(hold_until) => {
                        let last = Bytes::from_static(end_comment);
                        return Some((Ok(Frame::data(last)), (sub, ticker, shutdown, Phase::Done)));
                    }
                    _ = shutdown.recv() => {
                        // Let queued events out first; the hub closes the
                        // subscription once the sinks have drained.
                        match sub.rx.recv().await {
                            Some(bytes) => bytes,
                            None => return None,
                        }
                    }
                },
            };
            Some((
                Ok(Frame::data(frame)),
                (sub, ticker, shutdown, Phase::Streaming),
            ))
        },
    )
}

/// The final comment when the hold time is over.
const HOLD_OVER: &[u8] = b": hold time over; reconnect\n\n";
/// The final comment when the client's token expired.
const TOKEN_EXPIRED: &[u8] = b": token expired; reconnect with a fresh token\n\n";
