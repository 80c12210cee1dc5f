//! Restoring plugin state from a Redis route's `state_changelog` hash: how
//! long the first batch waits while the route reads the hash back.
//!
//!     cargo bench -p sluice --bench state_restore_redis
//!
//! For each size, a hash on a fresh `redis-server` (Debian's package, on
//! loopback) is filled with that many fields of the `tally` fixture
//! (`tally\0key-N` → an 8-byte count), and one entry is added to the
//! route's input stream. Timed from the moment the source has read that
//! entry until the sink has its output: the restore (HSCAN, 1,000 fields a
//! step) plus one plugin call, best of three runs, each with a new group.
//! The first row is the same route without a changelog.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use sluice::config::Config;

mod common;
use common::{RedisServer, time_route};

const SIZES: [usize; 4] = [0, 10_000, 100_000, 1_000_000];

fn config(port: u16, changelog: bool, run: usize) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let changelog = if changelog {
        "state_changelog = \"state\""
    } else {
        ""
    };
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [sources.in]
        type = "redis"
        url = "redis://127.0.0.1:{port}"
        streams = ["in"]
        group = "bench-{run}"
        key_field = "key"
        value_field = "value"
        block = "10ms"
        [plugins.tally]
        crate = "{root}/fixtures/tally"
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["tally"]
        to = ["out"]
        {changelog}
        "#,
        root = root.display(),
    );
    Config::parse(&text, Path::new("."), |_| None).unwrap()
}

fn fill(conn: &mut redis::Connection, size: usize) {
    let value = 1u64.to_le_bytes();
    for start in (0..size).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(size) {
            pipe.cmd("HSET")
                .arg("state")
                .arg(format!("tally\0key-{i}"))
                .arg(&value[..])
                .ignore();
        }
        pipe.query::<()>(conn).unwrap();
    }
    redis::cmd("XADD")
        .arg("in")
        .arg("*")
        .arg("key")
        .arg("key-0")
        .arg("value")
        .arg("x")
        .query::<String>(conn)
        .unwrap();
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("keys restored | first batch waits (best of 3) | keys/s");
    let rows = std::iter::once(None).chain(SIZES.into_iter().map(Some));
    for size in rows {
        let server = RedisServer::start();
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", server.port)).unwrap();
        let mut conn = client.get_connection().unwrap();
        fill(&mut conn, size.unwrap_or(0));
        let mut best = Duration::MAX;
        for run in 0..3 {
            let config = config(server.port, size.is_some(), run);
            let took = rt.block_on(time_route(config, 1, Duration::from_secs(120)));
            best = best.min(took);
        }
        let label = size.map_or("no changelog".to_owned(), |s| s.to_string());
        let per_sec = match size {
            Some(s) if s > 0 => format!("{:.0}", s as f64 / best.as_secs_f64()),
            _ => "-".to_owned(),
        };
        println!(
            "{label:>13} | {:>10.1} ms | {per_sec}",
            best.as_secs_f64() * 1000.0
        );
    }
}
