//! Time to ready: `sluice run examples/quickstart.toml` from process start
//! until `/ready` answers 200, with an empty compile cache (every plugin
//! compiled by Cranelift) against a warm one (every plugin loaded from
//! `SLUICE_CACHE_DIR`), alternating, in one run.
//!
//!     cargo bench -p sluice --bench startup
//!
//! The quickstart names its plugins by `crate`, so each start also runs a
//! no-op `cargo build` of them (about 0.1 s each); the first pass is a
//! warm-up that builds them. The same config with the plugins named by
//! `path` (their built `.wasm`, as a deployment has them) is measured too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::free_port;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSES: usize = 5;

/// The status code of `GET path`, or `None` if nothing answers yet.
fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Starts `config` with compile cache `cache`; the time until `/ready` is
/// 200.
fn time_to_ready(config: &Path, cache: &Path) -> Duration {
    let port = free_port();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(config)
        .env("SLUICE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_CACHE_DIR", cache)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while status(port, "/ready") != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        assert!(child.try_wait().unwrap().is_none(), "sluice exited");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    took
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let quickstart = root.join("examples/quickstart.toml");
    let dir = tempfile::tempdir().unwrap();
    let warm = dir.path().join("warm");
    // Warm-up: builds the plugin crates, fills the warm cache.
    let first = time_to_ready(&quickstart, &warm);
    eprintln!("warm-up (builds the plugin crates): {first:.2?}");
    // The same config with the built components named by path.
    let built = root.join("target/sluice-plugins/wasm32-wasip2/release");
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let by_path = dir.path().join("quickstart-paths.toml");
    let mut replaced = text.clone();
    for (krate, file) in [
        ("client-filter", "client_filter.wasm"),
        ("json-transform", "json_transform.wasm"),
    ] {
        replaced = replaced.replace(
            &format!("crate = \"../plugins/{krate}\""),
            &format!("path = \"{}\"", built.join(file).display()),
        );
    }
    assert_ne!(replaced, text, "the quickstart names its plugins by crate");
    std::fs::write(&by_path, replaced).unwrap();
    let mut runs: [Vec<Duration>; 4] = Default::default();
    for pass in 0..PASSES {
        let c = time_to_ready(&quickstart, &dir.path().join(format!("cold-{pass}")));
        let h = time_to_ready(&quickstart, &warm);
        let pc = time_to_ready(&by_path, &dir.path().join(format!("pcold-{pass}")));
        let ph = time_to_ready(&by_path, &warm);
        eprintln!(
            "pass {pass}: crate: cold {c:.2?}, warm {h:.2?}; path: cold {pc:.2?}, warm {ph:.2?}"
        );
        for (runs, d) in runs.iter_mut().zip([c, h, pc, ph]) {
            runs.push(d);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let [mut c, mut h, mut pc, mut ph] = runs;
    let (c, h, pc, ph) = (
        median(&mut c),
        median(&mut h),
        median(&mut pc),
        median(&mut ph),
    );
    println!("quickstart time to ready (medians of {PASSES}):");
    println!("  plugins by crate, cold (compiling):     {c:>8.0?}");
    println!("  plugins by crate, warm (compile cache): {h:>8.0?}");
    println!("  plugins by path,  cold (compiling):     {pc:>8.0?}");
    println!("  plugins by path,  warm (compile cache): {ph:>8.0?}");
    println!(
        "ratio warm / cold: by crate {:.2}, by path {:.2}",
        h.as_secs_f64() / c.as_secs_f64(),
        ph.as_secs_f64() / pc.as_secs_f64()
    );
}
