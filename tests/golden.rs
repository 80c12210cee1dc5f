//! `sluice test` and `sluice new` (part of issue #16): golden fixtures run
//! through a plugin's real stage, with no broker (a join's tables come from
//! the fixture). The example plugins' fixtures pass; a wrong expectation
//! fails with a readable diff; `--update` rewrites it; a new project of
//! each kind builds and passes its own fixture.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

fn sluice_test(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("test")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    common::outcome(&out)
}

#[test]
fn the_example_plugins_pass_their_fixtures() {
    for krate in ["client-filter", "json-transform"] {
        let dir = common::workspace().join("plugins").join(krate);
        let (ok, text) = sluice_test(&[dir.as_os_str()]);
        assert!(ok, "{krate}: {text}");
        assert!(text.contains("ok   "), "{krate}: {text}");
    }
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_update_rewrites_it() {
    let wasm = common::plugin("json-transform");
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("wrong.json");
    let original = common::workspace().join("plugins/json-transform/fixtures/project.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(original).unwrap()).unwrap();
    spec["expected"][1]["value"]["seq"] = serde_json::json!(99);
    std::fs::write(&fixture, spec.to_string()).unwrap();

    let (ok, text) = sluice_test(&[wasm.as_ref(), fixture.as_os_str()]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("expected: 2 expected, 2 actual"), "{text}");
    assert!(text.contains("  [1]"), "only the differing record: {text}");
    assert!(!text.contains("  [0]"), "only the differing record: {text}");
    assert!(
        text.contains("\"seq\":99") && text.contains("\"seq\":2"),
        "{text}"
    );
    assert!(text.contains("1 of 1 fixtures failed"), "{text}");

    let (ok, text) = sluice_test(&[wasm.as_ref(), fixture.as_os_str(), "--update".as_ref()]);
    assert!(ok, "{text}");
    let (ok, text) = sluice_test(&[wasm.as_ref(), fixture.as_os_str()]);
    assert!(ok, "passes after --update: {text}");
    let updated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(updated["expected"][1]["value"]["seq"], 2);
    assert_eq!(updated["input"], spec["input"], "the input is kept");
}

#[test]
fn a_component_without_fixtures_is_refused_with_what_to_do() {
    let wasm = common::plugin("client-filter");
    let (ok, text) = sluice_test(&[wasm.as_ref()]);
    assert!(!ok);
    assert!(text.contains("name the fixtures"), "{text}");
}

#[test]
fn a_record_the_plugin_fails_on_is_an_error_of_its_input_index() {
    let wasm = common::plugin("fixture-trap");
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("trap.json");
    std::fs::write(
        &fixture,
        serde_json::json!({
            "config": {},
            "input": [
                {"key": "a", "value": "fine"},
                {"key": "b", "value": "a trap here"},
                {"key": "c", "value": "fine too"},
            ],
            "expected": [
                {"key": "a", "value": "fine", "headers": {}, "timestamp": 0},
                {"key": "c", "value": "fine too", "headers": {}, "timestamp": 0},
            ],
            "errors": [{"input": 1, "error": "plugin trapped: wasm trap: wasm `unreachable` instruction executed (fixture: trapping on record 0)"}],
        })
        .to_string(),
    )
    .unwrap();
    let (ok, text) = sluice_test(&[wasm.as_ref(), fixture.as_os_str()]);
    assert!(ok, "{text}");
    assert!(text.contains("(2 records, 1 errors)"), "{text}");
}

#[test]
fn sluice_new_writes_projects_whose_build_and_fixtures_pass() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [
        ("new-filter", "filter"),
        ("new-transform", "transform"),
        ("new-join", "join"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["new", name, "--kind", kind])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let project = dir.path().join(name);
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "fixtures/basic.json",
            "sluice.toml",
            "README.md",
        ] {
            assert!(project.join(file).is_file(), "{name}: {file}");
        }
        // The workspace's lock, so the build reuses its resolved versions.
        std::fs::copy(
            common::workspace().join("Cargo.lock"),
            project.join("Cargo.lock"),
        )
        .unwrap();
        let (ok, text) = sluice_test(&[project.as_os_str()]);
        assert!(ok, "{name}: {text}");
        assert!(text.contains("ok   "), "{name}: {text}");
        let check = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("check")
            .arg(project.join("sluice.toml"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // Refusals say what to do instead.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["new", "new-filter"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an existing directory is not overwritten"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
