//! The HTTP server (hyper): ingest, SSE, health and metrics.
//!
//! | route                              | what                                   |
//! |------------------------------------|----------------------------------------|
//! | `POST /ingest/{source}`            | records into an `http` source           |
//! | `GET /sse/{sink}?client_id=X`      | events for client X from an `sse` sink (`Last-Event-ID` resumes when backed by Redis) |
//! | `GET /health`                      | 200 when every route runs, else 503    |
//! | `GET /ready`                       | 200 when every table has loaded and every source is open, else 503 |
//! | `GET /metrics`                     | Prometheus text                        |
//! | `GET /plugins`                     | each plugin's version, load time, reloads, last error |
//! | `GET /ui`                          | the console (`console.rs`); `/ui/status` and `/ui/tap` are its streams |
//!
//! The server takes its listener and shutdown signal as arguments, so tests
//! bind port 0 and stop it when they like. With `[server] tls` it speaks
//! HTTPS (`tls.rs`); the certificate is read again on every config reload.
//! `sse.rs` serves `GET /sse/{sink}`; `direct.rs` answers it on the socket
//! itself when it is a connection's first request, without hyper's buffers.

mod console;
mod direct;
mod sse;
mod tls;

pub use console::graph;

pub use tls::ServerTls;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::health::LinkState;
use crate::metrics::Metrics;
use crate::pipeline::{RouteState, RouteStatus};
use crate::shutdown::Shutdown;
use crate::sinks::SseHub;
use crate::sources::IngestHandle;
use crate::sources::http::{IngestError, parse_request};
use crate::tables::Tables;
use crate::wasm::PluginSlot;

type Body = BoxBody<Bytes, Infallible>;

/// What the server serves: the parts of the running config it exposes,
/// replaced as a whole when the config is reloaded.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `http` sources, by name.
    pub ingest: BTreeMap<String, Arc<IngestHandle>>,
    /// `sse` sinks, by name.
    pub sse: BTreeMap<String, Arc<SseHub>>,
    /// Routes, for `/health`.
    pub routes: Vec<RouteStatus>,
    /// Plugins, for `/plugins`.
    pub plugins: BTreeMap<String, Arc<PluginSlot>>,
    /// Tables, for `/health` and `/ready`.
    pub tables: Tables,
    /// How long a link may be down before `/ready` says 503.
    pub ready_grace: Duration,
    /// The route graph the console draws ([`graph`]).
    pub graph: Arc<serde_json::Value>,
}

/// The server's state.
#[derive(Default)]
pub struct AppState {
    /// For `/metrics`.
    pub metrics: Metrics,
    served: RwLock<Arc<Served>>,
    /// Tokens for the admin endpoints; `None`: open.
    admin: RwLock<Option<crate::auth::Tokens>>,
    /// TLS for new connections; `None`: plain HTTP.
    tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Serves `served`, with `metrics`.
    pub fn new(metrics: Metrics, served: Served) -> Self {
        Self {
            metrics,
            served: RwLock::new(Arc::new(served)),
            admin: RwLock::new(None),
            tls: RwLock::new(None),
        }
    }

    /// Serves new connections over TLS with `acceptor` (`None`: plain HTTP).
    /// Open connections keep what they started with.
    pub fn set_tls(&self, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
    }

    fn tls(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Guards the admin endpoints with `tokens` (`None`: open) from the
    /// next request on.
    pub fn set_admin(&self, tokens: Option<crate::auth::Tokens>) {
        *self.admin.write().unwrap_or_else(|p| p.into_inner()) = tokens;
    }

    /// Whether the request may read the admin endpoints.
    fn is_admin(&self, headers: &hyper::HeaderMap) -> bool {
        match &*self.admin.read().unwrap_or_else(|p| p.into_inner()) {
            Some(tokens) => tokens.allow(headers),
            None => true,
        }
    }

    /// Serves `served` from the next request on. Requests already running
    /// (an open SSE connection) keep what they started with.
    pub fn replace(&self, served: Served) {
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
    }

    fn served(&self) -> Arc<Served> {
        Arc::clone(&self.served.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Serves `state` on `listener` until `shutdown` fires, then lets open
/// requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    mut shutdown: Shutdown,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off, don't spin.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        let tls = state.tls();
        let conn = Conn {
            peer,
            state: Arc::clone(&state),
            shutdown: shutdown.clone(),
            watcher: graceful.watcher(),
        };
        // A task lives as long as its connection and is as large as its
        // largest state, so the TLS and hyper paths are boxed: an idle SSE
        // connection on plain TCP carries neither.
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, conn).await,
                Some(acceptor) => Box::pin(serve_tls(acceptor, stream, conn)).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "Connections still open after the shutdown grace period; closing them."
        );
    }
}

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// What serving one accepted connection needs besides its stream.
struct Conn {
    peer: std::net::SocketAddr,
    state: Arc<AppState>,
    shutdown: Shutdown,
    /// Held while the connection is served, so a graceful stop waits for it.
    watcher: hyper_util::server::graceful::Watcher,
}

