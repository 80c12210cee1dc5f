//! What a config reload changes.
//!
//! The running config is split into *units*: a source with every route
//! that reads it. A unit is the smallest thing that can be restarted on its
//! own: a source hands each batch to all of its routes and is acknowledged
//! only when all of them have delivered it, so a route cannot be replaced
//! under a running source without either losing the source's position or
//! reordering records. Units that nothing in the reload touches keep
//! running as they are, with their consumers, positions and in-flight
//! batches.
//!
//! Parts are compared by their parsed config, so a reload that only
//! reformats the file, reorders sections or edits comments changes nothing.

use std::collections::BTreeSet;

use crate::config::Config;

/// The parts of a running config a new config replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Plugins to load (new, or their config changed).
    pub plugins: BTreeSet<String>,
    /// Sinks to build (new, or their config changed).
    pub sinks: BTreeSet<String>,
    /// Sinks to stop (gone, or their config changed).
    pub old_sinks: BTreeSet<String>,
    /// Units (by source name) to stop: gone or changed.
    pub stop: BTreeSet<String>,
    /// Units to start: new or changed.
    pub start: BTreeSet<String>,
    /// Units left running.
    pub keep: BTreeSet<String>,
    /// Routes whose own config, plugins or sinks changed (a subset of the
    /// routes of the units in `start`, plus removed routes).
    pub routes: BTreeSet<String>,
    /// Tables to load (new, or their config changed).
    pub tables: BTreeSet<String>,
    /// Tables to stop (gone, or their config changed).
    pub old_tables: BTreeSet<String>,
    /// Settings that only take effect after a restart.
    pub need_restart: Vec<String>,
}

impl Changes {
    /// What turning `old` into `new` takes.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut c = Changes {
            tables: changed(&old.tables, &new.tables),
            old_tables: changed(&new.tables, &old.tables),
            ..Changes::default()
        };
        // A plugin that reads a table being replaced is loaded again, so
        // that it opens the new table (and its routes restart, waiting for
        // the new table to load before they read).
        c.plugins = changed(&old.plugins, &new.plugins);
        c.plugins.extend(
            new.plugins
                .iter()
                .filter(|(_, p)| p.tables.iter().any(|t| c.tables.contains(t)))
                .map(|(name, _)| name.clone()),
        );
        c.sinks = changed(&old.sinks, &new.sinks);
        c.old_sinks = changed(&new.sinks, &old.sinks);

        let names: BTreeSet<&String> = old.routes.keys().chain(new.routes.keys()).collect();
        for name in names {
            let (Some(before), Some(after)) = (old.routes.get(name), new.routes.get(name)) else {
                c.routes.insert(name.clone());
                continue;
            };
            let uses_changed_plugin = after.through.iter().any(|p| c.plugins.contains(p));
            let uses_changed_sink = sinks_of(new, name).any(|s| c.sinks.contains(s));
            if before != after || uses_changed_plugin || uses_changed_sink {
                c.routes.insert(name.clone());
            }
        }

        let sources: BTreeSet<&String> = old.sources.keys().chain(new.sources.keys()).collect();
        for source in sources {
            let (Some(before), Some(after)) = (old.sources.get(source), new.sources.get(source))
            else {
                if old.sources.contains_key(source) {
                    c.stop.insert(source.clone());
                } else {
                    c.start.insert(source.clone());
                }
                continue;
            };
            let routes_before = routes_of(old, source);
            let routes_after = routes_of(new, source);
            let changed = before != after
                || routes_before != routes_after
                || routes_after.iter().any(|r| c.routes.contains(*r));
            if changed {
                c.stop.insert(source.clone());
                c.start.insert(source.clone());
            } else {
                c.keep.insert(source.clone());
            }
        }

        if old.server.listen != new.server.listen {
            c.need_restart.push(format!(
                "server.listen ({} → {})",
                old.server.listen, new.server.listen
            ));
        }
        c
    }

    /// Whether the new config changes nothing that runs.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
            && self.tables.is_empty()
            && self.old_tables.is_empty()
            && self.sinks.is_empty()
            && self.old_sinks.is_empty()
            && self.stop.is_empty()
            && self.start.is_empty()
    }
}

/// Names in `new` whose value is missing from, or different in, `old`.
fn changed<V: PartialEq>(
    old: &std::collections::BTreeMap<String, V>,
    new: &std::collections::BTreeMap<String, V>,
) -> BTreeSet<String> {
    new.iter()
        .filter(|(name, v)| old.get(*name) != Some(*v))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The routes reading `source`, in name order.
fn routes_of<'a>(config: &'a Config, source: &str) -> Vec<&'a String> {
    config
        .routes
        .iter()
        .filter(|(_, r)| r.from == source)
        .map(|(name, _)| name)
        .collect()
}

