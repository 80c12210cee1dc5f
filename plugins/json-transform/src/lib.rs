//! Projects and renames top-level JSON fields, and adds headers.
//!
//! Output values hold only the listed `fields`, in that order, each under its
//! `rename`d name. Missing fields are left out. Key and timestamp are kept;
//! `headers` are added to the record's own.

use std::collections::BTreeMap;

use sluice_sdk::{Error, InitError, Output, Record, Transform, json};

/// `[plugins.NAME.config]` of `json-transform`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fields to keep, in output order.
    pub fields: Vec<String>,
    /// New names for some of `fields`: `{ old = "new" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Headers to add to every output: `{ name = "value" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The transform; see the crate docs.
pub struct JsonTransform {
    /// Input names, for `json::select`.
    names: Vec<String>,
    /// (input name, output name as a JSON string literal)
    fields: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    buf: Vec<u8>,
}

impl Transform for JsonTransform {
    type Config = Config;

    fn init(mut c: Config) -> Result<Self, InitError> {
        let fields = c.fields.into_iter().map(|f| {
            let out = c.rename.remove(&f).unwrap_or_else(|| f.clone());
            (f, serde_json::Value::from(out).to_string())
        });
        let fields: Vec<_> = fields.collect();
        if let Some(unused) = c.rename.keys().next() {
            return Err(InitError::InvalidConfig(format!(
                "config.rename.{unused}: `{unused}` is not one of `fields`"
            )));
        }
        let headers = c.headers.into_iter().collect();
        Ok(Self {
            names: fields.iter().map(|(n, _)| n.clone()).collect(),
            fields,
            headers,
            buf: Vec::with_capacity(256),
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        // One slot per field, on the stack for the usual handful of fields.
        let mut stack = [None; 16];
        let mut heap = Vec::new();
        let slots = match stack.get_mut(..self.names.len()) {
            Some(s) => s,
            None => {
                heap.resize(self.names.len(), None);
                &mut heap[..]
            }
        };
        json::select(record.value(), &self.names, slots)?;
        self.buf.clear();
        self.buf.push(b'{');
        for (value, (_, quoted)) in slots.iter().zip(&self.fields) {
            if let Some(value) = value {
                if self.buf.len() > 1 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(quoted.as_bytes());
                self.buf.push(b':');
                self.buf.extend_from_slice(value);
            }
        }
        self.buf.push(b'}');
        let mut emit = out.emit(record);
        emit.value_owned(&self.buf);
        for (name, value) in &self.headers {
            emit.header(name, value.as_bytes());
        }
        Ok(())
    }
}

sluice_sdk::export_transform!(JsonTransform);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::testing::{self, TestRecord};

    fn transform(config: serde_json::Value) -> JsonTransform {
        JsonTransform::init(testing::config(config).unwrap()).unwrap()
    }

    #[test]
    fn projects_renames_and_adds_headers() {
        let mut t = transform(json!({
            "fields": ["event", "client_id", "missing"],
            "rename": {"event": "type"},
            "headers": {"via": "sluice"},
        }));
        let input = TestRecord::new(r#"{"client_id":"c1","event":"login","secret":1}"#)
            .key("c1")
            .header("h", "1")
            .timestamp(42);
        let out = testing::transform(&mut t, [input, TestRecord::new("[]")]);
        let records: Vec<_> = out.outputs.records().collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value(), br#"{"type":"login","client_id":"c1"}"#);
        assert_eq!(records[0].key_str(), Some("c1"));
        assert_eq!(records[0].timestamp(), 42);
        let headers: Vec<_> = records[0].headers().collect();
        assert_eq!(headers, [("h", &b"1"[..]), ("via", &b"sluice"[..])]);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
    }

    #[test]
    fn rejects_renaming_an_unlisted_field() {
        let c = testing::config(json!({"fields": ["a"], "rename": {"b": "c"}})).unwrap();
        let err = JsonTransform::init(c).err().unwrap();
        assert!(err.to_string().contains("config.rename.b"), "{err}");
    }
}
