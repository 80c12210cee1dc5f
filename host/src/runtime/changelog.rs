//! Starting a route's state changelog (`[routes.NAME] state_changelog`):
//! its sink, writing through the route's transactional producer on an
//! `exactly_once` route, and the [`Changelog`] its workers restore from.
//! A route with a Redis source keeps it in a hash on the source's server.

use std::sync::Arc;

use anyhow::Context as _;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;

use super::unit::Parts;
use crate::common::kafka;
use crate::common::kafka_link::LinkContext;
use crate::config::RouteConfig;
use crate::pipeline::{Changelog, ChangelogParts, ChangelogStore};
use crate::sinks::kafka::{KafkaSink, KafkaSinkConfig};
use crate::sinks::state_hash::StateHashSink;
use crate::sources::{RedisSourceConfig, SourceConfig};
use crate::template::Template;

/// The changelog of route `name`, if it has one, and its sink's task.
/// `transactional`: the producer of the route's `exactly_once` source.
pub(super) fn start(
    name: &str,
    route: &RouteConfig,
    parts: &Parts<'_>,
    transactional: Option<&FutureProducer<LinkContext>>,
) -> anyhow::Result<Option<(Arc<Changelog>, JoinHandle<()>)>> {
    let Some(topic) = &route.state_changelog else {
        return Ok(None);
    };
    let source = match parts.config.sources.get(&route.from) {
        Some(SourceConfig::Kafka(source)) => source,
        Some(SourceConfig::Redis(source)) => return start_hash(name, route, topic, source, parts),
        _ => anyhow::bail!("routes.{name}.state_changelog: needs a Kafka or Redis source"),
    };
    let sink_config = KafkaSinkConfig {
        bootstrap_servers: source.bootstrap_servers.clone(),
        topic: Some(Template::parse(topic).map_err(anyhow::Error::msg)?),
        topic_map: Vec::new(),
        key: None,
        delivery_timeout: crate::config::defaults::kafka_sink_delivery_timeout(),
        options: source.options.clone(),
    };
    let sink_name = format!("routes.{name}.state_changelog");
    let sink = match transactional {
        Some(producer) => KafkaSink::with_producer(&sink_name, &sink_config, producer.clone()),
        None => KafkaSink::new(
            &sink_name,
            &sink_config,
            parts.embedded,
            parts.metrics.links(),
        )
        .with_context(|| format!("cannot create the producer of {sink_name}"))?,
    }
    .by_origin_partition();
    let (handle, task) = crate::sinks::spawn(&sink_name, Box::new(sink), parts.metrics);
    let bootstrap =
        kafka::resolve(&source.bootstrap_servers, parts.embedded).map_err(anyhow::Error::msg)?;
    let changelog = Changelog::new(
        ChangelogParts {
            route: name.to_owned(),
            store: ChangelogStore::Kafka {
                topic: topic.clone(),
                client: kafka::client_config(&bootstrap, &[], &source.options),
            },
            plugins: route.through.clone(),
            states: parts.imports.states.clone(),
            sink: handle,
        },
        parts.metrics,
    );
    Ok(Some((Arc::new(changelog), task)))
}

/// The changelog of route `name`, whose source is Redis: hash `hash` on the
/// source's server (its URL, so its TLS, credentials and database).
fn start_hash(
    name: &str,
    route: &RouteConfig,
    hash: &str,
    source: &RedisSourceConfig,
    parts: &Parts<'_>,
) -> anyhow::Result<Option<(Arc<Changelog>, JoinHandle<()>)>> {
    let sink_name = format!("routes.{name}.state_changelog");
    let sink = StateHashSink::new(&sink_name, &source.url, hash, parts.metrics.links())
        .with_context(|| format!("cannot create the client of {sink_name}"))?;
    let (handle, task) = crate::sinks::spawn(&sink_name, Box::new(sink), parts.metrics);
    let changelog = Changelog::new(
        ChangelogParts {
            route: name.to_owned(),
            store: ChangelogStore::Redis {
                hash: hash.to_owned(),
                client: source.url.client()?,
            },
            plugins: route.through.clone(),
            states: parts.imports.states.clone(),
            sink: handle,
        },
        parts.metrics,
    );
    Ok(Some((Arc::new(changelog), task)))
}
