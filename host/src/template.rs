//! Names filled from a record: `"client:{key}"`, `"orders-{header.region}"`,
//! `"events-{field.region}"` (a top-level JSON field of the value),
//! `"copy-{origin.topic}"` (where the record came from: `{origin.topic}` is
//! the Kafka topic or Redis stream, `{origin.partition}` the partition,
//! `{origin.db}` the Redis database, `{origin.source}` the source's name).
//!
//! [`Destination`] adds a glob map in front of a template: the first entry
//! whose pattern matches the record's origin topic names it, else the
//! fallback does.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::record::Record;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Key,
    Header(String),
    Field(String),
    OriginTopic,
    OriginPartition,
    OriginSource,
    OriginDb,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Why a template could not be filled for a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot fill `{template}`: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("`{text}`: `{{` without `}}`"));
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "key" => Part::Key,
                "origin.topic" => Part::OriginTopic,
                "origin.partition" => Part::OriginPartition,
                "origin.source" => Part::OriginSource,
                "origin.db" => Part::OriginDb,
                _ if name.starts_with("header.") && name.len() > 7 => Part::Header(name[7..].to_owned()),
                _ if name.starts_with("field.") && name.len() > 6 => Part::Field(name[6..].to_owned()),
                _ => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{name}}}`; use {{key}}, {{header.NAME}}, {{field.NAME}}, {{origin.topic}}, {{origin.partition}}, {{origin.db}} or {{origin.source}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            source: text.to_owned(),
            parts,
        })
    }

    /// The text, if it has no placeholders.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Fills the template from `record`.
    pub fn render(&self, record: &Record<'_>) -> Result<String, TemplateError> {
        let mut out = String::new();
        self.render_into(record, &mut out)?;
        Ok(out)
    }

    /// Fills the template from `record`, appending to `out` (so a sink can
    /// reuse one buffer for a whole batch).
    pub fn render_into(&self, record: &Record<'_>, out: &mut String) -> Result<(), TemplateError> {
        let fail = |reason: String| TemplateError {
            template: self.source.clone(),
            reason,
        };
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Key => out.push_str(
                    record
                        .key_str()
                        .ok_or_else(|| fail("the record has no UTF-8 key".into()))?,
                ),
                Part::Header(h) => {
                    let v = record
                        .header(h)
                        .ok_or_else(|| fail(format!("no header `{h}`")))?;
                    out.push_str(
                        std::str::from_utf8(v)
                            .map_err(|_| fail(format!("header `{h}` is not UTF-8")))?,
                    );
                }
                Part::Field(f) => {
                    let v = sluice_format::json::field(record.value(), f)
                        .map_err(|e| fail(e.to_string()))?
                        .ok_or_else(|| fail(format!("no JSON field `{f}`")))?;
                    out.push_str(&v);
                }
                Part::OriginTopic => out.push_str(&record.origin().topic),
                Part::OriginPartition => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{}", record.origin().partition);
                }
                Part::OriginSource => out.push_str(&record.origin().source),
                Part::OriginDb => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{}", record.origin().db);
                }
            }
        }
        Ok(())
    }
}

/// One entry of a glob map: `{ match = "device:*:stream", topic = "…" }`
/// (`stream = "…"` in a `redis_stream` sink's `stream_map`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    /// A glob (`*`, `?`) over the record's origin topic: the Kafka topic or
    /// Redis stream it came from.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Where matching records go; may itself be a template.
    #[serde(alias = "stream")]
    pub topic: Template,
}

/// Where a record goes: the first [`MapEntry`] whose pattern matches its
/// origin topic, in the order written, else the fallback template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    map: Vec<MapEntry>,
    fallback: Option<Template>,
}

impl Destination {
    /// `map`, then `fallback`.
    pub fn new(map: Vec<MapEntry>, fallback: Option<Template>) -> Self {
        Self { map, fallback }
    }

    /// The name, when it is the same for every record (no map, a fixed
    /// fallback).
    pub fn fixed(&self) -> Option<&str> {
        match (self.map.is_empty(), &self.fallback) {
            (true, Some(t)) => t.fixed(),
            _ => None,
        }
    }

    /// Every name that does not depend on the record (for creating topics
    /// up front).
    pub fn fixed_names(&self) -> impl Iterator<Item = &str> {
        self.map
            .iter()
            .map(|e| &e.topic)
            .chain(&self.fallback)
            .filter_map(Template::fixed)
    }

    /// The name for `record`, appended to `out`. A record that no entry
    /// matches, with no fallback, is an error.
    pub fn render_into(&self, record: &Record<'_>, out: &mut String) -> Result<(), TemplateError> {
        let origin = &record.origin().topic;
        let template = self
            .map
            .iter()
            .find(|e| sluice_format::glob_match(&e.pattern, origin))
            .map(|e| &e.topic)
            .or(self.fallback.as_ref())
            .ok_or_else(|| TemplateError {
                template: "the map".into(),
                reason: format!("origin `{origin}` matches no entry and there is no fallback"),
            })?;
        template.render_into(record, out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Template::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FlatBatch, Position};

    #[test]
    fn fills_from_key_header_and_field() {
        let mut b = FlatBatch::default();
        b.push(
            Position::default(),
            Some(b"c1"),
            Some(br#"{"region":"eu"}"#),
            0,
            [("h", &b"x"[..])],
        );
        let r = b.get(0).unwrap();
        let t = Template::parse("a-{key}-{header.h}-{field.region}").unwrap();
        assert_eq!(t.render(&r).unwrap(), "a-c1-x-eu");
        assert_eq!(Template::parse("plain").unwrap().fixed(), Some("plain"));
        assert!(Template::parse("{nope}").is_err());
        assert!(Template::parse("{key").is_err());
        let missing = Template::parse("{header.zz}")
            .unwrap()
            .render(&r)
            .unwrap_err();
        assert!(missing.to_string().contains("no header `zz`"));
    }

    #[test]
    fn the_first_matching_map_entry_wins_then_the_fallback() {
        let entry = |m: &str, t: &str| MapEntry {
            pattern: m.into(),
            topic: Template::parse(t).unwrap(),
        };
        let map = vec![
            entry("device:*:stream", "devices"),
            entry("*-stream", "streams-{origin.partition}-{origin.db}"),
            entry("device:*", "never-reached"),
        ];
        let render = |dest: &Destination, topic: &str| {
            let mut b = FlatBatch::new(crate::record::Origin {
                source: "s".into(),
                topic: topic.into(),
                partition: 3,
                db: 7,
            });
            b.push(Position::default(), None, Some(b"v"), 0, []);
            let mut out = String::new();
            dest.render_into(&b.get(0).unwrap(), &mut out).map(|()| out)
        };
        let with = Destination::new(
            map.clone(),
            Some(Template::parse("rest-{origin.topic}").unwrap()),
        );
        assert_eq!(render(&with, "device:1:stream").unwrap(), "devices");
        assert_eq!(render(&with, "orders-stream").unwrap(), "streams-3-7");
        assert_eq!(render(&with, "other").unwrap(), "rest-other");
        let without = Destination::new(map, None);
        let err = render(&without, "other").unwrap_err();
        assert!(err.to_string().contains("matches no entry"), "{err}");
        assert_eq!(with.fixed(), None);
        assert_eq!(
            with.fixed_names().collect::<Vec<_>>(),
            ["devices", "never-reached"]
        );
    }
}
