//! Config loading and `sluice check`: every example is accepted, and broken
//! configs are refused with messages that name the key.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use sluice::config::Config;

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env("RUST_LOG", "warn");
    c
}

fn problems(text: &str) -> Vec<String> {
    let env = |name: &str| (name == "SET").then(|| "from-env".to_owned());
    match Config::parse(text, Path::new("."), env) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.problems,
    }
}

fn assert_problem(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}; got:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_example_passes_sluice_check() {
    let examples = common::workspace().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        // The secrets an operator would set (secure-notifications.toml
        // refuses to start without them).
        let out = sluice()
            .arg("check")
            .arg(&path)
            .env("SLUICE_JWT_SECRET", "example-jwt-secret")
            .env("SLUICE_INGEST_TOKEN", "example-ingest-token")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sluice check {} failed:\n{}{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok ("), "{stdout}");
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the examples to be checked, found {checked}"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let p = problems(
        r#"
        [sources.in]
        type = "generator"
        rate = "fast"

        [sources.unused]
        type = "http"

        [sources.typo]
        type = "kafak"

        [plugins.f]
        path = "f.wasm"
        memory_limit = "12 parsecs"

        [plugins.g]
        on_error = "dead_letter"

        [plugins.h]
        path = "h.wasm"
        state_limit = "12 parsecs"

        [sinks.s]
        type = "sse"
        heartbat = "5s"

        [routes.r]
        from = "nope"
        through = ["f", "missing"]
        to = { default = ["s", "ghost"] }
        workers = 0

        [extra]
        "#,
    );
    assert_problem(&p, "sources.in.rate: invalid type: string \"fast\"");
    assert_problem(&p, "sources.unused: not used by any route");
    assert_problem(
        &p,
        "sources.typo.type: unknown type `kafak`; expected one of generator, http",
    );
    assert_problem(&p, "plugins.f.memory_limit: unknown size unit");
    assert_problem(&p, "plugins.h.state_limit: unknown size unit");
    assert_problem(&p, "plugins.g: set exactly one of `path`");
    assert_problem(
        &p,
        "plugins.g.dead_letter: on_error = \"dead_letter\" needs",
    );
    assert_problem(&p, "sinks.s.heartbat: unknown field `heartbat`");
    assert_problem(&p, "routes.r.from: no source named `nope`");
    assert_problem(&p, "routes.r.through[1]: no plugin named `missing`");
    assert_problem(&p, "routes.r.to.default: no sink named `ghost`");
    assert_problem(&p, "routes.r.workers: must be at least 1");
    assert_problem(&p, "extra: unknown section");
    assert!(p.len() >= 12, "{p:#?}");
}

#[test]
fn kafka_sections_are_checked() {
    let p = problems(
        r#"
        [sources.k]
        type = "kafka"
        bootstrap_servers = ""
        topics = []
        group_id = ""
        start = "yesterday"
        [sources.k2]
        type = "kafka"
        bootstrap_servers = "embedded"
        topics = ["t"]
        group_id = "g"
        batch_size = 0
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "embedded"
        topic = "orders-{nope}"
        [sinks.out2]
        type = "kafka"
        bootstrap_servers = "embedded"
        topic = ""
        [routes.r]
        from = "k2"
        to = ["out2"]
        "#,
    );
    assert_problem(&p, "sources.k.start: unknown variant `yesterday`");
    assert_problem(&p, "sources.k2.batch_size: must be at least 1");
    assert_problem(
        &p,
        "sinks.out.topic: `orders-{nope}`: unknown placeholder `{nope}`",
    );
    assert_problem(&p, "sinks.out2.topic: must not be empty");
    let p = problems(
        r#"
        [sources.k]
        type = "kafka"
        bootstrap_servers = ""
        topics = []
        group_id = ""
        [sinks.s]
        type = "stdout"
        [routes.r]
        from = "k"
        to = ["s"]
        "#,
    );
    assert_problem(&p, "sources.k.topics: name at least one topic");
    assert_problem(&p, "sources.k.group_id: must not be empty");
    assert_problem(&p, "sources.k.bootstrap_servers: must not be empty");
}

#[test]
fn variables_are_interpolated_and_missing_ones_named() {
    let ok = Config::parse(
        r#"
        [server]
        listen = "${UNSET_LISTEN:-127.0.0.1:9999}"
        [sources.in]
        type = "http"
        [sinks.out]
        type = "file"
        path = "${SET}.jsonl"
        [routes.r]
        from = "in"
        to = ["out"]
        "#,
        Path::new("/base"),
        |n| (n == "SET").then(|| "from-env".to_owned()),
    )
    .unwrap();
    assert_eq!(ok.server.listen.port(), 9999);
    match &ok.sinks["out"] {
        // Relative paths are resolved against the config's directory when
        // the config is parsed.
        sluice::sinks::SinkConfig::File(f) => {
            assert_eq!(f.path, Path::new("/base/from-env.jsonl"))
        }
        other => panic!("{other:?}"),
    }
    let p = problems("[server]\nlisten = \"${NOT_SET}\"\n");
    assert_problem(&p, "line 2: environment variable `NOT_SET` is not set");
}

#[test]
fn toml_syntax_errors_point_at_the_line() {
    let p = problems("[sources.in]\ntype = \"http\"\nrate = = 3\n");
    assert_problem(&p, "TOML syntax");
    assert_problem(&p, "line 3");
}

#[test]
fn the_cli_explains_a_missing_file() {
    let out = sluice()
        .args(["check", "/no/such/sluice.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /no/such/sluice.toml"), "{err}");
}

#[test]
fn the_cli_reports_a_plugin_that_refuses_its_config_and_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [sources.in]
            type = "http"
            [plugins.empty]
            path = "{}"
            [plugins.junk]
            path = "junk.wasm"
            [sinks.out]
            type = "stdout"
            [routes.r]
            from = "in"
            through = ["empty", "junk"]
            to = ["out"]
            "#,
            common::plugin("client-filter")
        ),
    )
    .unwrap();
    let out = sluice().arg("check").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "plugins.empty: init failed: invalid config: config: set `clients`, `patterns` or `only_connected`"
        ),
        "{err}"
    );
    assert!(
        err.contains("plugins.junk: not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn toolchain_mistakes_get_errors_that_name_the_import_or_the_worlds() {
    let dir = tempfile::tempdir().unwrap();
    // What componentize-js builds without `--disable http fetch-event`: a
    // component importing wasi:http.
    let http = wat::parse_str(
        r#"(component (import "wasi:http/types@0.2.3" (instance (export "f" (func)))))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("http.wasm"), http).unwrap();
    // A valid component that exports no Sluice world.
    let other = wat::parse_str(
        r#"(component
             (core module $m (func (export "run")))
             (core instance $i (instantiate $m))
             (func $run (canon lift (core func $i "run")))
             (export "run" (func $run)))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("other.wasm"), other).unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        r#"
        [sources.in]
        type = "http"
        [plugins.http]
        path = "http.wasm"
        [plugins.other]
        path = "other.wasm"
        [sinks.out]
        type = "stdout"
        [routes.r]
        from = "in"
        through = ["http", "other"]
        to = ["out"]
        "#,
    )
    .unwrap();
    let out = sluice().arg("check").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins.http: cannot link the component: the component imports `wasi:http/types@0.2.3`, which Sluice does not provide")
            && err.contains("--disable http fetch-event"),
        "{err}"
    );
    assert!(
        err.contains("plugins.other: the component exports none of sluice:plugin/filter-api@0.1.0, transform-api@0.1.0, packed-filter-api@0.1.0 or packed-transform-api@0.1.0")
            && err.contains("(it exports: run)")
            && err.contains("`filter`, `transform`, `join`, or their `packed-` twins"),
        "{err}"
    );
}

