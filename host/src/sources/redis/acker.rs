//! XACK for delivered batches, on a connection of its own (the reader's is
//! busy blocking), retried until Redis takes it.
//!
//! A batch stays "in flight" until its XACK succeeded (or it failed), so a
//! pending re-read or claim never hands the reader an entry this process is
//! still working on, including one delivered but not yet acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis::Value;
use tokio::sync::mpsc;

use crate::common::redis::{Connector, EntryId};
use crate::metrics::Counter;
use crate::pipeline::AckResult;

/// Id ranges of the batches in flight, per stream.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    streams: HashMap<String, BTreeMap<(EntryId, u64), EntryId>>,
    next_token: u64,
}

impl InFlight {
    /// Records a batch of `ids` (in id order) of `stream` as in flight.
    pub(super) fn begin(&mut self, stream: &str, ids: &[EntryId]) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            self.streams
                .entry(stream.to_owned())
                .or_default()
                .insert((*first, token), *last);
        }
        token
    }

    /// Whether `id` falls within a batch in flight. A range may span ids of
    /// other batches (claims are sparse); such an entry is skipped now and
    /// claimed again later, which errs on the side of no duplicates.
    pub(super) fn contains(&self, stream: &str, id: EntryId) -> bool {
        self.streams.get(stream).is_some_and(|ranges| {
            ranges
                .range(..=(id, u64::MAX))
                .any(|(&(first, _), &last)| first <= id && id <= last)
        })
    }

    fn end(&mut self, stream: &str, ids: &[EntryId], token: u64) {
        if let (Some(first), Some(ranges)) = (ids.first(), self.streams.get_mut(stream)) {
            ranges.remove(&(*first, token));
            if ranges.is_empty() {
                self.streams.remove(stream);
            }
        }
    }
}

/// A batch that reached the end of the ack path.
#[derive(Debug)]
pub(super) struct Completion {
    pub(super) stream: String,
    pub(super) ids: Vec<EntryId>,
    /// The in-flight token; `None` for entries that were deleted.
    pub(super) token: Option<u64>,
    pub(super) result: AckResult,
}

impl Completion {
    /// Entries deleted while pending: only to be acknowledged.
    pub(super) fn deleted(stream: &str, ids: Vec<EntryId>) -> Self {
        Self {
            stream: stream.to_owned(),
            ids,
            token: None,
            result: Ok(()),
        }
    }
}

/// Acknowledges completions until every sender is gone and every ack is
/// sent (or, while Redis is away at shutdown, abandoned: those entries stay
/// pending and are re-read at the next start).
pub(super) async fn run(
    mut conn: Connector,
    (group, on_ack): (String, super::OnAck),
    mut rx: mpsc::UnboundedReceiver<Completion>,
    in_flight: Arc<Mutex<InFlight>>,
    (acked, failures): (Counter, Counter),
    retry: mpsc::UnboundedSender<String>,
    source: String,
) {
    let mut queue: Vec<Completion> = Vec::new();
    let mut open = true;
    loop {
        if queue.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(c) => queue.push(c),
                None => return,
            }
        }
        // Take whatever else is ready, to XACK it in one round trip.
        while open && queue.len() < 4096 {
            match rx.try_recv() {
                Ok(c) => queue.push(c),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let mut failed = Vec::new();
        queue.retain_mut(|c| match &c.result {
            Ok(()) => true,
            Err(e) => {
                failures.add(1);
                tracing::error!(%source, stream = %c.stream, entries = c.ids.len(), error = %e, "Batch not delivered; its entries stay pending and are read again after a backoff.");
                let _ = retry.send(c.stream.clone());
                failed.push((std::mem::take(&mut c.stream), std::mem::take(&mut c.ids), c.token));
                false
            }
        });
        finish(
            &in_flight,
            failed
                .iter()
                .map(|(s, i, t)| (s.as_str(), i.as_slice(), *t)),
        );
        if queue.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for c in &queue {
            let ids: Vec<String> = c.ids.iter().map(ToString::to_string).collect();
            pipe.cmd("XACK").arg(&c.stream).arg(&group).arg(&ids);
            // After the XACK, in the same round trip; a retry after a
            // failure repeats both, which is harmless (0 acked, 0 deleted).
            if on_ack == super::OnAck::Xdel {
                pipe.cmd("XDEL").arg(&c.stream).arg(&ids);
            }
        }
        let result = match conn.get().await {
            Ok(mut c) => pipe.query_async::<Vec<Value>>(&mut c).await,
            Err(e) => Err(e),
        };
        conn.check(&result);
        match result {
            Ok(_) => {
                acked.add(queue.iter().map(|c| c.ids.len() as u64).sum());
                let done = std::mem::take(&mut queue);
                finish(
                    &in_flight,
                    done.iter()
                        .map(|c| (c.stream.as_str(), c.ids.as_slice(), c.token)),
                );
            }
            Err(e) => {
                tracing::warn!(%source, error = %e, batches = queue.len(), "XACK failed; retrying.");
                // A lost connection waits in `conn.get()`; anything else
                // (a server error) waits here, so a retry never spins.
                if !crate::common::redis::is_connection_error(&e) {
                    conn.pause().await;
                }
            }
        }
    }
}

fn finish<'a>(
    in_flight: &Mutex<InFlight>,
    done: impl Iterator<Item = (&'a str, &'a [EntryId], Option<u64>)>,
) {
    let mut in_flight = in_flight.lock().unwrap_or_else(|p| p.into_inner());
    for (stream, ids, token) in done {
        if let Some(token) = token {
            in_flight.end(stream, ids, token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn in_flight_ranges_cover_their_ids_until_ended() {
        let mut f = InFlight::default();
        let ids = [id(5), id(7), id(9)];
        let t = f.begin("s", &ids);
        assert!(f.contains("s", id(5)) && f.contains("s", id(9)) && f.contains("s", id(6)));
        assert!(!f.contains("s", id(4)) && !f.contains("s", id(10)) && !f.contains("t", id(5)));
        let t2 = f.begin("s", &[id(20)]);
        f.end("s", &ids, t);
        assert!(!f.contains("s", id(7)));
        assert!(f.contains("s", id(20)));
        f.end("s", &[id(20)], t2);
        assert!(f.streams.is_empty());
    }
}