/// Completes the TLS handshake, then serves the connection.
async fn serve_tls(acceptor: tokio_rustls::TlsAcceptor, stream: tokio::net::TcpStream, conn: Conn) {
    let peer = conn.peer;
    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(stream, conn).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out."),
    }
}

/// Serves HTTP/1.1 on one accepted connection (plain or TLS).
async fn serve_connection<S>(mut stream: S, conn: Conn)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let prefix = match direct::read_first(&mut stream).await {
        direct::First::Gone => return,
        direct::First::Sse { request, http11 } => {
            let response = Box::pin(sse_response(&request, &conn.state, conn.shutdown)).await;
            drop(request);
            // `conn.watcher` lives until the stream ends.
            if let Err(e) = direct::write_response(&mut stream, response, http11).await {
                tracing::debug!(peer = %conn.peer, error = %e, "SSE connection ended with an error.");
            }
            return;
        }
        direct::First::Other(prefix) => prefix,
    };
    Box::pin(serve_hyper(direct::Rewind::new(prefix, stream), conn)).await
}

/// Serves HTTP/1.1 through hyper.
async fn serve_hyper<S>(stream: S, conn: Conn)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        peer,
        state,
        shutdown,
        watcher,
    } = conn;
    let service = hyper::service::service_fn(move |req| {
        let state = Arc::clone(&state);
        let shutdown = shutdown.clone();
        async move { Ok::<_, Infallible>(handle(req, &state, shutdown, peer).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "Connection ended with an error.");
    }
}

async fn handle(
    req: Request<Incoming>,
    state: &Arc<AppState>,
    shutdown: Shutdown,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let served = state.served();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let admin = state.is_admin(req.headers());
    if segments.first() == Some(&"ui") {
        let query = crate::sources::http::parse_query(req.uri().query().unwrap_or(""));
        // The script and the style sheet hold no data: a page loaded with
        // `?access_token=` fetches them without it.
        let asset = matches!(&segments[1..], ["console.js" | "console.css"]);
        if !asset && let Some(refused) = console::refusal(state, req.headers(), &query, peer) {
            return refused;
        }
        return match (req.method(), &segments[1..]) {
            (&Method::GET, ["status"]) => console::status_stream(Arc::clone(state), shutdown),
            (&Method::GET, ["tap"]) => match console::tap_filter(&query) {
                Ok(filter) => console::tap_stream(state, &served, filter, shutdown),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            (&Method::GET, [] | [""]) => console::asset(""),
            (&Method::GET, [file]) => console::asset(file),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
    }
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["health"]) => health(&served, state.metrics.links(), admin),
        (&Method::GET, ["ready"]) => ready(&served, state.metrics.links()),
        (&Method::GET, ["plugins" | "metrics"]) if !admin => unauthorized("an admin token"),
        (&Method::GET, ["plugins"]) => {
            let list: Vec<_> = served.plugins.values().map(|s| s.status()).collect();
            text(
                StatusCode::OK,
                "application/json",
                serde_json::json!({ "plugins": list }).to_string(),
            )
        }
        (&Method::GET, ["metrics"]) => text(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            state.metrics.render(),
        ),
        (&Method::POST, ["ingest", source]) => match served.ingest.get(*source) {
            Some(handle) => ingest(req, handle).await,
            None => error(
                StatusCode::NOT_FOUND,
                &format!("no http source named `{source}`"),
            ),
        },
        (&Method::GET, ["sse", _]) => sse_response(&req, state, shutdown).await,
        (_, ["health" | "ready" | "metrics" | "plugins"] | ["sse", _]) | (_, ["ingest", _]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found; try /health, /ready, /metrics, /plugins, /ui, /ingest/{source} or /sse/{sink}",
        ),
    }
}

/// `GET /sse/{sink}`, served behind hyper or on the socket (`direct.rs`).
async fn sse_response<B>(
    req: &Request<B>,
    state: &Arc<AppState>,
    shutdown: Shutdown,
) -> Response<Body> {
    let served = state.served();
    let sink = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or("");
    match served.sse.get(sink) {
        Some(hub) => sse::serve(req, hub, shutdown).await,
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no sse sink named `{sink}`"),
        ),
    }
}

