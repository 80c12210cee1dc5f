//! The embedded Kafka broker, for configs that name `"embedded"`.

use crate::config::Config;
use crate::kafka::{EMBEDDED, EMBEDDED_PARTITIONS, EmbeddedKafka};
use crate::sinks;
use crate::sources::SourceConfig;
use crate::tables::TableConfig;

/// Makes sure the embedded broker runs if any Kafka part names it, with
/// the topics the config names, so consumers find them at once. Returns a
/// broker it had to start; topics are created on `running` if one runs.
pub(super) fn ensure_embedded(
    config: &Config,
    running: Option<&EmbeddedKafka>,
) -> anyhow::Result<Option<EmbeddedKafka>> {
    let mut topics = Vec::new();
    let mut wanted = false;
    for source in config.sources.values() {
        if let SourceConfig::Kafka(k) = source
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.extend(k.topics.iter().filter(|t| !t.starts_with('^')).cloned());
        }
    }
    for table in config.tables.values() {
        if let TableConfig::Kafka(k) = table
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.push(k.topic.clone());
        }
    }
    for sink in config.sinks.values() {
        if let sinks::SinkConfig::Kafka(k) = sink
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.extend(k.topic.fixed().map(str::to_owned));
        }
    }
    if !wanted {
        return Ok(None);
    }
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
