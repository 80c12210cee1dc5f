//! `sluice test`: golden tests of a plugin, with no broker.
//!
//! A fixture is a JSON file:
//!
//! ```json
//! {
//!   "config": { "patterns": ["client-*"] },
//!   "input": [
//!     { "key": "client-1", "value": {"n": 1}, "headers": {"h": "v"}, "timestamp": 1000 }
//!   ],
//!   "expected": [
//!     { "key": "client-1", "value": {"n": 1}, "headers": {"h": "v"}, "timestamp": 1000 }
//!   ],
//!   "errors": [],
//!   "tables": { "products": { "1": {"name": "Lamp"} } }
//! }
//! ```
//!
//! `value` is any JSON (written as its JSON text) or a string (written as
//! it is). An expected record names its output `port` when it is not the
//! default one. `errors` lists the records the plugin failed on:
//! `{ "input": <index>, "error": "<the plugin's message>" }`. `tables`
//! (for a join) gives each table's entries, key → value (JSON, or a
//! string as it is); the plugin may open exactly those.
//!
//! The records go through the host's real stage ([`Chain`]) in one batch,
//! with the plugin's limits and the host's validation of what it returns;
//! records it fails on are caught as dead letters. `--update` writes what
//! came out into the fixture.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::config::{OnError, PluginConfig};
use crate::metrics::Metrics;
use crate::pipeline::{Chain, StageSpec};
use crate::record::{FlatBatch, Origin, Position};
use crate::tables::{Table, Tables};
use crate::wasm::{HostImports, PluginSlot, load_plugin_with};

/// What one fixture run found.
#[derive(Debug)]
pub struct Outcome {
    /// The fixture file.
    pub file: PathBuf,
    /// The records out, as a fixture's `expected`.
    pub expected: Vec<Value>,
    /// The failed records, as a fixture's `errors`.
    pub errors: Vec<Value>,
    /// A readable diff when they are not what the fixture expects.
    pub diff: Option<String>,
}

/// The component and fixtures `target` names: a component file (`.wasm`,
/// or `.cwasm`) with `fixtures`, or a plugin project directory (a Rust
/// crate, or a project with a `build.sh`), built first, whose fixtures
/// default to `fixtures/*.json` in it.
pub async fn resolve(
    target: &Path,
    fixtures: Vec<PathBuf>,
) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    if target.is_dir() {
        let wasm = crate::reload::build_crate(target)
            .await
            .with_context(|| format!("cannot build {}", target.display()))?;
        let fixtures = if fixtures.is_empty() {
            let dir = target.join("fixtures");
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("no fixtures given and none in {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            found
        } else {
            fixtures
        };
        return Ok((wasm, fixtures));
    }
    if fixtures.is_empty() {
        bail!(
            "name the fixtures to run against {} (or give a plugin project directory with fixtures/*.json)",
            target.display()
        );
    }
    Ok((target.to_owned(), fixtures))
}

/// Runs `fixture` against the component `wasm`.
pub async fn run(wasm: &Path, fixture: &Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(fixture)
        .with_context(|| format!("cannot read {}", fixture.display()))?;
    let spec: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", fixture.display()))?;
    let config = spec.get("config").cloned().unwrap_or_else(|| json!({}));
    let Some(input) = spec.get("input").and_then(Value::as_array) else {
        bail!("{}: `input` must be a list of records", fixture.display());
    };
    let batch = input_batch(input).with_context(|| fixture.display().to_string())?;
    let tables =
        fixture_tables(spec.get("tables")).with_context(|| fixture.display().to_string())?;
    let table_names: Vec<String> = tables.iter().map(|(n, _)| n.clone()).collect();
    let plugin_config: PluginConfig = serde_json::from_value(json!({
        "path": wasm,
        "allow_precompiled": wasm.extension().is_some_and(|e| e == "cwasm"),
        "on_error": "dead_letter",
        "dead_letter": "errors",
        "tables": table_names,
        "config": config,
    }))
    .with_context(|| format!("{}: `config` must be a table", fixture.display()))?;
    let imports = HostImports {
        tables,
        ..HostImports::default()
    };
    let loaded = load_plugin_with("under-test", &plugin_config, imports.clone())
        .await
        .with_context(|| format!("{}: cannot load {}", fixture.display(), wasm.display()))?;
    let spec_stage = StageSpec {
        plugin: PluginSlot::fixed(Arc::clone(&loaded.plugin)),
        on_error: OnError::DeadLetter,
        dead_letter: Some("errors".into()),
        imports,
        poison_attempts: plugin_config.poison_attempts,
    };
    let output = tokio::task::spawn_blocking(move || {
        let mut chain = Chain::new("test", 0, &[spec_stage], &Metrics::new());
        chain.process(batch)
    })
    .await?;
    if let Some(reason) = output.stop {
        bail!("{}: the stage stopped: {reason}", fixture.display());
    }
    let expected: Vec<Value> = output
        .records
        .records()
        .zip(&output.ports)
        .map(|(r, port)| {
            let mut v = record_json(&r);
            let name = output
                .port_names
                .get(*port as usize)
                .map_or("", String::as_str);
            if !name.is_empty()
                && let Some(o) = v.as_object_mut()
            {
                o.insert("port".into(), json!(name));
            }
            v
        })
        .collect();
    let errors: Vec<Value> = output
        .dead_letters
        .iter()
        .flat_map(|(_, b)| b.records().map(|r| error_json(&r)).collect::<Vec<_>>())
        .collect();
    let want_records = spec.get("expected").cloned().unwrap_or_else(|| json!([]));
    let want_errors = spec.get("errors").cloned().unwrap_or_else(|| json!([]));
    let mut diff = String::new();
    diff_lists(
        "expected",
        &want_records,
        &Value::Array(expected.clone()),
        &mut diff,
    );
    diff_lists(
        "errors",
        &want_errors,
        &Value::Array(errors.clone()),
        &mut diff,
    );
    Ok(Outcome {
        file: fixture.to_owned(),
        expected,
        errors,
        diff: (!diff.is_empty()).then_some(diff),
    })
}

