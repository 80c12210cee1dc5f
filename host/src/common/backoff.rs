//! Exponential backoff between reconnection attempts.

use std::time::Duration;

/// Exponential backoff: 100 ms doubling to 5 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(6));
        self.failures = self.failures.saturating_add(1);
        wait.min(Duration::from_secs(5))
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