/// Every sink route `name` writes to: its ports, its plugins' dead-letter
/// sinks, the SSE sink it asks about connections, and its source's
/// dead-letter sink.
fn sinks_of<'a>(config: &'a Config, name: &str) -> impl Iterator<Item = &'a str> {
    let route = config.routes.get(name);
    let ports = route
        .into_iter()
        .flat_map(|r| r.to.all_sinks().map(|(_, sink)| sink));
    let dead = route.into_iter().flat_map(|r| {
        r.through
            .iter()
            .filter_map(|p| config.plugins.get(p)?.dead_letter.as_deref())
    });
    let demand = route.and_then(|r| r.only_connected.as_deref());
    let oversized = route.and_then(|r| crate::config::source_dead_letter(config, &r.from));
    ports.chain(dead).chain(demand).chain(oversized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[sources.a]
type = "generator"
rate = 10.0
[sources.b]
type = "generator"
rate = 10.0
[sinks.out_a]
type = "blackhole"
[sinks.out_b]
type = "blackhole"
[routes.ra]
from = "a"
to = ["out_a"]
[routes.rb]
from = "b"
to = ["out_b"]
"#;

    fn parse(text: &str) -> Config {
        match Config::parse(text, Path::new("."), |_| None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_same_config_reformatted_changes_nothing() {
        let reordered = BASE.replace("rate = 10.0", "rate = 10.0 # same");
        let c = Changes::between(&parse(BASE), &parse(&reordered));
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(c.keep, set(&["a", "b"]));
    }

    #[test]
    fn a_changed_route_restarts_only_its_source() {
        let new = BASE.replace("to = [\"out_a\"]", "to = [\"out_b\"]");
        let c = Changes::between(&parse(BASE), &parse(&new));
        assert_eq!(c.routes, set(&["ra"]));
        assert_eq!(c.stop, set(&["a"]));
        assert_eq!(c.start, set(&["a"]));
        assert_eq!(c.keep, set(&["b"]));
        assert!(c.sinks.is_empty() && c.plugins.is_empty());
    }

    #[test]
    fn a_changed_sink_restarts_the_units_writing_to_it() {
        let new = BASE.replacen(
            "[sinks.out_b]\ntype = \"blackhole\"",
            "[sinks.out_b]\ntype = \"stdout\"",
            1,
        );
        let c = Changes::between(&parse(BASE), &parse(&new));
        assert_eq!(c.sinks, set(&["out_b"]));
        assert_eq!(c.old_sinks, set(&["out_b"]));
        assert_eq!(c.routes, set(&["rb"]));
        assert_eq!(c.keep, set(&["a"]));
    }

    #[test]
    fn added_and_removed_parts() {
        let new = format!(
            "{}\n[sources.c]\ntype = \"generator\"\n[routes.rc]\nfrom = \"c\"\nto = [\"out_c\"]\n[sinks.out_c]\ntype = \"blackhole\"\n",
            BASE.replace("[routes.rb]\nfrom = \"b\"\nto = [\"out_b\"]\n", "")
                .replace("[sources.b]\ntype = \"generator\"\nrate = 10.0\n", "")
                .replace("[sinks.out_b]\ntype = \"blackhole\"\n", "")
        );
        let c = Changes::between(&parse(BASE), &parse(&new));
        assert_eq!(c.start, set(&["c"]));
        assert_eq!(c.stop, set(&["b"]));
        assert_eq!(c.keep, set(&["a"]));
        assert_eq!(c.sinks, set(&["out_c"]));
        assert_eq!(c.old_sinks, set(&["out_b"]));
        assert_eq!(c.routes, set(&["rb", "rc"]));
    }

    #[test]
    fn a_new_listen_address_needs_a_restart() {
        let new = format!("[server]\nlisten = \"127.0.0.1:9999\"\n{BASE}");
        let c = Changes::between(&parse(BASE), &parse(&new));
        assert!(c.is_empty());
        assert_eq!(c.need_restart.len(), 1, "{:?}", c.need_restart);
    }

    #[test]
    fn a_changed_table_reloads_the_plugins_reading_it_and_restarts_their_units() {
        let with_table = |hash: &str| {
            format!(
                "{BASE}\n[tables.t]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nhash = \"{hash}\"\n\
                 [plugins.j]\npath = \"j.wasm\"\ntables = [\"t\"]\n[plugins.k]\npath = \"k.wasm\"\n"
            )
            .replace("from = \"a\"\n", "from = \"a\"\nthrough = [\"j\"]\n")
            .replace("from = \"b\"\n", "from = \"b\"\nthrough = [\"k\"]\n")
        };
        let c = Changes::between(&parse(&with_table("h1")), &parse(&with_table("h2")));
        assert_eq!(c.tables, set(&["t"]));
        assert_eq!(c.old_tables, set(&["t"]));
        assert_eq!(c.plugins, set(&["j"]));
        assert_eq!(c.stop, set(&["a"]));
        assert_eq!(c.start, set(&["a"]));
        assert_eq!(c.keep, set(&["b"]));
        assert!(c.need_restart.is_empty(), "{:?}", c.need_restart);

        // A table nothing reads yet: loaded, and nothing restarts.
        let extra = format!(
            "{}\n[tables.u]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nhash = \"u\"\n",
            with_table("h1")
        );
        let c = Changes::between(&parse(&with_table("h1")), &parse(&extra));
        assert_eq!(c.tables, set(&["u"]));
        assert!(c.old_tables.is_empty() && c.plugins.is_empty() && c.start.is_empty());
        assert!(!c.is_empty());
        let c = Changes::between(&parse(&extra), &parse(&with_table("h1")));
        assert_eq!(c.old_tables, set(&["u"]));
        assert!(c.tables.is_empty());
    }
}
