//! Names filled from records (`template::Template`: `{key}`,
//! `{header.NAME}`, `{field.NAME}`, `{origin.topic}`, …) and the glob maps
//! in front of them (`template::Destination`).
//!
//! Input, split on 0xFF bytes (never part of UTF-8 text): the template,
//! then the record's key, value, origin topic, a glob pattern for the map
//! entry, and header name/value pairs. A missing key means no key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::template::{Destination, MapEntry, Template};
use sluice_format::{FlatBatch, Origin, Position, glob_match};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let Some(Ok(text)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let key = parts.next();
    let value = parts.next().unwrap_or_default();
    let topic = parts.next().map(lossy).unwrap_or_default();
    let pattern = parts.next().map(lossy).unwrap_or_else(|| "*".to_owned());
    let rest: Vec<&[u8]> = parts.collect();
    let headers: Vec<(String, &[u8])> = rest
        .chunks(2)
        .map(|pair| (lossy(pair[0]), pair.get(1).copied().unwrap_or_default()))
        .collect();

    let mut batch = FlatBatch::new(Origin {
        source: "fuzz".to_owned(),
        topic: topic.clone(),
        partition: i32::try_from(data.len() % 3).unwrap_or(0) - 1,
        db: u32::MAX,
    });
    batch.push(
        Position::default(),
        key,
        Some(value),
        0,
        headers.iter().map(|(n, v)| (n.as_str(), *v)),
    );
    let record = batch.get(0).expect("one record was pushed");

    let template = match Template::parse(text) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                text.contains('{'),
                "text without a placeholder refused: {e}"
            );
            return;
        }
    };
    assert_eq!(template.to_string(), text);
    assert_eq!(Template::parse(text).as_ref(), Ok(&template));
    if !text.contains('{') {
        assert_eq!(template.fixed(), Some(text));
    }

    let rendered = template.render(&record);
    if let Some(fixed) = template.fixed() {
        assert_eq!(rendered.as_deref().ok(), Some(fixed));
    }
    // A sink reuses one buffer: rendering appends.
    let mut out = "prefix:".to_owned();
    let appended = template.render_into(&record, &mut out);
    assert_eq!(appended.is_ok(), rendered.is_ok());
    if let Ok(r) = &rendered {
        assert_eq!(out, format!("prefix:{r}"));
    }

    // The map entry wins when its glob matches the origin topic; the
    // fallback (the topic itself) otherwise.
    let destination = Destination::new(
        vec![MapEntry {
            pattern: pattern.clone(),
            topic: template.clone(),
        }],
        Some(Template::parse("{origin.topic}").expect("a valid template")),
    );
    let mut out = String::new();
    let got = destination.render_into(&record, &mut out).map(|()| out);
    let want = if glob_match(&pattern, &topic) {
        rendered
    } else {
        Ok(topic.clone())
    };
    assert_eq!(got, want);
    let _ = destination.fixed();
    let _ = destination.fixed_names().count();
});
