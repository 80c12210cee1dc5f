//! Keeps records whose client id is in a set or matches a pattern.
//!
//! The client id is the record key, or a top-level JSON field of the value
//! when `field` is set. Records without an id are dropped. With
//! `only_connected`, a record is kept only while its client has an SSE
//! connection open (the host's `presence` import); with no `clients` or
//! `patterns`, that alone decides.

use std::collections::HashSet;

use sluice_sdk::{Error, Filter, InitError, Record, glob_match, json, presence};

/// `[plugins.NAME.config]` of `client-filter`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client ids to keep, exactly.
    #[serde(default)]
    pub clients: HashSet<String>,
    /// Wildcard patterns (`*`, `?`) of client ids to keep.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Read the id from this JSON field instead of the key.
    pub field: Option<String>,
    /// Keep a record only while its client is connected to an SSE sink.
    #[serde(default)]
    pub only_connected: bool,
}

/// The filter; see the crate docs.
pub struct ClientFilter(Config);

impl Filter for ClientFilter {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        if config.clients.is_empty() && config.patterns.is_empty() && !config.only_connected {
            return Err(InitError::InvalidConfig(
                "config: set `clients`, `patterns` or `only_connected`, or every record is dropped"
                    .into(),
            ));
        }
        Ok(Self(config))
    }

    fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
        let id = match &self.0.field {
            Some(field) => json::field(record.value(), field)?,
            None => record.key_str().map(Into::into),
        };
        let any_client = self.0.clients.is_empty() && self.0.patterns.is_empty();
        Ok(id.is_some_and(|id| {
            (any_client
                || self.0.clients.contains(id.as_ref())
                || self.0.patterns.iter().any(|p| glob_match(p, &id)))
                && (!self.0.only_connected || presence::connected(&id))
        }))
    }
}

sluice_sdk::export_filter!(ClientFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::testing::{self, TestRecord};

    fn filter(config: serde_json::Value) -> ClientFilter {
        ClientFilter::init(testing::config(config).unwrap()).unwrap()
    }

    #[test]
    fn keeps_listed_and_matching_keys() {
        let mut f = filter(json!({"clients": ["c1"], "patterns": ["vip-*"]}));
        let out = testing::filter(
            &mut f,
            [
                TestRecord::new("{}").key("c1"),
                TestRecord::new("{}").key("c2"),
                TestRecord::new("{}").key("vip-7"),
                TestRecord::new("{}"),
            ],
        );
        assert_eq!(out.keep, [1, 0, 1, 0]);
        assert!(out.errors.is_empty());
    }

    #[test]
    fn only_connected_asks_the_host() {
        let mut f = filter(json!({"patterns": ["c*"], "only_connected": true}));
        testing::set_connected(["c1"]);
        let out = testing::filter(
            &mut f,
            [
                TestRecord::new("{}").key("c1"),
                TestRecord::new("{}").key("c2"),
            ],
        );
        assert_eq!(out.keep, [1, 0]);
        let mut any = filter(json!({"only_connected": true}));
        let out = testing::filter(&mut any, [TestRecord::new("{}").key("c1")]);
        assert_eq!(out.keep, [1]);
    }

    #[test]
    fn reads_a_json_field_and_reports_bad_json() {
        let mut f = filter(json!({"clients": ["7"], "field": "user"}));
        let out = testing::filter(
            &mut f,
            [
                TestRecord::new(r#"{"user":7}"#),
                TestRecord::new(r#"{"user":"8"}"#),
                TestRecord::new("not json"),
            ],
        );
        assert_eq!(out.keep, [1, 0, 0]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 2);
    }

    #[test]
    fn refuses_an_empty_config() {
        let config = testing::config(json!({})).unwrap();
        assert!(matches!(
            ClientFilter::init(config),
            Err(InitError::InvalidConfig(_))
        ));
        assert!(testing::config::<Config>(json!({"client": []})).is_err());
    }
}
