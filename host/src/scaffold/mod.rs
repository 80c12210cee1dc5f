//! `sluice new`: a plugin project outside the workspace, ready to build,
//! test (`sluice test`) and run (`sluice dev`), in Rust, Python or
//! JavaScript.
//!
//! - [`rust`]: a crate on `sluice-sdk`, by path from the checkout this
//!   `sluice` was built in, until the SDK is published.
//! - [`python`]: `app.py` on the Python SDK, built by `build.sh` with
//!   componentize-py.
//! - [`js`]: `plugin.js` on the JS SDK, with `package.json`, built by
//!   `build.sh` with componentize-js.
//!
//! The Python and JS projects carry their own copy of the SDK and of the
//! WIT (both are small), so they build wherever the tools are installed.
//! All three write the same behaviour for a kind, with the same fixture.

mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};

/// The WIT files, for the Python and JS projects' builds.
const WIT: [(&str, &str); 9] = [
    ("wit/log.wit", include_str!("../../../wit/log.wit")),
    ("wit/packed.wit", include_str!("../../../wit/packed.wit")),
    ("wit/plugin.wit", include_str!("../../../wit/plugin.wit")),
    (
        "wit/presence.wit",
        include_str!("../../../wit/presence.wit"),
    ),
    ("wit/sets.wit", include_str!("../../../wit/sets.wit")),
    ("wit/state.wit", include_str!("../../../wit/state.wit")),
    ("wit/tables.wit", include_str!("../../../wit/tables.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/worlds.wit", include_str!("../../../wit/worlds.wit")),
];

use anyhow::{Context as _, bail};

/// What a plugin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Keeps or drops records.
    Filter,
    /// Rewrites records and picks their ports.
    Transform,
    /// A transform that reads tables.
    Join,
}

impl Kind {
    /// The kind as a word, as in the WIT world's name.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Transform => "transform",
            Kind::Join => "join",
        }
    }
}

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on `sluice-sdk`.
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    Js,
}

/// Writes project `name` into directory `dir` (which must not exist yet).
/// Returns the files written.
pub fn create(dir: &Path, name: &str, kind: Kind, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit() || c == '-')
    {
        bail!(
            "`{name}`: a plugin name is lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let mut files = match lang {
        Lang::Rust => rust::files(name, kind),
        Lang::Python => python::files(name, kind),
        Lang::Js => js::files(name, kind),
    };
    let fixture = match kind {
        Kind::Filter => FILTER_FIXTURE,
        Kind::Transform => TRANSFORM_FIXTURE,
        Kind::Join => JOIN_FIXTURE,
    };
    files.push(("fixtures/basic.json", fixture.to_owned()));
    files.push(("sluice.toml", sample_config(name, kind, lang)));
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if file.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// `my-plugin` → `MyPlugin`.
pub(crate) fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn sample_config(name: &str, kind: Kind, lang: Lang) -> String {
    let (config, tables) = match kind {
        Kind::Join => (
            r#"{ table = "labels", default = "unknown" }
tables = ["labels"]

# The table: Redis hash `labels` (key → label). Fill it with
#   redis-cli HSET labels client-1 gold
[tables.labels]
type = "redis"
url = "${REDIS_URL:-redis://127.0.0.1:6379}"
hash = "labels""#,
            "",
        ),
        _ => (r#"{ prefix = "client-" }"#, ""),
    };
    let (what, memory) = match lang {
        Lang::Rust => ("crate", ""),
        // The Python and JS runtimes' heaps outgrow the default 64 MiB
        // under a steady stream of batches.
        Lang::Python | Lang::Js => ("project", "\nmemory_limit = \"256MiB\""),
    };
    format!(
        r#"# Run with `sluice dev sluice.toml`: the {what} is rebuilt and hot-reloaded
# when its sources change. Post records and watch them come out:
#   curl -H 'content-type: application/x-ndjson' \
#        -d '{{"key":"client-1","value":{{"n":1}}}}' http://127.0.0.1:8080/ingest/in

[sources.in]
type = "http"
{tables}
[plugins.{name}]
crate = "."{memory}
config = {config}

[sinks.out]
type = "stdout"

[routes.r]
from = "in"
through = ["{name}"]
to = ["out"]
"#
    )
}

const FILTER_FIXTURE: &str = r#"{
  "config": { "prefix": "client-" },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "other", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": {}, "timestamp": 1000 }
  ],
  "errors": []
}
"#;

const TRANSFORM_FIXTURE: &str = r#"{
  "config": { "prefix": "client-" },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "other", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": { "matched": "yes" }, "timestamp": 1000, "port": "matched" },
    { "key": "other", "value": { "n": 2 }, "headers": {}, "timestamp": 1001 }
  ],
  "errors": []
}
"#;

const JOIN_FIXTURE: &str = r#"{
  "config": { "table": "labels", "default": "unknown" },
  "tables": { "labels": { "client-1": "gold" } },
  "input": [
    { "key": "client-1", "value": { "n": 1 }, "timestamp": 1000 },
    { "key": "client-9", "value": { "n": 2 }, "timestamp": 1001 }
  ],
  "expected": [
    { "key": "client-1", "value": { "n": 1 }, "headers": { "label": "gold" }, "timestamp": 1000 },
    { "key": "client-9", "value": { "n": 2 }, "headers": { "label": "unknown" }, "timestamp": 1001 }
  ],
  "errors": []
}
"#;
