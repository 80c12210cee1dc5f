//! Stream-table join: enriches JSON records with fields of a table entry.
//!
//! The record's `join_field` (a top-level field; a string's contents or a
//! number's literal) is looked up as a key in `table`, whose values are
//! JSON objects. Each of `fields` is copied from the entry into the record,
//! right after the join field (a field the record already has is
//! replaced). A field the entry lacks, or every field when the key is not
//! in the table, takes its value from `default`, or is left out if
//! `default` has none. The rest of the record is kept as it is, byte for
//! byte (`13.40` stays `13.40`). A record without the join field, or whose
//! value is not a JSON object, is a record error (the stage's `on_error`).
//!
//! ```toml
//! [plugins.enrich]
//! path = "json_enrich.wasm"
//! tables = ["products"]
//! [plugins.enrich.config]
//! table = "products"
//! join_field = "id"
//! fields = ["name"]
//! default = { name = "REF INCONNUE" }
//! ```

use std::collections::BTreeMap;

use sluice_sdk::tables::{Keys, Lookup, Table};
use sluice_sdk::{Error, FlatBatch, InitError, Output, Record, Transform, json};

/// `[plugins.NAME.config]` of `json-enrich`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The table to look keys up in (also listed in the stage's `tables`).
    pub table: String,
    /// The record's field whose value is the key.
    pub join_field: String,
    /// The entry's fields to copy into the record, in order.
    pub fields: Vec<String>,
    /// Values for fields the entry lacks (or all, for a key not in the table).
    #[serde(default)]
    pub default: BTreeMap<String, serde_json::Value>,
}

/// The join; see the crate docs.
pub struct JsonEnrich {
    table: Table,
    join_field: String,
    /// (name, name as a JSON string literal, default as JSON text)
    fields: Vec<(String, String, Option<String>)>,
    names: Vec<String>,
    buf: Vec<u8>,
    /// The current batch's join keys, and their entries (one host call per
    /// batch, made in `begin_batch`).
    keys: Keys,
    lookup: Lookup,
}

impl Transform for JsonEnrich {
    type Config = Config;

    fn init(c: Config) -> Result<Self, InitError> {
        if let Some(extra) = c.default.keys().find(|k| !c.fields.contains(k)) {
            return Err(InitError::InvalidConfig(format!(
                "config.default.{extra}: `{extra}` is not one of `fields`"
            )));
        }
        let table = Table::open(&c.table).map_err(|e| InitError::Failed(e.to_string()))?;
        let fields = c
            .fields
            .iter()
            .map(|f| {
                let quoted = serde_json::Value::from(f.as_str()).to_string();
                (f.clone(), quoted, c.default.get(f).map(ToString::to_string))
            })
            .collect();
        Ok(Self {
            table,
            join_field: c.join_field,
            fields,
            names: c.fields,
            buf: Vec::with_capacity(256),
            keys: Keys::default(),
            lookup: Lookup::default(),
        })
    }

    fn begin_batch(&mut self, batch: &FlatBatch) {
        self.keys.clear();
        for record in batch.records() {
            // A record without a usable key gets an empty one here and
            // fails in `transform`.
            match json::field(record.value(), &self.join_field) {
                Ok(Some(key)) => self.keys.push(key.as_bytes()),
                _ => self.keys.push(b""),
            }
        }
        self.lookup = self.table.get_many(&self.keys);
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        let members = json::fields(record.value())?;
        let key = members
            .iter()
            .find(|(k, _)| *k == self.join_field)
            .and_then(|(_, raw)| json::scalar_text(raw).ok().flatten())
            .ok_or_else(|| Error::msg(format!("no `{}` field to join on", self.join_field)))?;
        // From the batch's lookup; one by one only if `begin_batch` did
        // not run (a direct call).
        let fetched;
        let entry = if record.index() < self.lookup.len() {
            self.lookup.get(record.index())
        } else {
            fetched = self.table.get(key.as_bytes());
            fetched.as_deref()
        };
        // One slot per copied field, on the stack for the usual handful.
        let mut stack = [None; 16];
        let mut heap = Vec::new();
        let found = match stack.get_mut(..self.names.len()) {
            Some(s) => s,
            None => {
                heap.resize(self.names.len(), None);
                &mut heap[..]
            }
        };
        if let Some(entry) = entry {
            // An entry that is not a JSON object has none of the fields.
            let _ = json::select(entry, &self.names, found);
        }
        self.buf.clear();
        self.buf.push(b'{');
        for (name, raw) in &members {
            if self.names.iter().any(|n| n == name) {
                continue;
            }
            if self.buf.len() > 1 {
                self.buf.push(b',');
            }
            push_key(&mut self.buf, name);
            self.buf.push(b':');
            self.buf.extend_from_slice(raw);
            if *name == self.join_field {
                for ((_, quoted, default), value) in self.fields.iter().zip(found.iter()) {
                    let value = value.or(default.as_deref().map(str::as_bytes));
                    if let Some(value) = value {
                        self.buf.push(b',');
                        self.buf.extend_from_slice(quoted.as_bytes());
                        self.buf.push(b':');
                        self.buf.extend_from_slice(value);
                    }
                }
            }
        }
        self.buf.push(b'}');
        out.emit(record).value_owned(&self.buf);
        Ok(())
    }
}