#[test]
fn redis_parts_are_checked_with_their_key_paths() {
    let p = problems(
        r#"
[sources.nothing]
type = "redis"
url = "redis://127.0.0.1:6379"
group = ""
claim_idle = "10ms"
max_record_size = 0
dead_letter = "nowhere"

[sources.badurl]
type = "redis"
url = "http://not-redis"
streams = ["s"]
group = "g"

[sinks.live]
type = "sse"
[sinks.live.redis]
url = "redis://127.0.0.1:6379"
stream = "everyone"
presence_refresh = "1m"

[sinks.out]
type = "redis_stream"
url = "redis://127.0.0.1:6379"
stream = "{nope}"

[sources.deduped]
type = "redis"
url = "redis://127.0.0.1:6379"
streams = ["s"]
group = "g"
dead_letter = "once"

[sinks.once]
type = "redis_stream"
url = "redis://127.0.0.1:6379"
stream = "dead"
dedupe = true

[sinks.snap]
type = "redis_hash"
url = "redis://127.0.0.1:6379"
key = "user_{key}"

[sinks.typo]
type = "redis_hash"
url = "redis://127.0.0.1:6379"
key = "user_{key}"
ttl = "5s"

[routes.a]
from = "nothing"
to = ["snap"]
only_connected = "snap"

[routes.b]
from = "badurl"
to = ["live"]
only_connected = "missing"

[routes.c]
from = "deduped"
to = ["snap"]
"#,
    );
    assert_problem(&p, "sources.nothing: set `streams`, `patterns`, or both");
    assert_problem(&p, "sources.nothing.group: must not be empty");
    assert_problem(&p, "sources.nothing.claim_idle: must be at least 100ms");
    assert_problem(
        &p,
        "sources.badurl.url: `http://not-redis` is not a Redis URL",
    );
    assert_problem(&p, "sinks.live.redis.stream: must contain {client_id}");
    assert_problem(
        &p,
        "sinks.live.redis.presence_refresh: must be more than zero and less than presence_ttl",
    );
    assert_problem(&p, "sinks.out.stream: `{nope}`: unknown placeholder");
    assert_problem(&p, "sinks.typo.ttl: unknown field `ttl`");
    assert_problem(&p, "routes.a.only_connected: `snap` is not an sse sink");
    assert_problem(&p, "routes.b.only_connected: no sink named `missing`");
    assert_problem(
        &p,
        "sources.nothing.max_record_size: must be more than zero",
    );
    assert_problem(&p, "sources.nothing.dead_letter: no sink named `nowhere`");
    assert_problem(&p, "sources.deduped.dead_letter: `once` has dedupe = true");
}

