//! The Python project `sluice new --lang python` writes: `app.py` on the
//! Python SDK (a copy, in `sluice_sdk/`), the WIT, a `build.sh` for
//! componentize-py and a pytest file.

use super::{Kind, WIT};

const SDK: [(&str, &str); 5] = [
    (
        "sluice_sdk/__init__.py",
        include_str!("../../../plugins/sdk-python/sluice_sdk/__init__.py"),
    ),
    (
        "sluice_sdk/_host.py",
        include_str!("../../../plugins/sdk-python/sluice_sdk/_host.py"),
    ),
    (
        "sluice_sdk/batch.py",
        include_str!("../../../plugins/sdk-python/sluice_sdk/batch.py"),
    ),
    (
        "sluice_sdk/output.py",
        include_str!("../../../plugins/sdk-python/sluice_sdk/output.py"),
    ),
    (
        "sluice_sdk/testing.py",
        include_str!("../../../plugins/sdk-python/sluice_sdk/testing.py"),
    ),
];

/// The files of a Python project, as (path, contents).
pub(super) fn files(name: &str, kind: Kind) -> Vec<(&'static str, String)> {
    let app = match kind {
        Kind::Filter => include_str!("templates/python/filter.py"),
        Kind::Transform => include_str!("templates/python/transform.py"),
        Kind::Join => include_str!("templates/python/join.py"),
    };
    let mut files = vec![
        ("app.py", app.to_owned()),
        (
            "test_app.py",
            include_str!("templates/python/test_app.py").to_owned(),
        ),
        ("build.sh", build_script(kind)),
        ("README.md", readme(name, kind)),
        (
            ".gitignore",
            "/plugin.wasm\n__pycache__/\n.pytest_cache/\n".to_owned(),
        ),
    ];
    files.extend(SDK.iter().chain(&WIT).map(|(p, t)| (*p, (*t).to_owned())));
    files
}

fn build_script(kind: Kind) -> String {
    format!(
        r#"#!/bin/sh
# Builds plugin.wasm from app.py with componentize-py 0.25.1:
#   pip install componentize-py==0.25.1
# The packed-* world carries the batch's integer columns as bytes, which
# Python decodes with one call per column instead of one int per element.
set -eu
cd "$(dirname "$0")"
exec componentize-py -d wit -w packed-{world} componentize app -p . -o plugin.wasm
"#,
        world = kind.word()
    )
}

fn readme(name: &str, kind: Kind) -> String {
    format!(
        r#"# {name}

A Sluice {kind} plugin in Python.

    pip install componentize-py==0.25.1 pytest
    python -m pytest                # the plugin's native tests (sluice_sdk.testing)
    ./build.sh                      # writes plugin.wasm (about 18 MB)
    sluice test .                   # builds it, runs fixtures/*.json through the host
    sluice test . --update          # writes what came out into the fixtures
    sluice dev sluice.toml          # runs it, rebuilding and hot-reloading on change

`sluice_sdk/` and `wit/` are copies from the Sluice that created this
project. A Python component is large: the first load compiles it for
15-20 s, later loads come from Sluice's compile cache (`SLUICE_CACHE_DIR`),
and `sluice compile plugin.wasm` precompiles it for deployment.
"#,
        kind = kind.word()
    )
}
