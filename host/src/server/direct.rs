//! SSE connections served on the socket itself, without hyper's buffers.
//!
//! An SSE connection lives for minutes or hours and, once its response
//! head is out, only writes. hyper keeps an 8 KiB read buffer and an 8 KiB
//! header write buffer for the whole life of every connection (its minimum;
//! `max_buf_size` cannot go lower), which was most of the ~20 KiB an idle
//! SSE client cost. So the first request on a connection is read here into
//! a small buffer and parsed with `httparse`:
//!
//! - a plain `GET /sse/{sink}` (no body, nothing pipelined behind it) is
//!   answered here: the same handler as behind hyper (`sse::serve`) builds
//!   the response, and [`write_response`] sends its head and then its body
//!   frames as they come, chunked, with `Connection: close`. A client that
//!   goes away is seen by a small read beside the writes; a client that
//!   stops reading is cut off after [`STALLED_WRITE`];
//! - anything else goes to hyper, which reads the bytes already taken
//!   first ([`Rewind`]).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Body as _;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a client may take to send its first request head.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A write the client does not take within this long ends the connection
/// (a client that stopped reading, or a dead peer with a full window).
pub(super) const STALLED_WRITE: Duration = Duration::from_secs(30);
/// The longest request head read here; a longer one goes to hyper, which
/// has its own limit.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers parsed here; more go to hyper.
const MAX_HEADERS: usize = 32;
/// Events already queued are written together, up to this many bytes.
const COALESCE: usize = 16 * 1024;

/// What the first read of a connection found.
pub(super) enum First {
    /// A `GET /sse/...` to answer here, and whether the client spoke
    /// HTTP/1.1 (chunked) or 1.0 (the body ends with the connection).
    Sse {
        request: Box<Request<()>>,
        http11: bool,
    },
    /// Anything else, for hyper: the bytes read so far.
    Other(Bytes),
    /// The client sent nothing usable in time, or went away.
    Gone,
}

/// Reads the first request head of a connection and decides who serves it.
pub(super) async fn read_first<S: AsyncRead + Unpin>(stream: &mut S) -> First {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::time::timeout(HEAD_TIMEOUT, stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) if buf.is_empty() => return First::Gone,
            Ok(Ok(0)) => return First::Other(buf.freeze()),
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return First::Gone,
        }
        match parse_sse_head(&buf) {
            Parsed::Sse { request, http11 } => return First::Sse { request, http11 },
            Parsed::Partial if buf.len() < MAX_HEAD => {
                if buf.capacity() == buf.len() {
                    buf.reserve(buf.len());
                }
            }
            Parsed::Partial | Parsed::Other => return First::Other(buf.freeze()),
        }
    }
}

enum Parsed {
    Sse {
        request: Box<Request<()>>,
        http11: bool,
    },
    Partial,
    Other,
}

/// Whether `buf` holds exactly one complete `GET /sse/...` request head
/// with no body: anything unusual (a body, an upgrade, pipelined bytes,
/// too many headers) is left to hyper.
fn parse_sse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("GET"), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    // The same segments as the router's match on `["sse", sink]`.
    let route = path.split('?').next().unwrap_or("");
    let mut segments = route.trim_matches('/').split('/');
    let is_sse =
        segments.next() == Some("sse") && segments.next().is_some() && segments.next().is_none();
    if len != buf.len() || !is_sse {
        return Parsed::Other;
    }
    let mut builder = Request::builder()
        .method("GET")
        .uri(path)
        .version(if version == 1 {
            hyper::Version::HTTP_11
        } else {
            hyper::Version::HTTP_10
        });
    for h in req.headers.iter() {
        let unusual = ["content-length", "transfer-encoding", "upgrade", "expect"];
        if unusual.iter().any(|u| h.name.eq_ignore_ascii_case(u)) {
            return Parsed::Other;
        }
        builder = builder.header(h.name, h.value);
    }
    match builder.body(()) {
        Ok(request) => Parsed::Sse {
            request: Box::new(request),
            http11: version == 1,
        },
        Err(_) => Parsed::Other,
    }
}

