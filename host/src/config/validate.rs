//! Checks that span sections: names that refer to other names, and rules no
//! single item can check alone. Each kind's own checks are its
//! `problems` (see [`crate::kinds`]); this file only calls them.

use std::collections::BTreeSet;

use super::{Config, OnError};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// Appends every cross-reference problem in `config` to `problems`. A name
/// in `broken` (`sources.in`: an item whose own problems were already
/// reported) is not reported again where it is referred to.
pub(super) fn check(config: &Config, broken: &BTreeSet<String>, problems: &mut Vec<String>) {
    let is_broken = |section: &str, name: &str| broken.contains(&format!("{section}.{name}"));
    let sink_names = || {
        config
            .sinks
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, plugin) in &config.plugins {
        let at = format!("plugins.{name}");
        if plugin.source().is_none() {
            problems.push(format!("{at}: set exactly one of `path` (a .wasm file) and `crate` (a plugin crate to build)"));
        }
        match (plugin.on_error, &plugin.dead_letter) {
            (OnError::DeadLetter, None) => problems.push(format!(
                "{at}.dead_letter: on_error = \"dead_letter\" needs `dead_letter = \"<sink name>\"`"
            )),
            (OnError::DeadLetter, Some(sink))
                if !config.sinks.contains_key(sink) && !is_broken("sinks", sink) =>
            {
                problems.push(format!(
                    "{at}.dead_letter: no sink named `{sink}` (sinks: {})",
                    sink_names()
                ))
            }
            (OnError::Drop | OnError::Stop, Some(_)) => problems.push(format!(
                "{at}.dead_letter: only used with on_error = \"dead_letter\""
            )),
            _ => {}
        }
        if plugin.memory_limit.0 < 1 << 16 {
            problems.push(format!(
                "{at}.memory_limit: must be at least 64KiB (one Wasm page)"
            ));
        }
        if plugin.fuel == Some(0) {
            problems.push(format!("{at}.fuel: must be more than zero"));
        }
        if plugin.timeout.0.is_zero() {
            problems.push(format!("{at}.timeout: must be more than zero"));
        }
        for (i, table) in plugin.tables.iter().enumerate() {
            if !config.tables.contains_key(table) && !is_broken("tables", table) {
                problems.push(format!(
                    "{at}.tables[{i}]: no table named `{table}` (tables: {})",
                    config
                        .tables
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    problems.extend(crate::auth::token_problems(
        "server.admin_tokens",
        &config.server.admin_tokens,
    ));
    if config.routes.is_empty() {
        problems.push("routes: no routes; add at least one [routes.NAME]".into());
    }
    let mut used_sources = BTreeSet::new();
    for (name, route) in &config.routes {
        let at = format!("routes.{name}");
        if config.sources.contains_key(&route.from) {
            used_sources.insert(route.from.as_str());
        } else if !is_broken("sources", &route.from) {
            problems.push(format!(
                "{at}.from: no source named `{}` (sources: {})",
                route.from,
                config
                    .sources
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (i, plugin) in route.through.iter().enumerate() {
            if !config.plugins.contains_key(plugin) && !is_broken("plugins", plugin) {
                problems.push(format!(
                    "{at}.through[{i}]: no plugin named `{plugin}` (plugins: {})",
                    config
                        .plugins
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if route.to.0.values().all(Vec::is_empty) {
            problems.push(format!("{at}.to: names no sinks"));
        }
        for (port, sink) in route.to.all_sinks() {
            if !config.sinks.contains_key(sink) && !is_broken("sinks", sink) {
                problems.push(format!(
                    "{at}.to.{port}: no sink named `{sink}` (sinks: {})",
                    sink_names()
                ));
            }
        }
        if let Some(sink) = &route.only_connected {
            match config.sinks.get(sink) {
                Some(SinkConfig::Sse(_)) => {}
                Some(_) => {
                    problems.push(format!("{at}.only_connected: `{sink}` is not an sse sink"))
                }
                None if is_broken("sinks", sink) => {}
                None => problems.push(format!(
                    "{at}.only_connected: no sink named `{sink}` (sinks: {})",
                    sink_names()
                )),
            }
        }
        if let Some(topic) = &route.state_changelog {
            if topic.is_empty() {
                problems.push(format!("{at}.state_changelog: must not be empty"));
            }
            match config.sources.get(&route.from) {
                Some(SourceConfig::Kafka(_) | SourceConfig::Redis(_)) | None => {}
                Some(other) => problems.push(format!(
                    "{at}.state_changelog: needs a Kafka or Redis source, and `sources.{}` is `{}`: state is restored from where the source's positions are kept (a Kafka topic per partition, or a Redis hash)",
                    route.from,
                    other.type_name()
                )),
            }
        }
        if route.workers == 0 {
            problems.push(format!("{at}.workers: must be at least 1"));
        }
        if route.queue == 0 {
            problems.push(format!("{at}.queue: must be at least 1"));
        }
    }
    super::guarantee::check(config, problems);
    super::guarantee::check_dedupe(config, problems);
    for name in config.sources.keys() {
        if !used_sources.contains(name.as_str()) {
            problems.push(format!("sources.{name}: not used by any route"));
        }
    }
    for (name, source) in &config.sources {
        problems.extend(source.kind().problems(&format!("sources.{name}")));
        if let Some((max, dead_letter)) = source.kind().record_limit() {
            if max == 0 {
                problems.push(format!(
                    "sources.{name}.max_record_size: must be more than zero"
                ));
            }
            match dead_letter.map(|sink| (sink, config.sinks.get(sink))) {
                Some((sink, None)) if !is_broken("sinks", sink) => problems.push(format!(
                    "sources.{name}.dead_letter: no sink named `{sink}` (sinks: {})",
                    sink_names()
                )),
                // Dead letters skip the routes, so their positions can run
                // ahead of the routes' outputs, which such a sink would
                // then drop as redeliveries.
                Some((sink, Some(SinkConfig::RedisStream(r)))) if r.dedupe => problems.push(format!(
                    "sources.{name}.dead_letter: `{sink}` has dedupe = true, which tells redeliveries apart by source position; dead letters need a sink without it"
                )),
                _ => {}
            }
        }
    }
    for (name, table) in &config.tables {
        problems.extend(table.kind().problems(&format!("tables.{name}")));
    }
    for (name, sink) in &config.sinks {
        problems.extend(sink.kind().problems(&format!("sinks.{name}")));
    }
}
