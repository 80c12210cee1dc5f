//! Starting a route's state changelog (`[routes.NAME] state_changelog`):
//! its sink, writing through the route's transactional producer on an
//! `exactly_once` route, and the [`Changelog`] its workers restore from.

use std::sync::Arc;

use anyhow::Context as _;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;

use super::unit::Parts;
use crate::common::kafka;
use crate::common::kafka_link::LinkContext;
use crate::config::RouteConfig;
use crate::pipeline::{Changelog, ChangelogParts};
use crate::sinks::kafka::{KafkaSink, KafkaSinkConfig};
use crate::sources::SourceConfig;
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
    let Some(SourceConfig::Kafka(source)) = parts.config.sources.get(&route.from) else {
        anyhow::bail!("routes.{name}.state_changelog: needs a Kafka source");
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
            topic: topic.clone(),
            plugins: route.through.clone(),
            client: kafka::client_config(&bootstrap, &[], &source.options),
            states: parts.imports.states.clone(),
            sink: handle,
        },
        parts.metrics,
    );
    Ok(Some((Arc::new(changelog), task)))
}
