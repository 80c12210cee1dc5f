//! Fast reads of JSON record values.
//!
//! Parsing a whole value into `serde_json::Value` allocates for every field.
//! These helpers borrow from the record instead, which is what a per-record
//! plugin wants.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The fields of a JSON object, borrowed from its text.
pub type Fields<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

/// Parses a JSON object into its fields without copying their values.
pub fn fields(value: &[u8]) -> Result<Fields<'_>, serde_json::Error> {
    serde_json::from_slice(value)
}

/// The top-level field `name` of the JSON object `value`, as text: a string's
/// contents, a number's or boolean's literal, or an object's or array's JSON.
/// `Ok(None)` when the field is missing or null.
pub fn field<'a>(value: &'a [u8], name: &str) -> Result<Option<Cow<'a, str>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(value);
    let raw = FieldSeed(name).deserialize(&mut de)?;
    de.end()?;
    raw.map(scalar_text).transpose().map(Option::flatten)
}

/// A raw JSON value as text (see [`field`]); `None` for null.
pub fn scalar_text(raw: &RawValue) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<'_, str>>(text).map(Some),
        _ if text == "null" => Ok(None),
        _ => Ok(Some(Cow::Borrowed(text))),
    }
}

struct FieldSeed<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_field_of_any_kind() {
        let v = br#"{"a":"x\"y","n":12,"o":{"k":[1]},"z":null}"#;
        assert_eq!(field(v, "a").unwrap().as_deref(), Some("x\"y"));
        assert_eq!(field(v, "n").unwrap().as_deref(), Some("12"));
        assert_eq!(field(v, "o").unwrap().as_deref(), Some(r#"{"k":[1]}"#));
        assert_eq!(field(v, "z").unwrap(), None);
        assert_eq!(field(v, "missing").unwrap(), None);
        assert!(field(b"[1,2]", "a").is_err());
        assert!(field(b"{\"a\":1} trailing", "a").is_err());
        assert!(field(b"not json", "a").is_err());
    }

    #[test]
    fn fields_borrow_values() {
        let f = fields(br#"{"a":1,"b":"two"}"#).unwrap();
        assert_eq!(f["a"].get(), "1");
        assert_eq!(f["b"].get(), "\"two\"");
    }
}
