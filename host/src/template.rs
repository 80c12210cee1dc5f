//! Names filled from a record: `"client:{key}"`, `"orders-{header.region}"`,
//! `"events-{field.region}"` (a top-level JSON field of the value).

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::record::Record;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Key,
    Header(String),
    Field(String),
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
                _ if name.starts_with("header.") && name.len() > 7 => Part::Header(name[7..].to_owned()),
                _ if name.starts_with("field.") && name.len() > 6 => Part::Field(name[6..].to_owned()),
                _ => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{name}}}`; use {{key}}, {{header.NAME}} or {{field.NAME}}"
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
            }
        }
        Ok(())
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
}
