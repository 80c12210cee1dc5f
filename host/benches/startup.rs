//! Time to ready: `sluice run examples/quickstart.toml` from process start
//! until `/ready` answers 200, with an empty compile cache (every plugin
//! compiled by Cranelift) against a warm one (every plugin loaded from
//! `SLUICE_CACHE_DIR`), alternating, in one run.
//!
//!     cargo bench -p sluice --bench startup
//!
//! The quickstart names its plugins by `crate`, so each start also runs a
//! no-op `cargo build` of them; the first pass is a warm-up that builds
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSES: usize = 5;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// Starts the quickstart with compile cache `cache`; the time until
/// `/ready` is 200.
fn time_to_ready(cache: &Path) -> Duration {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = free_port();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(root.join("examples/quickstart.toml"))
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
    let dir = tempfile::tempdir().unwrap();
    let warm = dir.path().join("warm");
    // Warm-up: builds the plugin crates, fills the warm cache.
    let first = time_to_ready(&warm);
    eprintln!("warm-up (builds the plugin crates): {first:.2?}");
    let (mut cold, mut hot) = (Vec::new(), Vec::new());
    for pass in 0..PASSES {
        let empty = dir.path().join(format!("cold-{pass}"));
        let c = time_to_ready(&empty);
        let h = time_to_ready(&warm);
        eprintln!("pass {pass}: cold {c:.2?}, warm {h:.2?}");
        cold.push(c);
        hot.push(h);
    }
    cold.sort();
    hot.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "quickstart time to ready, cold (compiling): median {:.0?}, best {:.0?}",
        median(&cold),
        cold[0]
    );
    println!(
        "quickstart time to ready, warm (compile cache): median {:.0?}, best {:.0?}",
        median(&hot),
        hot[0]
    );
    println!(
        "ratio warm / cold (medians): {:.2}",
        median(&hot).as_secs_f64() / median(&cold).as_secs_f64()
    );
}
