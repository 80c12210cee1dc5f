//! The start-up log: where Sluice listens and how to try each part.

use std::net::SocketAddr;

use crate::config::Config;
use crate::sinks;
use crate::sources::SourceConfig;

pub(super) fn announce(config: &Config, addr: SocketAddr) {
    tracing::info!(url = %format!("http://{addr}"), "Sluice is running. Health: /health, metrics: /metrics.");
    for (name, source) in &config.sources {
        match source {
            SourceConfig::Generator(g) => tracing::info!(
                source = %name,
                "Generator emits events for client ids client-0 … client-{}.",
                g.clients.max(1) - 1
            ),
            SourceConfig::Kafka(k) => tracing::info!(
                source = %name,
                topics = ?k.topics,
                group = %k.group_id,
                "Kafka source."
            ),
            SourceConfig::Redis(r) => tracing::info!(
                source = %name,
                streams = ?r.streams,
                pattern = ?r.pattern,
                group = %r.group,
                "Redis streams source."
            ),
            SourceConfig::Http(_) => tracing::info!(
                source = %name,
                "Post records: curl -H 'sluice-key: client-1' -d '{{\"hello\":1}}' http://{addr}/ingest/{name}"
            ),
        }
    }
    for (name, sink) in &config.sinks {
        if let sinks::SinkConfig::Sse(_) = sink {
            tracing::info!(sink = %name, "Watch a client's events: curl -N 'http://{addr}/sse/{name}?client_id=client-1'");
        }
    }
}
