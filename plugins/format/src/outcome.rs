//! What a plugin returns: per-batch results and typed errors.
//!
//! These mirror the WIT records `filter-result`, `transform-result`,
//! `record-error` and the variant `init-error` field for field, so the
//! bindings move them across the boundary without conversion.

use crate::FlatBatch;

/// The default port's one name, in route configs (`to = { default = [...] }`)
/// and in plugin code (`.port("default")`). On the wire (WIT `port-names`,
/// index 0) it is the empty string; both mean the same port.
pub const DEFAULT_PORT: &str = "default";

/// Whether port `name` is the default port (`"default"`, or `""` as the
/// wire spells it). Outputs on it keep the port their input was on.
pub fn is_default_port(name: &str) -> bool {
    name.is_empty() || name == DEFAULT_PORT
}

/// A record the plugin could not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the input record in its batch.
    pub index: u32,
    /// Why.
    pub message: String,
}

/// A filter's decisions for one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOutcome {
    /// One byte per input record: 1 keeps it, 0 drops it.
    pub keep: Vec<u8>,
    /// Records that failed; their `keep` byte is ignored.
    pub errors: Vec<RecordError>,
}

/// A transform's outputs for one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransformOutcome {
    /// The output records.
    pub outputs: FlatBatch,
    /// For each output, the index of the input it came from.
    pub inputs: Vec<u32>,
    /// Port names; index 0 is the default port, `""`.
    pub port_names: Vec<String>,
    /// For each output, an index into `port_names`.
    pub ports: Vec<u32>,
    /// Records that failed; none of their outputs are in `outputs`.
    pub errors: Vec<RecordError>,
}

impl TransformOutcome {
    /// The port name of output `i` (`""` for the default port).
    pub fn port(&self, i: usize) -> &str {
        self.ports
            .get(i)
            .and_then(|&p| self.port_names.get(p as usize))
            .map_or("", String::as_str)
    }
}

/// Why a plugin refused to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitError {
    /// The stage's `config` table did not suit the plugin.
    InvalidConfig(String),
    /// Any other reason.
    Failed(String),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for InitError {}