#[test]
fn a_broken_item_is_reported_once_not_again_where_it_is_named() {
    let p = problems(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "localhost:9092"
        topics = ["t"]
        group_id = "g"
        batch_sise = 10
        [plugins.f]
        path = "f.wasm"
        memory_limit = "lots"
        [sinks.out]
        type = "nope"
        [routes.r]
        from = "in"
        through = ["f"]
        to = ["out"]
        "#,
    );
    assert_problem(&p, "sources.in.batch_sise: unknown field");
    assert_problem(&p, "plugins.f.memory_limit");
    assert_problem(&p, "sinks.out.type: unknown type `nope`");
    assert_eq!(p.len(), 3, "one problem per broken item: {p:#?}");
}

#[test]
fn a_syntax_error_shows_no_excerpt_that_could_hold_a_secret() {
    let env = |name: &str| (name == "PASSWORD").then(|| "hunter2-from-env".to_owned());
    let text = "[sinks.s]\ntype = \"redis_stream\"\nurl = \"redis://u:${PASSWORD}@h\" x\n";
    let problems = match Config::parse(text, Path::new("."), env) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.problems.join("\n"),
    };
    assert!(problems.contains("line 3"), "{problems}");
    assert!(!problems.contains("hunter2"), "{problems}");
}

/// A config whose Kafka parts use TLS and SASL: the `kafka_options`
/// of the source, then the sink's.
fn secured_kafka(source_options: &str, sink_options: &str) -> String {
    format!(
        r#"
        [sources.in]
        type = "kafka"
        bootstrap_servers = "broker.example:9093"
        topics = ["events"]
        group_id = "g"
        options = {{ {source_options} }}
        [sinks.out]
        type = "kafka"
        bootstrap_servers = "broker.example:9093"
        topic = "out"
        options = {{ {sink_options} }}
        [routes.r]
        from = "in"
        to = ["out"]
        "#
    )
}

fn check_text(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).unwrap();
    let out = sluice().arg("check").arg(&config).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn kafka_tls_and_sasl_settings_are_accepted_and_bad_ones_named_by_key() {
    let sasl = r#""security.protocol" = "SASL_SSL", "sasl.mechanisms" = "SCRAM-SHA-512", "sasl.username" = "sluice", "sasl.password" = "pw-secret-123""#;
    // librdkafka is built with OpenSSL: SASL_SSL with SCRAM is a valid setting.
    let (ok, out) = check_text(&secured_kafka(sasl, r#""security.protocol" = "SSL""#));
    assert!(ok, "{out}");
    let (ok, out) = check_text(&secured_kafka(
        &format!(r#"{sasl}, "ssl.ca.location" = "/no/such/ca.pem""#),
        r#""security.protocol" = "SSLX""#,
    ));
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"sources.in.options."ssl.ca.location""#),
        "{out}"
    );
    assert!(
        out.contains(r#"sinks.out.options."security.protocol""#),
        "{out}"
    );
    assert!(!out.contains("pw-secret-123"), "the password leaked: {out}");
}
