//! `[routes.NAME]`: a source, a chain of plugins, and sinks by output port.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[routes.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The source to read.
    pub from: String,
    /// Plugins, applied in order.
    #[serde(default)]
    pub through: Vec<String>,
    /// Sinks: a list (the default port), or a table of port name → sinks,
    /// where `default` names the default port.
    pub to: PortMap,
    /// Parallel instances of the plugin chain. Batches of one partition
    /// always go to the same instance, so order per partition holds.
    #[serde(default = "crate::config::defaults::route_workers")]
    pub workers: usize,
    /// Batches queued in front of each worker before the source waits.
    #[serde(default = "crate::config::defaults::route_queue")]
    pub queue: usize,
    /// Forward a record only while its client has a connection open on
    /// this `sse` sink (on any instance, when the sink is backed by Redis).
    /// The client is found as that sink finds it (key or `client_field`).
    pub only_connected: Option<String>,
    /// What a crash may do to this route's output: `at_least_once` (the
    /// default: redeliver) or `exactly_once` (Kafka → Kafka only: outputs
    /// and consumed offsets commit in one Kafka transaction).
    #[serde(default)]
    pub guarantee: Guarantee,
    /// A compacted Kafka topic on the source's cluster that backs the
    /// plugins' state: state is then kept per source partition, each
    /// batch's changes are written there before its position is
    /// acknowledged (inside the transaction, with `exactly_once`), and a
    /// partition's state is restored from it before its first batch. Kafka
    /// sources only; the topic needs as many partitions as the source's
    /// topics. Unset: state is in memory only.
    pub state_changelog: Option<String>,
}

/// `[routes.X] guarantee`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Positions are acknowledged after every sink has the records; a crash
    /// redelivers what was not acknowledged.
    #[default]
    AtLeastOnce,
    /// Kafka transactions: a crash aborts what was not committed, and a
    /// `read_committed` consumer sees each output once.
    ExactlyOnce,
}

/// Output port → sink names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap(pub BTreeMap<String, Vec<String>>);

impl PortMap {
    /// The name of the default port in `to` tables.
    pub const DEFAULT: &'static str = sluice_format::DEFAULT_PORT;

    /// Sinks for `port`; `""` is the default port.
    pub fn sinks(&self, port: &str) -> Option<&[String]> {
        let port = if sluice_format::is_default_port(port) {
            Self::DEFAULT
        } else {
            port
        };
        self.0.get(port).map(Vec::as_slice)
    }

    /// Every sink named anywhere in the map.
    pub fn all_sinks(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|(port, sinks)| sinks.iter().map(move |s| (port.as_str(), s.as_str())))
    }
}

impl<'de> Deserialize<'de> for PortMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a list of sink names, or a table of port = [sink names]"
        )]
        enum Raw {
            List(Vec<String>),
            Ports(BTreeMap<String, Vec<String>>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::List(sinks) => PortMap(BTreeMap::from([(Self::DEFAULT.to_owned(), sinks)])),
            Raw::Ports(ports) => PortMap(ports),
        })
    }
}
