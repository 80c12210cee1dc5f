//! Connections that come back after Redis goes away.
//!
//! Every Redis part talks to Redis through [`Connector`]: it connects on
//! first use, and after an I/O error it drops the connection and reconnects
//! with exponential backoff, so a Redis restart costs a few failed requests
//! (whose records stay unacknowledged) and nothing else.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};

use super::RedisUrl;
use crate::common::Backoff;

/// A connection that is re-established after failures.
pub struct Connector {
    client: redis::Client,
    config: AsyncConnectionConfig,
    conn: Option<MultiplexedConnection>,
    broken: Arc<AtomicBool>,
    backoff: Backoff,
    /// Who uses it, for logs.
    owner: String,
    /// Where it connects, for logs (its password shown as `***`).
    target: String,
    /// Its part of its component's link, for `/health`.
    link: Option<crate::health::LinkPart>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("owner", &self.owner)
            .finish()
    }
}

impl Connector {
    /// A connector for `url`. `response_timeout` bounds every request; a
    /// connection used for `BLOCK` reads needs one longer than the block.
    pub fn new(url: &RedisUrl, owner: &str, response_timeout: Duration) -> anyhow::Result<Self> {
        Self::new_in(url, None, owner, response_timeout)
    }

    /// [`new`](Self::new), on database `db` instead of the URL's when set.
    pub fn new_in(
        url: &RedisUrl,
        db: Option<u32>,
        owner: &str,
        response_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = url.client_in(db)?;
        Ok(Self {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(response_timeout)),
            conn: None,
            broken: Arc::new(AtomicBool::new(false)),
            backoff: Backoff::default(),
            owner: owner.to_owned(),
            target: match db {
                Some(db) => format!("{url} (database {db})"),
                None => url.to_string(),
            },
            link: None,
        })
    }

    /// Reports its state in `links`, as part of the component its owner
    /// names (`"sources.s (acks)"` → `sources.s`).
    pub fn reporting_to(mut self, links: &crate::health::Links) -> Self {
        let component = self.owner.split(' ').next().unwrap_or(&self.owner);
        self.link = Some(links.part(component, &format!("{} {}", self.owner, self.target)));
        self
    }

    /// The database it selects.
    pub fn db(&self) -> u32 {
        u32::try_from(self.client.get_connection_info().redis_settings().db()).unwrap_or(0)
    }

    /// The connection, connecting first if there is none. Fails (after
    /// waiting out the current backoff) when Redis cannot be reached.
    pub async fn get(&mut self) -> Result<MultiplexedConnection, RedisError> {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.conn = None;
        }
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(conn) => {
                if self.backoff.failing() {
                    tracing::info!(owner = %self.owner, "Reconnected to Redis.");
                }
                self.backoff.reset();
                if let Some(link) = &self.link {
                    link.up();
                }
                self.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                let wait = self.backoff.next_wait();
                if let Some(link) = &self.link {
                    link.down(format!("cannot reach {}: {e}", self.target));
                }
                tracing::warn!(owner = %self.owner, redis = %self.target, error = %e, retry_in = ?wait, "Cannot reach Redis.");
                tokio::time::sleep(wait).await;
                Err(e)
            }
        }
    }

    /// Reports the outcome of a request; a connection-level failure drops
    /// the connection so that the next [`Connector::get`] reconnects.
    pub fn check<T>(&mut self, result: &Result<T, RedisError>) {
        if let Err(e) = result
            && is_connection_error(e)
            && self.conn.take().is_some()
        {
            if let Some(link) = &self.link {
                link.down(format!("lost the connection to {}: {e}", self.target));
            }
            tracing::warn!(owner = %self.owner, error = %e, "Lost the Redis connection.");
        }
    }

    /// Waits out the backoff after a failure that [`Connector::check`]
    /// does not cover (a server error that a retry may fix).
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.backoff.next_wait()).await;
    }
}

/// Resolves when Redis has answered a pipeline.
pub type Reply = BoxFuture<'static, Result<(), RedisError>>;

/// Resolves to Redis's replies to a pipeline, one per command.
pub type Replies = BoxFuture<'static, Result<Vec<Value>, RedisError>>;

/// Sends `pipe` and returns what resolves when Redis has answered all of
/// it. The request is queued on the connection before this returns, so
/// pipelines reach Redis in the order they were sent even while several
/// await their replies.
pub async fn send_pipelined(
    conn: &mut Connector,
    pipe: redis::Pipeline,
) -> Result<Reply, RedisError> {
    let replies = send_pipelined_replies(conn, pipe).await?;
    Ok(Box::pin(async move { replies.await.map(drop) }))
}

/// [`send_pipelined`], keeping the replies.
pub async fn send_pipelined_replies(
    conn: &mut Connector,
    pipe: redis::Pipeline,
) -> Result<Replies, RedisError> {
    let mut c = conn.get().await?;
    let broken = Arc::clone(&conn.broken);
    let mut reply: Replies = Box::pin(async move {
        let result = pipe.query_async::<Vec<Value>>(&mut c).await;
        if let Err(e) = &result
            && is_connection_error(e)
        {
            broken.store(true, Ordering::Release);
        }
        result
    });
    // The first poll hands the request to the connection's writer.
    let first = std::future::poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first {
        return Ok(Box::pin(std::future::ready(result)));
    }
    Ok(reply)
}

/// Whether `e` means the connection is gone (as opposed to a refused command).
pub fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
