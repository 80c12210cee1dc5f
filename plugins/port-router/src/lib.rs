//! Sends each record to the output port named by a JSON field of its value.
//!
//! With `ports`, the field's value is looked up there (`{ value = "port" }`);
//! otherwise the value itself is the port name. Records whose field is
//! missing or unmapped go to the default port.

use std::collections::HashMap;

use sluice_sdk::{Error, InitError, Output, Record, Transform, json};

/// `[plugins.NAME.config]` of `port-router`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The top-level JSON field that picks the port.
    pub field: String,
    /// Field value → port name. Without it, the value is the port name.
    pub ports: Option<HashMap<String, String>>,
}

/// The router; see the crate docs.
pub struct PortRouter(Config);

impl Transform for PortRouter {
    type Config = Config;

    fn init(config: Config) -> Result<Self, InitError> {
        Ok(Self(config))
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let value = json::field(record.value(), &self.0.field)?;
        let port = match (&value, &self.0.ports) {
            (Some(v), Some(ports)) => ports.get(v.as_ref()).map_or("", String::as_str),
            (Some(v), None) => v.as_ref(),
            (None, _) => "",
        };
        out.forward_to(record, port);
        Ok(())
    }
}

sluice_sdk::export_transform!(PortRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::testing::{self, TestRecord};

    #[test]
    fn routes_by_field_value() {
        let config = json!({"field": "region", "ports": {"eu-west": "eu"}});
        let mut r = PortRouter::init(testing::config(config).unwrap()).unwrap();
        let out = testing::transform(
            &mut r,
            [
                TestRecord::new(r#"{"region":"eu-west"}"#),
                TestRecord::new(r#"{"region":"mars"}"#),
                TestRecord::new(r#"{}"#),
            ],
        );
        let ports: Vec<_> = (0..3).map(|i| out.port(i)).collect();
        assert_eq!(ports, ["eu", "", ""]);
        assert_eq!(
            out.outputs.get(0).unwrap().value(),
            br#"{"region":"eu-west"}"#
        );
    }

    #[test]
    fn without_a_map_the_value_is_the_port() {
        let config = json!({"field": "region"});
        let mut r = PortRouter::init(testing::config(config).unwrap()).unwrap();
        let out = testing::transform(&mut r, [TestRecord::new(r#"{"region":"us"}"#)]);
        assert_eq!(out.port(0), "us");
    }
}
