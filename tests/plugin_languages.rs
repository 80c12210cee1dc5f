//! Plugins in Python and JavaScript (issue #16): the example plugins, built
//! with componentize-py and componentize-js, give the same outputs as their
//! Rust twins, through `sluice test` on the Rust plugins' own fixtures and
//! through a running route; `sluice new --lang python|js` projects of every
//! kind pass their native tests, build, and pass their fixtures.
//!
//! The tools come from `scripts/plugin-tools.sh` (in `target/tools/bin`) or
//! from PATH. Compiled components are shared between the `sluice`
//! processes here through a compile cache in `target/`, as in production
//! (`SLUICE_CACHE_DIR`): a 12-18 MB component compiles once, not per test.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// PATH with the plugin tools first; panics saying how to install them.
fn tool_path() -> OsString {
    let tools = workspace().join("target").join("tools").join("bin");
    let mut dirs = vec![tools];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let found = |tool: &str| dirs.iter().any(|d| d.join(tool).is_file());
    for tool in ["componentize-py", "componentize-js"] {
        assert!(
            found(tool),
            "{tool} is not installed: run scripts/plugin-tools.sh (the test script does)"
        );
    }
    std::env::join_paths(dirs).unwrap()
}

/// The compile cache the `sluice` processes of this test binary share,
/// emptied once per run: the cache has no eviction, and every scaffolded
/// project is a new 37 MB entry.
fn cache_dir() -> PathBuf {
    static CLEARED: std::sync::Once = std::sync::Once::new();
    let dir = workspace().join("target").join("sluice-test-compile-cache");
    CLEARED.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
    });
    dir
}

/// Runs `sluice ARGS` in `dir` with the tools on PATH and the shared cache.
fn sluice(dir: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new(env!("CARGO_BIN_EXE_sluice")).args(args), dir)
}

