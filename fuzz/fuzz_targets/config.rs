//! A config file's text through what `sluice check` does before it loads
//! plugins: `${VAR}` interpolation, TOML parsing, every section item, and
//! the checks across sections (`Config::parse`). Nothing here opens a
//! socket or a file: the Kafka client checks of `sluice check`
//! (`runtime::client_problems`) create librdkafka clients and are left out.
//!
//! A config that is refused must name a problem; one that is accepted must
//! have every name it refers to resolved, since the runtime looks them up
//! without checking again.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice::config::{Config, route_sinks};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/fuzz/config"), env) {
        Ok(config) => references_resolve(&config),
        Err(e) => {
            assert!(!e.problems.is_empty(), "a refused config names no problem");
            let _ = e.to_string();
        }
    }
});

/// Secrets are set, as an operator sets them for the examples; every other
/// variable is unset, so its `:-default` applies.
fn env(name: &str) -> Option<String> {
    (name == "SET" || name.contains("SECRET") || name.contains("TOKEN"))
        .then(|| format!("fuzz-{name}"))
}

/// What validation promises about an accepted config.
fn references_resolve(config: &Config) {
    assert!(!config.routes.is_empty(), "accepted without a route");
    for (name, route) in &config.routes {
        assert!(
            config.sources.contains_key(&route.from),
            "routes.{name}.from names no source"
        );
        for plugin in &route.through {
            assert!(
                config.plugins.contains_key(plugin),
                "routes.{name}.through names no plugin `{plugin}`"
            );
        }
        for sink in route_sinks(config, name) {
            assert!(
                config.sinks.contains_key(sink),
                "routes.{name} writes to no sink `{sink}`"
            );
        }
        if let Some(sink) = &route.only_connected {
            assert!(config.sinks.contains_key(sink));
        }
        assert!(route.workers >= 1 && route.queue >= 1);
    }
    for (name, plugin) in &config.plugins {
        assert!(plugin.source().is_some(), "plugins.{name} has no source");
        for table in &plugin.tables {
            assert!(
                config.tables.contains_key(table),
                "plugins.{name}.tables names no table `{table}`"
            );
        }
        assert!(plugin.memory_limit.0 >= 1 << 16);
        assert!(!plugin.timeout.0.is_zero());
        assert_ne!(plugin.fuel, Some(0));
    }
    for name in config.sources.keys() {
        assert!(
            config.routes.values().any(|r| &r.from == name),
            "sources.{name} is used by no route"
        );
    }
}
