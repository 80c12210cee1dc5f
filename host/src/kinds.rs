//! The shape every source, sink and table kind shares.
//!
//! A kind is one module: a config struct (`deny_unknown_fields`, a `///`
//! doc on every field) that implements its section's trait
//! ([`crate::sources::SourceKind`], [`crate::sinks::SinkKind`],
//! [`crate::tables::TableKind`]). The trait gives its `type` name, its own
//! checks, what it needs from the embedded broker, what it announces at
//! start and how it is built, as Vector's `SourceConfig::build(cx)` does.
//!
//! [`kinds!`] turns one list of kinds into the section's
//! enum and its parser: the `type` names come from the kinds themselves, and
//! an unknown `type` is an error, never parsed as another kind. Adding a kind
//! is its file plus one line in that list.

use crate::common::kafka::EmbeddedKafka;
use crate::metrics::Metrics;

/// What a kind is built with: the process's running parts it may use.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The process's metrics.
    pub metrics: &'a Metrics,
    /// The embedded broker, when one runs.
    pub embedded: Option<&'a EmbeddedKafka>,
    /// The plugins' states, for a Kafka source to drop the partition
    /// states of `state_changelog` routes on revoke; none for checks.
    pub states: Option<&'a crate::wasm::PluginStates>,
}

/// Declares a section's enum, one variant per kind, with its parser and a
/// view of each variant as the section's trait object.
///
/// ```ignore
/// kinds! {
///     /// `[sinks.NAME]`: one variant per `type`.
///     pub enum SinkConfig: dyn SinkKind {
///         /// `type = "stdout"`.
///         Stdout(StdoutConfig),
///     }
/// }
/// ```
macro_rules! kinds {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: dyn $kind:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty), )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        // Configs are read once and held by the runtime; boxing the larger
        // kinds would buy nothing.
        #[allow(clippy::large_enum_variant)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// Every `type` this section knows, in the order of the list.
            pub fn kinds() -> Vec<&'static str> {
                vec![$( <$ty as $kind>::type_name() ),+]
            }

            /// This item's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => <$ty as $kind>::type_name(), )+
                }
            }

            /// Parses one `[section.NAME]` table at `path`, recording its
            /// problems (each with its key path).
            pub(crate) fn from_toml(
                path: &str,
                value: toml::Value,
                problems: &mut Vec<String>,
            ) -> Option<Self> {
                let (kind, rest) = $crate::config::split_type(path, value, &Self::kinds(), problems)?;
                $(
                    if kind == <$ty as $kind>::type_name() {
                        return $crate::config::item::<$ty>(path, rest, problems).map(Self::$variant);
                    }
                )+
                problems.push(format!(
                    "{path}.type: unknown type `{kind}`; expected one of {}",
                    Self::kinds().join(", ")
                ));
                None
            }

            /// The kind's config, as the section's trait.
            pub fn kind(&self) -> &dyn $kind {
                match self {
                    $( Self::$variant(c) => c, )+
                }
            }

            /// The kind's config, as the section's trait, to change.
            pub fn kind_mut(&mut self) -> &mut dyn $kind {
                match self {
                    $( Self::$variant(c) => c, )+
                }
            }
        }
    };
}

pub(crate) use kinds;
