//! The ack path: knowing when every sink has a source batch's records.
//!
//! A source batch gets one [`BatchAck`]. Everything that must finish before
//! the batch may be acknowledged at its source (processing, and each delivery
//! to each sink) holds a [`Pending`]. When the last `Pending` resolves, the
//! source's callback runs once, with success only if every one succeeded.
//! A `Pending` dropped without resolving counts as failed, so work that is
//! abandoned (a crashed task, a closed channel) can never be acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How a source batch ended.
pub type AckResult = Result<(), String>;

type Callback = Box<dyn FnOnce(AckResult) + Send>;

struct State {
    pending: AtomicUsize,
    done: Mutex<Done>,
}

struct Done {
    first_error: Option<String>,
    callback: Option<Callback>,
}

/// Tracks one source batch until everything it produced is delivered.
#[derive(Clone)]
pub struct BatchAck(Arc<State>);

impl std::fmt::Debug for BatchAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAck")
            .field("pending", &self.0.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl BatchAck {
    /// A tracker that calls `on_done` once everything it hands out resolves.
    /// Returns the tracker and the first hold, which the caller resolves when
    /// it has handed out every other hold it needs.
    pub fn new(on_done: impl FnOnce(AckResult) + Send + 'static) -> (Self, Pending) {
        let ack = Self(Arc::new(State {
            pending: AtomicUsize::new(0),
            done: Mutex::new(Done {
                first_error: None,
                callback: Some(Box::new(on_done)),
            }),
        }));
        let hold = ack.hold();
        (ack, hold)
    }

    /// A tracker nobody waits for (for sources that need no acknowledgement).
    pub fn detached() -> (Self, Pending) {
        Self::new(|_| {})
    }

    /// One more thing that must resolve before the batch is done.
    pub fn hold(&self) -> Pending {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
        Pending(Some(Arc::clone(&self.0)))
    }
}

/// One thing a source batch waits for. Resolve it with [`Pending::ok`] or
/// [`Pending::fail`]; dropping it unresolved fails it.
#[must_use = "an unresolved Pending fails its batch when dropped"]
pub struct Pending(Option<Arc<State>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl Pending {
    /// This part succeeded.
    pub fn ok(mut self) {
        if let Some(state) = self.0.take() {
            resolve(&state, None);
        }
    }

    /// This part failed; the batch will not be acknowledged.
    pub fn fail(mut self, reason: impl Into<String>) {
        if let Some(state) = self.0.take() {
            resolve(&state, Some(reason.into()));
        }
    }

    /// Another hold on the same batch.
    pub fn hold(&self) -> Pending {
        match &self.0 {
            Some(state) => BatchAck(Arc::clone(state)).hold(),
            None => Pending(None),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            resolve(&state, Some("delivery abandoned before it finished".into()));
        }
    }
}

fn resolve(state: &State, error: Option<String>) {
    let mut done = match state.done.lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(e) = error {
        done.first_error.get_or_insert(e);
    }
    if state.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        let result = match done.first_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if let Some(callback) = done.callback.take() {
            drop(done);
            callback(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn tracked() -> (BatchAck, Pending, mpsc::Receiver<AckResult>) {
        let (tx, rx) = mpsc::channel();
        let (ack, hold) = BatchAck::new(move |r| tx.send(r).unwrap());
        (ack, hold, rx)
    }

    #[test]
    fn fires_once_after_every_hold_resolves() {
        let (ack, processing, rx) = tracked();
        let a = ack.hold();
        let b = ack.hold();
        processing.ok();
        a.ok();
        assert!(rx.try_recv().is_err(), "fired before the last delivery");
        b.ok();
        assert_eq!(rx.try_recv().unwrap(), Ok(()));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_failure_or_a_drop_fails_the_batch() {
        let (ack, processing, rx) = tracked();
        let a = ack.hold();
        let b = ack.hold();
        processing.ok();
        a.fail("sink down");
        drop(b);
        assert_eq!(rx.try_recv().unwrap(), Err("sink down".into()));

        let (_ack, processing, rx) = tracked();
        drop(processing);
        assert!(rx.try_recv().unwrap().is_err());
    }

    #[test]
    fn filtered_batches_are_done_at_once() {
        let (_ack, processing, rx) = tracked();
        processing.ok();
        assert_eq!(rx.try_recv().unwrap(), Ok(()));
    }
}