/// Appends `key` as a JSON string: as it is when nothing in it needs
/// escaping (the usual case, no allocation), else through serde_json.
fn push_key(buf: &mut Vec<u8>, key: &str) {
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push(b'"');
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'"');
    } else {
        buf.extend_from_slice(serde_json::Value::from(key).to_string().as_bytes());
    }
}

sluice_sdk::export_join!(JsonEnrich);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_sdk::testing::{self, TestRecord};

    fn enrich() -> JsonEnrich {
        testing::set_table(
            "products",
            [
                ("1", r#"{"id":1, "name":"produit1"}"#),
                ("2", r#"{"id":2, "name":"produit2"}"#),
            ],
        );
        let config = testing::config(json!({
            "table": "products",
            "join_field": "id",
            "fields": ["name"],
            "default": {"name": "REF INCONNUE"},
        }))
        .unwrap();
        JsonEnrich::init(config).unwrap()
    }

    #[test]
    fn copies_fields_after_the_join_field_and_keeps_the_rest_byte_for_byte() {
        let mut e = enrich();
        let out = testing::transform(
            &mut e,
            [
                TestRecord::new(r#"{"id": 2, "price": 13.40}"#),
                TestRecord::new(r#"{"id": 30, "price": 1.05}"#),
                TestRecord::new(r#"{"price": 1, "id": "1", "name": "old"}"#),
            ],
        );
        let values: Vec<String> = out
            .outputs
            .records()
            .map(|r| String::from_utf8(r.value().to_vec()).unwrap())
            .collect();
        assert_eq!(
            values,
            [
                r#"{"id":2,"name":"produit2","price":13.40}"#,
                r#"{"id":30,"name":"REF INCONNUE","price":1.05}"#,
                r#"{"price":1,"id":"1","name":"produit1"}"#,
            ]
        );
    }

    #[test]
    fn keys_that_need_escaping_stay_escaped() {
        let mut e = enrich();
        let out = testing::transform(&mut e, [TestRecord::new(r#"{"id":1,"a\"b":2}"#)]);
        let value = out.outputs.records().next().unwrap().value().to_vec();
        assert_eq!(
            String::from_utf8(value).unwrap(),
            r#"{"id":1,"name":"produit1","a\"b":2}"#
        );
    }

    #[test]
    fn a_record_without_the_join_field_is_a_record_error() {
        let mut e = enrich();
        let out = testing::transform(&mut e, [TestRecord::new(r#"{"price": 1}"#)]);
        assert_eq!(out.errors.len(), 1, "{out:?}");
        assert_eq!(out.outputs.records().count(), 0);
    }

    #[test]
    fn a_default_for_a_field_not_copied_is_refused() {
        let config = testing::config(json!({
            "table": "products", "join_field": "id", "fields": ["name"],
            "default": {"colour": "red"},
        }))
        .unwrap();
        let err = JsonEnrich::init(config).err().unwrap();
        assert!(err.to_string().contains("config.default.colour"), "{err}");
    }
}
