//! The sink of a Redis-backed state changelog (`state_changelog` on a route
//! with a Redis source): each batch of state changes, records keyed
//! `<plugin>\0<state key>`, becomes one `MULTI`/`EXEC` of HSETs (the new
//! value) and HDELs (a null value: deleted) on the changelog hash, so the
//! hash never holds half a batch.

use std::time::Duration;

use async_trait::async_trait;

use super::{Ack, Sink, SinkBatch, SinkError};
use crate::common::redis::{Connector, RedisUrl};

/// Writes state changes into one hash.
pub(crate) struct StateHashSink {
    name: String,
    conn: Connector,
    hash: String,
}

impl StateHashSink {
    /// The sink `name` writing into `hash` on the server of `url`.
    pub(crate) fn new(
        name: &str,
        url: &RedisUrl,
        hash: &str,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            conn: Connector::new(url, name, Duration::from_secs(10))?.reporting_to(links),
            hash: hash.to_owned(),
        })
    }
}

#[async_trait]
impl Sink for StateHashSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut any = false;
        for record in batch.records() {
            let Some(field) = record.key() else { continue };
            any = true;
            match record.value_opt() {
                Some(value) => pipe.cmd("HSET").arg(&self.hash).arg(field).arg(value),
                None => pipe.cmd("HDEL").arg(&self.hash).arg(field),
            };
        }
        if !any {
            return Ok(super::acked());
        }
        super::redis_send(&mut self.conn, pipe, &self.name).await
    }
}
