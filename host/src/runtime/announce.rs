//! The start-up log: where Sluice listens and how to try each part.

use std::net::SocketAddr;

use crate::config::Config;

pub(super) fn announce(config: &Config, addr: SocketAddr) {
    tracing::info!(url = %format!("http://{addr}"), "Sluice is running. Health: /health, metrics: /metrics.");
    for (name, source) in &config.sources {
        source.kind().announce(name, addr);
    }
    for (name, sink) in &config.sinks {
        sink.kind().announce(name, addr);
    }
}
