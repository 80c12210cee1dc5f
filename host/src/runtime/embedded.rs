//! The embedded Kafka broker, for configs that name `"embedded"`.

use crate::common::kafka::{EMBEDDED_PARTITIONS, EmbeddedKafka};
use crate::config::Config;

/// Makes sure the embedded broker runs if any Kafka part names it, with
/// the topics the config names, so consumers find them at once. Returns a
/// broker it had to start; topics are created on `running` if one runs.
pub(super) fn ensure_embedded(
    config: &Config,
    running: Option<&EmbeddedKafka>,
) -> anyhow::Result<Option<EmbeddedKafka>> {
    let wanted: Vec<Vec<String>> = config
        .sources
        .values()
        .filter_map(|s| s.kind().embedded_topics())
        .chain(
            config
                .tables
                .values()
                .filter_map(|t| t.kind().embedded_topics()),
        )
        .chain(
            config
                .sinks
                .values()
                .filter_map(|s| s.kind().embedded_topics()),
        )
        .chain(config.routes.values().filter_map(|r| {
            // A changelog lives on its source's cluster.
            let topic = r.state_changelog.clone()?;
            config
                .sources
                .get(&r.from)?
                .kind()
                .embedded_topics()
                .map(|_| vec![topic])
        }))
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut topics: Vec<String> = wanted.into_iter().flatten().collect();
    topics.sort();
    topics.dedup();
    if let Some(broker) = running {
        for topic in &topics {
            broker
                .create_topic(topic, EMBEDDED_PARTITIONS)
                .map_err(anyhow::Error::msg)?;
        }
        return Ok(None);
    }
    let broker = EmbeddedKafka::start().map_err(anyhow::Error::msg)?;
    for topic in &topics {
        broker
            .create_topic(topic, EMBEDDED_PARTITIONS)
            .map_err(anyhow::Error::msg)?;
    }
    tracing::info!(bootstrap = %broker.bootstrap_servers(), ?topics, "Embedded Kafka broker (librdkafka mock cluster) is up; other Kafka clients on this machine can use it.");
    Ok(Some(broker))
}
