//! The JavaScript project `sluice new --lang js` writes: `plugin.js` on the
//! JS SDK (a copy, in `sluice-sdk/`), the WIT, `package.json`, a
//! `build.sh` for componentize-js and a `node --test` file.

use super::{Kind, WIT};

const SDK: [(&str, &str); 12] = [
    (
        "sluice-sdk/sluice.js",
        include_str!("../../../plugins/sdk-js/src/sluice.js"),
    ),
    (
        "sluice-sdk/batch.js",
        include_str!("../../../plugins/sdk-js/src/batch.js"),
    ),
    (
        "sluice-sdk/join.js",
        include_str!("../../../plugins/sdk-js/src/join.js"),
    ),
    (
        "sluice-sdk/testing.js",
        include_str!("../../../plugins/sdk-js/src/testing.js"),
    ),
    (
        "sluice-sdk/native/register.js",
        include_str!("../../../plugins/sdk-js/src/native/register.js"),
    ),
    (
        "sluice-sdk/native/hooks.js",
        include_str!("../../../plugins/sdk-js/src/native/hooks.js"),
    ),
    (
        "sluice-sdk/native/host.js",
        include_str!("../../../plugins/sdk-js/src/native/host.js"),
    ),
    (
        "sluice-sdk/native/log.js",
        include_str!("../../../plugins/sdk-js/src/native/log.js"),
    ),
    (
        "sluice-sdk/native/presence.js",
        include_str!("../../../plugins/sdk-js/src/native/presence.js"),
    ),
    (
        "sluice-sdk/native/sets.js",
        include_str!("../../../plugins/sdk-js/src/native/sets.js"),
    ),
    (
        "sluice-sdk/native/state.js",
        include_str!("../../../plugins/sdk-js/src/native/state.js"),
    ),
    (
        "sluice-sdk/native/tables.js",
        include_str!("../../../plugins/sdk-js/src/native/tables.js"),
    ),
];

/// The files of a JavaScript project, as (path, contents).
pub(super) fn files(name: &str, kind: Kind) -> Vec<(&'static str, String)> {
    let plugin = match kind {
        Kind::Filter => include_str!("templates/js/filter.js"),
        Kind::Transform => include_str!("templates/js/transform.js"),
        Kind::Join => include_str!("templates/js/join.js"),
    };
    let mut files = vec![
        ("plugin.js", plugin.to_owned()),
        (
            "plugin.test.js",
            include_str!("templates/js/plugin.test.js").to_owned(),
        ),
        ("package.json", package_json(name)),
        ("build.sh", build_script(kind)),
        ("README.md", readme(name, kind)),
        (".gitignore", "/plugin.wasm\n/node_modules/\n".to_owned()),
    ];
    files.extend(SDK.iter().chain(&WIT).map(|(p, t)| (*p, (*t).to_owned())));
    files
}

fn package_json(name: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "sh build.sh",
    "test": "node --import ./sluice-sdk/native/register.js --test"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0"
  }}
}}
"#
    )
}

fn build_script(kind: Kind) -> String {
    format!(
        r#"#!/bin/sh
# Builds plugin.wasm from plugin.js with componentize-js 0.23.0 (`npm
# install` puts it in node_modules; one on PATH works too). componentize-js
# loads modules only from the source's own directory tree, so the plugin
# and the SDK are staged together. `--disable http fetch-event`: Sluice
# does not link wasi:http.
set -eu
cd "$(dirname "$0")"
PATH="$PWD/node_modules/.bin:$PATH"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp plugin.js "$stage/"
cp -R sluice-sdk "$stage/sluice-sdk"
componentize-js "$stage/plugin.js" --wit wit --world-name {world} \
    --disable http fetch-event -o plugin.wasm
"#,
        world = kind.word()
    )
}

fn readme(name: &str, kind: Kind) -> String {
    format!(
        r#"# {name}

A Sluice {kind} plugin in JavaScript.

    npm install                     # componentize-js 0.23.0
    npm test                        # the plugin's native tests (node --test)
    npm run build                   # writes plugin.wasm (about 12 MB)
    sluice test .                   # builds it, runs fixtures/*.json through the host
    sluice test . --update          # writes what came out into the fixtures
    sluice dev sluice.toml          # runs it, rebuilding and hot-reloading on change

`sluice-sdk/` and `wit/` are copies from the Sluice that created this
project. A JS component is large: the first load compiles it for 15-20 s,
later loads come from Sluice's compile cache (`SLUICE_CACHE_DIR`), and
`sluice compile plugin.wasm` precompiles it for deployment.
"#,
        kind = kind.word()
    )
}
