//! Client code the sources, sinks and tables share, kept apart from all of
//! them so none depends on another: Kafka client settings and the embedded
//! broker ([`kafka`]), Redis connections and the entry ↔ record mapping
//! ([`redis`]), and reconnection [`Backoff`].

mod backoff;
pub mod kafka;
pub mod redis;

pub use backoff::Backoff;
