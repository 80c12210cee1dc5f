//! Waiting for full routes without leaving the group.
//!
//! librdkafka throws a member out of its group when the application has not
//! polled for `max.poll.interval.ms` (5 minutes by default): its partitions
//! go to another member (or back to it after a rejoin) and everything in
//! flight is read again. A source that simply waited while its routes were
//! full (a sink down, say) would hit that. So the source hands a batch to
//! the routes as a future it polls alongside the consumer: while the
//! routes take it, the source reads nothing more; once that has lasted
//! [`Stall::pause_after`], it pauses its partitions and goes on polling
//! (which serves heartbeats and rebalances, and returns no messages), and
//! resumes them when the routes have taken the batch.
//!
//! Pausing drops what librdkafka had prefetched for those partitions and
//! resuming fetches again from the last record read, so nothing is skipped;
//! short waits never pause, as refetching for each would cost more than the
//! wait.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use tokio::time::Instant;

/// How long a stall lasts before the partitions are paused, at most.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// A batch being handed to the routes.
pub(super) type Handing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The hand-over in progress, if the routes did not take the batch at once.
pub(super) struct Stall {
    handing: Handing,
    since: Instant,
    paused: bool,
}

impl Stall {
    /// Starts handing over: `None` if the routes took the batch at once.
    pub(super) async fn begin(mut handing: Handing) -> Option<Self> {
        let done = std::future::poll_fn(|cx| Poll::Ready(handing.as_mut().poll(cx).is_ready()));
        if done.await {
            return None;
        }
        Some(Self {
            handing,
            since: Instant::now(),
            paused: false,
        })
    }

    /// Resolves when the routes have taken the batch.
    pub(super) async fn taken(this: &mut Option<Self>) {
        match this {
            Some(stall) => stall.handing.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Whether the partitions are paused (so polling returns no records
    /// and is safe while the routes are full).
    pub(super) fn paused(this: &Option<Self>) -> bool {
        this.as_ref().is_some_and(|s| s.paused)
    }

    /// How long a stall may last before pausing, for a group whose
    /// `max.poll.interval.ms` is `max_poll`: well within it.
    pub(super) fn pause_after(max_poll: Duration) -> Duration {
        PAUSE_AFTER.min(max_poll / 3)
    }

    /// Pauses the current assignment once the stall has lasted `after`
    /// (once: the ticks that follow do nothing).
    pub(super) fn pause_if_due<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        after: Duration,
        source: &str,
    ) {
        if !self.paused && self.since.elapsed() >= after {
            self.pause(consumer, source);
        }
    }

    /// Pauses the current assignment now. Also for a record that arrived
    /// while paused: it came from a partition assigned since, which is not
    /// paused yet.
    pub(super) fn pause<C: ConsumerContext>(&mut self, consumer: &StreamConsumer<C>, source: &str) {
        match consumer.assignment() {
            Ok(assignment) => match consumer.pause(&assignment) {
                Ok(()) => {
                    if !self.paused {
                        tracing::info!(%source, waited = ?self.since.elapsed(), "Routes are full; pausing the partitions (the group membership is kept).");
                    }
                    self.paused = true;
                }
                Err(e) => {
                    tracing::warn!(%source, error = %e, "Cannot pause the partitions.");
                }
            },
            Err(e) => tracing::warn!(%source, error = %e, "Cannot read the assignment."),
        }
    }

    /// Waits until the routes have taken the batch, then ends the stall.
    pub(super) async fn finish<C: ConsumerContext>(
        mut self,
        consumer: &StreamConsumer<C>,
        source: &str,
    ) {
        self.handing.as_mut().await;
        self.end(consumer, source, |_, _| false);
    }

    /// Ends the stall: resumes the partitions if they were paused, except
    /// those `held` (waiting to be read again, see `rewind`).
    pub(super) fn end<C: ConsumerContext>(
        self,
        consumer: &StreamConsumer<C>,
        source: &str,
        held: impl Fn(&str, i32) -> bool,
    ) {
        if !self.paused {
            return;
        }
        let resumed = consumer.assignment().and_then(|assignment| {
            let mut resume = TopicPartitionList::new();
            for e in assignment.elements() {
                if !held(e.topic(), e.partition()) {
                    resume.add_partition(e.topic(), e.partition());
                }
            }
            consumer.resume(&resume)
        });
        match resumed {
            Ok(()) => {
                tracing::info!(%source, waited = ?self.since.elapsed(), "Routes took the batch; partitions resumed.");
            }
            Err(e) => tracing::warn!(%source, error = %e, "Cannot resume the partitions."),
        }
    }
}
