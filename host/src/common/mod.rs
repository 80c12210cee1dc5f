//! Client code the sources, sinks and tables share, kept apart from all of
//! them so none depends on another: Kafka client settings and the embedded
//! broker ([`kafka`]), what a Kafka client tells `/health` ([`kafka_link`]), Redis connections and the entry ↔ record mapping
//! ([`redis`]), reconnection [`Backoff`], and [`chain`] for reporting a
//! typed error with its causes.

mod backoff;
pub mod kafka;
pub mod kafka_link;
pub mod redis;

pub use backoff::Backoff;

/// `error` and every cause after it, one line (`cannot read x.wasm: No
/// such file or directory`): for logs, status output and config problems,
/// where a typed error's causes would otherwise be lost.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
