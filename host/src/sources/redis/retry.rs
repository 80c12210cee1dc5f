//! Reading failed deliveries again, after a backoff.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// Failed deliveries, read again after a backoff (100 ms doubling to 5 s)
/// instead of waiting for `claim_idle`: while a sink is down (Kafka for
/// minutes, say) its entries stay pending, never dropped, and are sent
/// again until the sink takes them.
pub(super) struct Retry {
    pub(super) rx: mpsc::UnboundedReceiver<String>,
    pub(super) streams: BTreeSet<String>,
    pub(super) at: Option<Instant>,
    pub(super) backoff: crate::common::Backoff,
    pub(super) last_failure: Instant,
}

impl Retry {
    /// Takes the failures reported since the last call and returns the
    /// streams whose backoff is over (their pending entries are to be read
    /// again from the start).
    pub(super) fn due(&mut self, now: Instant) -> Vec<String> {
        while let Ok(stream) = self.rx.try_recv() {
            self.streams.insert(stream);
            self.last_failure = now;
        }
        if self.streams.is_empty() {
            // Quiet for a while: the next failure starts from a short wait.
            if now.saturating_duration_since(self.last_failure) > Duration::from_secs(30) {
                self.backoff.reset();
            }
            return Vec::new();
        }
        let at = *self
            .at
            .get_or_insert_with(|| now + self.backoff.next_wait());
        if now < at {
            return Vec::new();
        }
        self.at = None;
        std::mem::take(&mut self.streams).into_iter().collect()
    }
}