/// Writes `outcome`'s records and errors into its fixture, keeping the rest.
pub fn update(outcome: &Outcome) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&outcome.file)?;
    let mut spec: Value = serde_json::from_str(&text)?;
    if let Some(o) = spec.as_object_mut() {
        o.insert("expected".into(), Value::Array(outcome.expected.clone()));
        o.insert("errors".into(), Value::Array(outcome.errors.clone()));
    }
    let mut out = serde_json::to_string_pretty(&spec)?;
    out.push('\n');
    std::fs::write(&outcome.file, out)
        .with_context(|| format!("cannot write {}", outcome.file.display()))
}

/// The fixture's `tables`, filled and ready.
fn fixture_tables(spec: Option<&Value>) -> anyhow::Result<Tables> {
    let Some(spec) = spec else {
        return Ok(Tables::default());
    };
    let Some(spec) = spec.as_object() else {
        bail!("`tables` must map table names to {{key: value}} objects");
    };
    let metrics = Metrics::new();
    let mut tables = Vec::new();
    for (name, entries) in spec {
        let Some(entries) = entries.as_object() else {
            bail!("tables.{name} must be an object of key: value");
        };
        let table = Arc::new(Table::new(name, &metrics));
        let values: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                (k.clone(), bytes)
            })
            .collect();
        table.apply(
            values
                .iter()
                .map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))),
        );
        table.set_ready();
        tables.push(table);
    }
    Ok(Tables::of(tables))
}

fn input_batch(input: &[Value]) -> anyhow::Result<FlatBatch> {
    let origin = Origin {
        source: "test".into(),
        topic: "test".into(),
        partition: 0,
        db: 0,
    };
    let mut batch = FlatBatch::new(origin);
    for (i, r) in input.iter().enumerate() {
        let key = match r.get("key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => bail!("input[{i}].key must be a string or null, not {other}"),
        };
        let value = match r.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone().into_bytes()),
            Some(v) => Some(v.to_string().into_bytes()),
        };
        let timestamp = r.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
        let headers: Vec<(String, String)> = match r.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => bail!("input[{i}].headers.{k} must be a string, not {other}"),
                })
                .collect::<anyhow::Result<_>>()?,
            Some(other) => bail!("input[{i}].headers must be an object, not {other}"),
        };
        batch.push(
            Position {
                offset: i as u64,
                sequence: 0,
            },
            key.as_deref().map(str::as_bytes),
            value.as_deref(),
            timestamp,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
    }
    Ok(batch)
}

/// A value as the fixture writes it: JSON when it parses, else a string.
fn value_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    }
}

fn record_json(r: &crate::record::Record<'_>) -> Value {
    let headers: Map<String, Value> = r
        .headers()
        .map(|(k, v)| (k.to_owned(), json!(String::from_utf8_lossy(v))))
        .collect();
    json!({
        "key": r.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "value": value_json(r.value_opt()),
        "headers": headers,
        "timestamp": r.timestamp(),
    })
}

fn error_json(r: &crate::record::Record<'_>) -> Value {
    let header = |name: &str| {
        r.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let input = header(crate::pipeline::stage::headers::ORIGIN_POSITION)
        .and_then(|p| p.split('-').next().and_then(|n| n.parse::<u64>().ok()));
    json!({
        "input": input,
        "error": header(crate::pipeline::stage::headers::ERROR),
    })
}

/// Appends a diff of `want` and `got` (both JSON lists) under `label`:
/// each differing item as `-` (expected) and `+` (actual) lines.
fn diff_lists(label: &str, want: &Value, got: &Value, out: &mut String) {
    use std::fmt::Write as _;
    if want == got {
        return;
    }
    let empty = Vec::new();
    let want = want.as_array().unwrap_or(&empty);
    let got = got.as_array().unwrap_or(&empty);
    let _ = writeln!(
        out,
        "{label}: {} expected, {} actual",
        want.len(),
        got.len()
    );
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i), got.get(i));
        if w == g {
            continue;
        }
        let _ = writeln!(out, "  [{i}]");
        if let Some(w) = w {
            let _ = writeln!(out, "  - {w}");
        }
        if let Some(g) = g {
            let _ = writeln!(out, "  + {g}");
        }
    }
}
