//! `guarantee = "exactly_once"`: the route shapes a Kafka transaction can
//! cover, and why the others are refused.
//!
//! One transaction commits the records produced and the offsets consumed,
//! on one cluster. So the source must be Kafka, every sink the route can
//! write to (its ports and its plugins' dead letters) must be Kafka on the
//! same cluster, and every route of that source must be `exactly_once`
//! (they share its consumer group's commits).
//!
//! A `redis_stream` sink with `dedupe = true` recognises redeliveries by
//! their source position, so it must be fed by one route (two routes would
//! write outputs of the same position) from a source whose positions are
//! stable across restarts: Kafka offsets or Redis entry ids, not an
//! `http` or `generator` counter.

use std::collections::BTreeSet;

use super::{Config, Guarantee, OnError};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// Appends the problems of `config`'s `exactly_once` routes to `problems`.
pub(super) fn check(config: &Config, problems: &mut Vec<String>) {
    let mut exact_sources = BTreeSet::new();
    for (name, route) in &config.routes {
        if route.guarantee != Guarantee::ExactlyOnce {
            continue;
        }
        let at = format!("routes.{name}.guarantee");
        exact_sources.insert(route.from.as_str());
        let source = match config.sources.get(&route.from) {
            Some(SourceConfig::Kafka(k)) => Some(k),
            Some(other) => {
                problems.push(format!(
                    "{at}: exactly_once needs a Kafka source, and `sources.{}` is `{}`: only Kafka can commit what was read and what was written in one transaction",
                    route.from,
                    other.type_name()
                ));
                None
            }
            None => None,
        };
        let mut options = None;
        for sink in route_sinks(config, name) {
            match config.sinks.get(sink) {
                Some(SinkConfig::Kafka(k)) => {
                    if let Some(source) = source
                        && k.bootstrap_servers != source.bootstrap_servers
                    {
                        problems.push(format!(
                            "{at}: exactly_once: `sinks.{sink}` writes to `{}` but the source reads `{}`; one Kafka transaction covers one cluster",
                            k.bootstrap_servers, source.bootstrap_servers
                        ));
                    }
                    match &options {
                        None => options = Some((sink, &k.options)),
                        Some((first, o)) if *o != &k.options => problems.push(format!(
                            "{at}: exactly_once: `sinks.{sink}` and `sinks.{first}` set different `options`; their records go through one transactional producer, so they must agree"
                        )),
                        Some(_) => {}
                    }
                }
                Some(other) => problems.push(format!(
                    "{at}: exactly_once needs every sink to be Kafka, and `sinks.{sink}` is `{}`: its writes cannot join the Kafka transaction, so a crash would write them again. Use guarantee = \"at_least_once\", or write to a Kafka topic and move it on from there",
                    other.type_name()
                )),
                None => {}
            }
        }
    }
    for (name, route) in &config.routes {
        if route.guarantee != Guarantee::ExactlyOnce && exact_sources.contains(route.from.as_str())
        {
            problems.push(format!(
                "routes.{name}.guarantee: `sources.{}` also feeds an exactly_once route, and its offsets are committed in that route's transactions; make this route exactly_once too, or give it its own source (another group_id)",
                route.from
            ));
        }
    }
}

/// Appends the problems of `dedupe` sinks to `problems`.
pub(super) fn check_dedupe(config: &Config, problems: &mut Vec<String>) {
    for (sink, sc) in &config.sinks {
        let SinkConfig::RedisStream(r) = sc else {
            continue;
        };
        if !r.dedupe {
            continue;
        }
        let at = format!("sinks.{sink}.dedupe");
        let feeding: Vec<&str> = config
            .routes
            .keys()
            .filter(|route| route_sinks(config, route).contains(sink.as_str()))
            .map(String::as_str)
            .collect();
        if feeding.len() > 1 {
            problems.push(format!(
                "{at}: routes {} all write here; a dedupe sink tells redeliveries apart by source position, so it takes one route (give each route its own sink)",
                feeding.join(", ")
            ));
        }
        for route in feeding {
            let from = &config.routes[route].from;
            match config.sources.get(from) {
                Some(SourceConfig::Kafka(_) | SourceConfig::Redis(_)) | None => {}
                Some(other) => problems.push(format!(
                    "{at}: `routes.{route}` reads `sources.{from}`, which is `{}`; its positions restart with the process, so a dedupe sink would drop new records as duplicates. Dedupe needs a Kafka or Redis source",
                    other.type_name()
                )),
            }
        }
    }
}

/// Every sink route `name` can write to: its ports' sinks, its plugins'
/// dead letters, and its source's dead letter for oversized records.
pub fn route_sinks<'a>(config: &'a Config, name: &str) -> BTreeSet<&'a str> {
    let Some(route) = config.routes.get(name) else {
        return BTreeSet::new();
    };
    let dead = route
        .through
        .iter()
        .filter_map(|p| config.plugins.get(p))
        .filter(|p| p.on_error == OnError::DeadLetter)
        .filter_map(|p| p.dead_letter.as_deref());
    route
        .to
        .all_sinks()
        .map(|(_, s)| s)
        .chain(dead)
        .chain(source_dead_letter(config, &route.from))
        .collect()
}

/// The `dead_letter` sink of source `name`, for records over its
/// `max_record_size`.
pub fn source_dead_letter<'a>(config: &'a Config, name: &str) -> Option<&'a str> {
    config.sources.get(name)?.kind().record_limit()?.1
}