fn run(cmd: &mut Command, dir: &Path) -> (bool, String) {
    let out = cmd
        .current_dir(dir)
        .env("PATH", tool_path())
        .env("SLUICE_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    common::outcome(&out)
}

fn example(lang: &str, name: &str) -> PathBuf {
    workspace().join("plugins").join(lang).join(name)
}

#[test]
fn python_and_js_examples_pass_the_rust_plugins_fixtures() {
    for dir in [
        example("examples-python", "client_filter"),
        example("examples-python", "json_transform"),
        example("examples-js", "client-filter"),
        example("examples-js", "json-transform"),
    ] {
        // `fixtures` is a link to the Rust plugin's: the same expected
        // records, headers, ports and errors.
        assert!(
            dir.join("fixtures").read_link().is_ok(),
            "{}",
            dir.display()
        );
        let (ok, text) = sluice(&dir, &["test", "."]);
        assert!(ok, "{}: {text}", dir.display());
        assert!(
            text.contains("ok   ") && !text.contains("FAIL"),
            "{}: {text}",
            dir.display()
        );
    }
}

/// The same records through a route of Rust plugins and one of their Python
/// (filter) and JS (transform) twins give byte-identical output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_python_and_js_plugins_writes_what_the_rust_route_writes() {
    let path = tool_path();
    for dir in [
        example("examples-python", "client_filter"),
        example("examples-js", "json-transform"),
    ] {
        let built = sluice::reload::build_crate_with(&dir, &[("PATH", path.to_str().unwrap())])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(built, dir.join("plugin.wasm"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [sources.in]
        type = "http"
        [plugins.rust-filter]
        path = "{rust_filter}"
        config = {{ clients = ["client-1", "client-2"], patterns = ["vip-*"] }}
        [plugins.rust-project]
        path = "{rust_transform}"
        config = {{ fields = ["client_id", "event"], rename = {{ event = "type" }}, headers = {{ via = "sluice" }} }}
        [plugins.py-filter]
        memory_limit = "256MiB"
        path = "{py_filter}"
        config = {{ clients = ["client-1", "client-2"], patterns = ["vip-*"] }}
        [plugins.js-project]
        memory_limit = "256MiB"
        path = "{js_transform}"
        config = {{ fields = ["client_id", "event"], rename = {{ event = "type" }}, headers = {{ via = "sluice" }} }}
        [sinks.rust]
        type = "file"
        path = "rust.jsonl"
        [sinks.polyglot]
        type = "file"
        path = "polyglot.jsonl"
        [routes.rust]
        from = "in"
        through = ["rust-filter", "rust-project"]
        to = ["rust"]
        [routes.polyglot]
        from = "in"
        through = ["py-filter", "js-project"]
        to = ["polyglot"]
        "#,
        rust_filter = plugin("client-filter"),
        rust_transform = plugin("json-transform"),
        py_filter = example("examples-python", "client_filter")
            .join("plugin.wasm")
            .display(),
        js_transform = example("examples-js", "json-transform")
            .join("plugin.wasm")
            .display(),
    );
    let running = start(&text, tmp.path()).await;
    wait_ready(running.addr).await;
    let mut lines = Vec::new();
    for i in 0..200 {
        let client = match i % 4 {
            0 => "client-1".to_owned(),
            1 => "client-3".to_owned(),
            2 => format!("vip-{i}"),
            _ => "client-2".to_owned(),
        };
        lines.push(serde_json::json!({
            "key": client,
            "value": {"client_id": client, "event": format!("e{i}"), "secret": i},
            "headers": {"trace": format!("t{i}")},
        }));
    }
    lines.push(serde_json::json!({"key": "client-1", "value": "not json"}));
    lines.push(serde_json::json!({"value": {"client_id": "nobody"}}));
    let (status, body) = post_ndjson(running.addr, "in", &lines).await;
    assert!(status.is_success(), "{status}: {body}");
    let (rust, polyglot) = (
        tmp.path().join("rust.jsonl"),
        tmp.path().join("polyglot.jsonl"),
    );
    assert!(
        eventually(Duration::from_secs(20), || read_lines(&rust).len() == 150
            && read_lines(&polyglot).len() == 150)
        .await,
        "rust wrote {}, python+js wrote {}",
        read_lines(&rust).len(),
        read_lines(&polyglot).len()
    );
    running.shutdown().await.unwrap();
    let (rust, polyglot) = (
        std::fs::read_to_string(&rust).unwrap(),
        std::fs::read_to_string(&polyglot).unwrap(),
    );
    assert_eq!(rust, polyglot);
    let first = rust.lines().next().unwrap();
    assert!(
        first.contains(r#""value":{"client_id":"client-1","type":"e0"}"#)
            && first.contains(r#""trace":"t0","via":"sluice""#),
        "{first}"
    );
}

#[test]
fn sluice_new_python_and_js_projects_of_every_kind_test_build_and_pass() {
    let tmp = tempfile::tempdir().unwrap();
    for lang in ["python", "js"] {
        for kind in ["filter", "transform", "join"] {
            let name = format!("new-{lang}-{kind}");
            let (ok, text) = sluice(tmp.path(), &["new", &name, "--kind", kind, "--lang", lang]);
            assert!(ok, "{name}: {text}");
            let project = tmp.path().join(&name);
            // The native tests pass as written.
            let (ok, text) = match lang {
                "python" => run(Command::new("sh").args(["-c", "pytest -q"]), &project),
                _ => run(
                    Command::new("node").args([
                        "--import",
                        "./sluice-sdk/native/register.js",
                        "--test",
                    ]),
                    &project,
                ),
            };
            assert!(ok, "{name}: native tests: {text}");
            // `sluice test .` builds it (build.sh) and runs its fixture.
            let (ok, text) = sluice(&project, &["test", "."]);
            assert!(ok, "{name}: {text}");
            assert!(text.contains("ok   "), "{name}: {text}");
            assert!(project.join("plugin.wasm").is_file(), "{name}");
            let (ok, text) = sluice(&project, &["check", "sluice.toml"]);
            assert!(ok, "{name}: {text}");
        }
    }
}

#[test]
fn a_failing_build_script_is_reported_with_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, text) = sluice(tmp.path(), &["new", "broken", "--lang", "python"]);
    assert!(ok, "{text}");
    let project = tmp.path().join("broken");
    std::fs::write(project.join("app.py"), "import no_such_module\n").unwrap();
    let (ok, text) = sluice(&project, &["test", "."]);
    assert!(!ok, "{text}");
    assert!(text.contains("build.sh failed"), "{text}");
    assert!(text.contains("no_such_module"), "{text}");
}

/// `sluice new` → `sluice dev` in Python and in JS: the project is built at
/// start, and an edit to its source is rebuilt and hot-reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_hot_reloads_an_edited_python_or_js_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    for (lang, source) in [("python", "app.py"), ("js", "plugin.js")] {
        let name = format!("dev-{lang}");
        let (ok, text) = sluice(
            tmp.path(),
            &["new", &name, "--kind", "transform", "--lang", lang],
        );
        assert!(ok, "{text}");
        let project = tmp.path().join(&name);
        let out = project.join("out.jsonl");
        let port = free_port();
        std::fs::write(
            project.join("dev.toml"),
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
[sources.in]
type = "http"
[plugins.tag]
crate = "."
memory_limit = "256MiB"
config = {{ prefix = "client-" }}
[sinks.out]
type = "file"
path = "out.jsonl"
[routes.r]
from = "in"
through = ["tag"]
to = {{ default = ["out"], matched = ["out"] }}
"#
            ),
        )
        .unwrap();
        let _sluice = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["dev", "dev.toml"])
                .current_dir(&project)
                .env("PATH", tool_path())
                .env("SLUICE_CACHE_DIR", cache_dir())
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        let matched = |n: usize| {
            let out = out.clone();
            async move {
                let (status, body) = post_ndjson(
                    addr,
                    "in",
                    &[serde_json::json!({"key": "client-1", "value": n})],
                )
                .await;
                assert!(status.is_success(), "{status}: {body}");
                let lines = read_lines(&out);
                headers(lines.last().unwrap())["matched"].clone()
            }
        };
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{lang}: sluice dev did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_ready(addr).await;
        assert_eq!(matched(0).await, "yes", "{lang}");
        let file = project.join(source);
        let edited = std::fs::read_to_string(&file)
            .unwrap()
            .replace("'yes'", "'edited'")
            .replace("\"yes\"", "\"edited\"");
        std::fs::write(&file, edited).unwrap();
        let mut n = 1;
        while matched(n).await != "edited" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{lang}: never reloaded"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            n += 1;
        }
        // Nothing lost across the swap: one output per record posted.
        assert_eq!(read_lines(&out).len(), n + 1, "{lang}");
    }
}