/// `/health`: liveness. Its status is open to probes; the routes', tables'
/// and links' detail only to admins, when admin tokens are set.
///
/// `failed` (503) when a route has stopped: a restart may help. `degraded`
/// (200) when a route runs but a component cannot reach its Kafka or Redis:
/// records wait and are retried, and restarting would not bring the server
/// back, so a liveness probe must not fail on it.
fn health(served: &Served, links: &crate::health::Links, admin: bool) -> Response<Body> {
    let (routes, failed) = route_states(served);
    let tables = table_states(served, false);
    let mut down = false;
    let links: serde_json::Map<String, serde_json::Value> = links
        .snapshot()
        .into_iter()
        .map(|(name, view)| {
            let value = match view.state {
                LinkState::Up => serde_json::json!({ "state": "up", "for_secs": view.for_secs }),
                LinkState::Connecting => {
                    serde_json::json!({ "state": "connecting", "for_secs": view.for_secs })
                }
                LinkState::Down(reason) => {
                    down = true;
                    serde_json::json!({ "state": "down", "for_secs": view.for_secs, "error": reason })
                }
            };
            let mut value = value;
            if let Some(object) = value.as_object_mut() {
                if let Some(secs) = view.last_ok_secs_ago {
                    object.insert("last_ok_secs_ago".into(), secs.into());
                }
                if let Some((error, secs)) = view.last_error {
                    object.insert(
                        "last_error".into(),
                        serde_json::json!({ "error": error, "secs_ago": secs }),
                    );
                }
            }
            (name, value)
        })
        .collect();
    let status = if failed {
        "failed"
    } else if down {
        "degraded"
    } else {
        "ok"
    };
    let body = if admin {
        serde_json::json!({ "status": status, "routes": routes, "tables": tables, "links": links })
    } else {
        serde_json::json!({ "status": status })
    }
    .to_string();
    let code = if failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    text(code, "application/json", body)
}

/// Each route's state (`"running"` or `{"failed": reason}`), and whether
/// any has failed.
fn route_states(served: &Served) -> (serde_json::Map<String, serde_json::Value>, bool) {
    let mut failed = false;
    let routes = served
        .routes
        .iter()
        .map(|r| {
            let value = match r.state() {
                RouteState::Running => serde_json::json!("running"),
                RouteState::Failed(reason) => {
                    failed = true;
                    serde_json::json!({ "failed": reason })
                }
            };
            (r.name().to_owned(), value)
        })
        .collect();
    (routes, failed)
}

/// Each table's readiness and size, and its lag when `lag` is set (the
/// console shows it; `/health` keeps its shape).
fn table_states(served: &Served, lag: bool) -> serde_json::Map<String, serde_json::Value> {
    served
        .tables
        .iter()
        .map(|(name, t)| {
            let mut value = serde_json::json!({ "ready": t.is_ready(), "keys": t.len() });
            if lag && let Some(v) = value.as_object_mut() {
                v.insert("lag".into(), t.lag().into());
            }
            (name.clone(), value)
        })
        .collect()
}

/// A `text/event-stream` response streaming `body` (SSE sinks and the
/// console's streams).
fn event_stream_response(
    body: impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>>
    + Send
    + Sync
    + 'static,
) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(body)))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "cannot build response"))
}

/// Readiness, for a load balancer or an orchestrator's readiness probe:
/// whether requests would be served now. A route waiting for its tables
/// keeps its sources closed (ingest answers 503), so this lists what it
/// waits for.
fn ready(served: &Served, links: &crate::health::Links) -> Response<Body> {
    let tables = served
        .tables
        .iter()
        .filter(|(_, t)| !t.is_ready())
        .map(|(name, _)| format!("table `{name}` is loading"));
    let sources = served
        .ingest
        .iter()
        .filter(|(_, h)| !h.is_open())
        .map(|(name, _)| format!("source `{name}` is not open"));
    let routes = served.routes.iter().filter_map(|r| match r.state() {
        RouteState::Running => None,
        RouteState::Failed(reason) => Some(format!("route `{}` stopped: {reason}", r.name())),
    });
    let grace = served.ready_grace.as_secs();
    let down = links
        .snapshot()
        .into_iter()
        .filter_map(|(name, view)| match view.state {
            LinkState::Down(reason) if view.for_secs >= grace => Some(format!(
                "`{name}` cannot reach its server (for {} s): {reason}",
                view.for_secs
            )),
            _ => None,
        });
    let waiting: Vec<String> = tables.chain(sources).chain(routes).chain(down).collect();
    let code = if waiting.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": waiting.is_empty(), "waiting": waiting }).to_string();
    text(code, "application/json", body)
}

async fn ingest(req: Request<Incoming>, handle: &IngestHandle) -> Response<Body> {
    // Before the body is read: a request without a valid token costs
    // nothing and ingests nothing.
    if let Some(tokens) = &handle.tokens
        && !tokens.allow(req.headers())
    {
        return unauthorized("a valid bearer token");
    }
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(handle.max_body).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &IngestError::TooLarge(handle.max_body).to_string(),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}")),
    };
    let records = match parse_request(parts.uri.query(), &parts.headers, body, handle.max_records) {
        Ok(r) => r,
        Err(e @ IngestError::TooMany(_)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string());
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match handle.ingest(records).await {
        Ok(n) => text(
            StatusCode::OK,
            "application/json",
            serde_json::json!({ "records": n }).to_string(),
        ),
        Err(e @ IngestError::Unavailable(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Err(
            e @ (IngestError::BadRequest(_) | IngestError::TooLarge(_) | IngestError::TooMany(_)),
        ) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ IngestError::Failed(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// 401, saying what is needed (`WWW-Authenticate: Bearer`).
fn unauthorized(needed: &str) -> Response<Body> {
    error_with_auth(StatusCode::UNAUTHORIZED, &format!("{needed} is required"))
}

fn error_with_auth(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = error(status, message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"sluice\""),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    text(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}