/// Writes `response` to `stream` and closes it: the head, then each body
/// frame as it comes (chunked for HTTP/1.1, up to the close for 1.0),
/// until the body ends, the client goes away or stops reading.
pub(super) async fn write_response<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response<BoxBody<Bytes, Infallible>>,
    http11: bool,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let length = body.size_hint().exact();
    let chunked = http11 && length.is_none();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(n) = length {
        head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
    } else if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    write(stream, &head).await?;
    drop(head);

    // Bytes the client sends from now on are read and dropped: the read
    // is how a closed connection is noticed while no event is due.
    let mut scratch = [0u8; 64];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        let Some(Ok(first)) = frame else { break };
        let Ok(first) = first.into_data() else {
            continue;
        };
        // What else is ready now goes out in the same write.
        let mut out = BytesMut::new();
        let mut ended = false;
        frame_into(&mut out, first, chunked);
        while out.len() < COALESCE {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        frame_into(&mut out, data, chunked);
                    }
                }
                Some(_) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        write(stream, &out).await?;
        if ended {
            break;
        }
    }
    if chunked {
        write(stream, b"0\r\n\r\n").await?;
    }
    let _ = tokio::time::timeout(STALLED_WRITE, stream.shutdown()).await;
    Ok(())
}

/// Appends `data` to `out`, as a chunk when `chunked`.
fn frame_into(out: &mut BytesMut, data: Bytes, chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        // Into the buffer itself: no allocation per event.
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(&data);
    }
}

/// Writes and flushes `bytes`, or fails after [`STALLED_WRITE`].
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    let sent = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(STALLED_WRITE, sent).await {
        Ok(done) => done,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no bytes for too long",
        )),
    }
}

/// A stream that yields `prefix` before reading from `inner`: hyper gets
/// the bytes [`read_first`] already took.
pub(super) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let the first read's buffer go.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_get_of_an_sse_path_is_taken() {
        let sse = |raw: &str| matches!(parse_sse_head(raw.as_bytes()), Parsed::Sse { .. });
        assert!(sse(
            "GET /sse/notify?client_id=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-0\r\n\r\n"
        ));
        assert!(sse("GET /sse/notify?client_id=a HTTP/1.0\r\n\r\n"));
        // Not SSE, a body, an upgrade, pipelined bytes: hyper's.
        assert!(!sse("GET /health HTTP/1.1\r\n\r\n"));
        assert!(!sse("GET /sse/a/b HTTP/1.1\r\n\r\n"));
        assert!(!sse(
            "POST /sse/notify HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!sse(
            "GET /sse/notify HTTP/1.1\r\ncontent-length: 2\r\n\r\nab"
        ));
        assert!(!sse(
            "GET /sse/notify HTTP/1.1\r\nupgrade: websocket\r\n\r\n"
        ));
        assert!(!sse(
            "GET /sse/notify HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n"
        ));
        assert!(!sse("GET /sse/notify HTTP/1.1\r\nbad header\r\n\r\n"));
        assert!(matches!(
            parse_sse_head(b"GET /sse/notify HTTP/1.1\r\nHost:"),
            Parsed::Partial
        ));
    }

    #[test]
    fn frames_are_chunked_for_http11_only() {
        let mut out = BytesMut::new();
        frame_into(&mut out, Bytes::from_static(b"data: x\n\n"), true);
        frame_into(&mut out, Bytes::new(), true);
        assert_eq!(&out[..], b"9\r\ndata: x\n\n\r\n");
        let mut out = BytesMut::new();
        frame_into(&mut out, Bytes::from_static(b"data: x\n\n"), false);
        assert_eq!(&out[..], b"data: x\n\n");
    }
}
