//! The transactional parts of a unit whose routes are `exactly_once`: one
//! transactional producer, and the routes' Kafka sinks writing through it
//! (instead of the shared sinks, which commit nothing). The source commits
//! the producer's transactions; see [`crate::sources::kafka::Transactions`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;

use super::unit::Parts;
use crate::common::kafka::{self, KafkaOptions};
use crate::common::kafka_link::{KafkaLink, LinkContext};
use crate::config::{Guarantee, route_sinks};
use crate::sinks::kafka::{KafkaSink, KafkaSinkConfig, producer_defaults};
use crate::sinks::{SinkConfig, SinkHandle};
use crate::sources::SourceConfig;
use crate::sources::kafka::{Transactions, transactional_id};

/// What [`start`] built for one source.
pub(super) struct Transactional {
    /// What the source commits through.
    pub transactions: Transactions,
    /// The routes' sinks, by name.
    pub sinks: BTreeMap<String, SinkHandle>,
    /// Their tasks, which end once the routes let go of them.
    pub tasks: Vec<JoinHandle<()>>,
}

/// The transactional parts of source `source`, if its routes are
/// `exactly_once` (the config checks guarantee the shape).
pub(super) fn start(source: &str, parts: &Parts<'_>) -> anyhow::Result<Option<Transactional>> {
    let config = parts.config;
    let routes: Vec<&str> = config
        .routes
        .iter()
        .filter(|(_, r)| r.from == source && r.guarantee == Guarantee::ExactlyOnce)
        .map(|(n, _)| n.as_str())
        .collect();
    if routes.is_empty() {
        return Ok(None);
    }
    let Some(SourceConfig::Kafka(k)) = config.sources.get(source) else {
        anyhow::bail!("sources.{source}: exactly_once routes need a Kafka source");
    };
    let names: BTreeSet<&str> = routes.iter().flat_map(|r| route_sinks(config, r)).collect();
    let mut sinks: Vec<(&str, &KafkaSinkConfig)> = Vec::new();
    for name in names {
        match config.sinks.get(name) {
            Some(SinkConfig::Kafka(s)) => sinks.push((name, s)),
            _ => anyhow::bail!("sinks.{name}: an exactly_once route writes only to Kafka"),
        }
    }
    let (_, first) = sinks
        .first()
        .copied()
        .with_context(|| format!("sources.{source}: its exactly_once routes name no sink"))?;
    let id = transactional_id(&k.group_id, &routes.join("+"), &config.server.instance());
    let bootstrap =
        kafka::resolve(&k.bootstrap_servers, parts.embedded).map_err(anyhow::Error::msg)?;
    let mut defaults = producer_defaults(first);
    defaults.push(("transactional.id", id.clone()));
    // An open transaction of a crashed instance that does not come back
    // blocks `read_committed` readers this long.
    defaults.push((
        "transaction.timeout.ms",
        first.delivery_timeout.0.as_millis().to_string(),
    ));
    // The source's connection settings (security), then the sinks'.
    let mut options = KafkaOptions::default();
    options.0.extend(k.options.0.clone());
    options.0.extend(first.options.0.clone());
    let producer: FutureProducer<LinkContext> =
        kafka::client_config(&bootstrap, &defaults, &options)
            .create_with_context(LinkContext(KafkaLink::new(
                parts.metrics.links(),
                &format!("sources.{source}.transactions"),
            )))
            .with_context(|| {
                format!("sources.{source}: cannot create the transactional producer")
            })?;
    let mut handles = BTreeMap::new();
    let mut tasks = Vec::new();
    for (name, sink_config) in sinks {
        let sink = KafkaSink::with_producer(name, sink_config, producer.clone());
        let (handle, task) = crate::sinks::spawn(name, Box::new(sink), parts.metrics);
        handles.insert(name.to_owned(), handle);
        tasks.push(task);
    }
    Ok(Some(Transactional {
        transactions: Transactions { producer, id },
        sinks: handles,
        tasks,
    }))
}
