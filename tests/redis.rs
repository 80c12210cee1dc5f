//! Redis Streams end to end against a real `redis-server` on a free port:
//! exact entries, XACK after delivery, restarts of Sluice and of Redis,
//! SSE replay with `Last-Event-ID`, demand-driven forwarding, and pattern
//! discovery.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::redis::{Entry, RedisServer, field, pending, xadd, xrange, xrange_ids};
use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn stream_to_stream(source_url: &str, sink_url: &str, extra_source: &str) -> String {
    format!(
        r#"
[sources.in]
type = "redis"
url = "{source_url}"
streams = ["in"]
group = "g"
consumer = "c1"
value_field = "value"
key_field = "key"
batch_size = 64
block = "100ms"
{extra_source}

[sinks.out]
type = "redis_stream"
url = "{sink_url}"
stream = "out"
timestamp_field = "ts"

[routes.copy]
from = "in"
to = ["out"]
"#
    )
}

fn values(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| field(e, "value").unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_come_out_exactly_and_are_acked() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let mut ids = Vec::new();
    for i in 0..500 {
        let key = format!("client-{}", i % 7);
        let value = format!(r#"{{"n":{i}}}"#);
        ids.push(xadd(
            &mut c,
            "in",
            &[
                ("key", &key),
                ("value", &value),
                ("trace", &format!("t{i}")),
            ],
        ));
    }
    let running = start(
        &stream_to_stream(&server.url(), &server.url(), ""),
        &workspace(),
    )
    .await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 500).await);
    let out = xrange(&mut c, "out");
    assert_eq!(out.len(), 500, "no duplicates");
    for (i, e) in out.iter().enumerate() {
        assert_eq!(field(e, "key"), Some(format!("client-{}", i % 7).as_str()));
        assert_eq!(field(e, "value"), Some(format!(r#"{{"n":{i}}}"#).as_str()));
        assert_eq!(
            field(e, "trace"),
            Some(format!("t{i}").as_str()),
            "headers kept"
        );
        let ms = ids[i].split('-').next().unwrap();
        assert_eq!(field(e, "ts"), Some(ms), "timestamp = the entry's time");
    }
    assert!(
        eventually(WAIT, || pending(&mut c, "in", "g") == 0).await,
        "everything XACKed"
    );
    running.shutdown().await.unwrap();
}

/// An entry over `max_record_size` reaches no route: it goes to the
/// source's `dead_letter` sink without its value, with the reason and its
/// origin, and is XACKed with its neighbours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_max_record_size_is_dead_lettered_and_acked() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let big = "x".repeat(2048);
    let mut ids = Vec::new();
    for i in 0..5 {
        let value = if i == 2 { big.clone() } else { format!("v{i}") };
        ids.push(xadd(
            &mut c,
            "in",
            &[("key", &format!("k{i}")), ("value", &value), ("trace", "t")],
        ));
    }
    let url = server.url();
    let extra = format!(
        r#"max_record_size = "1KiB"
dead_letter = "dlq"
[sinks.dlq]
type = "redis_stream"
url = "{url}"
stream = "dlq"
"#
    );
    let running = start(&stream_to_stream(&url, &url, &extra), &workspace()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 4).await);
    assert!(eventually(WAIT, || !xrange(&mut c, "dlq").is_empty()).await);
    assert!(
        eventually(WAIT, || pending(&mut c, "in", "g") == 0).await,
        "everything XACKed, the oversized entry too"
    );
    assert_eq!(values(&xrange(&mut c, "out")), ["v0", "v1", "v3", "v4"]);
    let dead = xrange(&mut c, "dlq");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(field(d, "key"), Some("k2"));
    assert_eq!(field(d, "value").unwrap_or(""), "", "the value is left out");
    assert_eq!(field(d, "trace"), Some("t"), "headers kept");
    assert_eq!(field(d, "sluice-origin-position"), Some(ids[2].as_str()));
    assert_eq!(field(d, "sluice-origin-topic"), Some("in"));
    // key "k2" (2) + value (2048) + header "trace" = "t" (6)
    assert_eq!(field(d, "sluice-record-size"), Some("2056"));
    assert_eq!(
        field(d, "sluice-error"),
        Some("record of 2056 bytes is over the source's max_record_size (1024 bytes)")
    );
    assert_eq!(
        running
            .metrics
            .value("sluice_source_oversized_total", &[("source", "in")]),
        Some(1)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acked_until_the_sink_has_it() {
    let source = RedisServer::start();
    let mut sink = RedisServer::start();
    sink.stop();
    let mut c = source.conn();
    for i in 0..50 {
        xadd(&mut c, "in", &[("value", &i.to_string())]);
    }
    let config = stream_to_stream(&source.url(), &sink.url(), "claim_idle = \"1s\"");
    let running = start(&config, &workspace()).await;
    assert!(
        eventually(WAIT, || pending(&mut c, "in", "g") == 50).await,
        "read"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pending(&mut c, "in", "g"),
        50,
        "not acknowledged while the sink is down"
    );
    sink.restart();
    let mut out = sink.conn();
    let expected: BTreeSet<String> = (0..50).map(|i| i.to_string()).collect();
    assert!(
        eventually(WAIT, || values(&xrange(&mut out, "out"))
            .into_iter()
            .collect::<BTreeSet<_>>()
            == expected)
        .await,
        "claimed again and delivered once the sink is back"
    );
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let config = stream_to_stream(&server.url(), &server.url(), "claim_idle = \"1s\"");
    let running = start(&config, &workspace()).await;
    // Entries keep arriving before, during and after the restart; the
    // producer retries each one until Redis has it.
    let url = server.url();
    let producer = std::thread::spawn(move || {
        let client = ::redis::Client::open(url).unwrap();
        let mut conn = None;
        for i in 0..400 {
            loop {
                if conn.is_none() {
                    conn = client.get_connection().ok();
                }
                let added = conn.as_mut().map(|c| {
                    ::redis::cmd("XADD")
                        .arg("in")
                        .arg("*")
                        .arg("value")
                        .arg(i.to_string())
                        .query::<String>(c)
                });
                match added {
                    Some(Ok(_)) => break,
                    _ => {
                        conn = None;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let mut c = server.conn();
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 50).await);
    server.restart();
    producer.join().unwrap();
    let mut c = server.conn();
    let expected: BTreeSet<String> = (0..400).map(|i| i.to_string()).collect();
    assert!(
        eventually(WAIT, || values(&xrange(&mut c, "out"))
            .into_iter()
            .collect::<BTreeSet<_>>()
            == expected)
        .await,
        "every entry delivered after Redis came back; got {}",
        xrange(&mut c, "out").len()
    );
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_sluice_mid_run_loses_nothing() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let n = 20_000;
    let mut pipe = ::redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg("in")
            .arg("*")
            .arg("value")
            .arg(i.to_string())
            .ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}",
            stream_to_stream(&server.url(), &server.url(), "")
        ),
    )
    .unwrap();
    let spawn = || {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("run")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut first = spawn();
    assert!(eventually(WAIT, || xrange(&mut c, "out").len() >= 1000).await);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let after_kill = xrange(&mut c, "out").len();
    let _second = spawn();
    let expected: BTreeSet<String> = (0..n).map(|i| i.to_string()).collect();
    assert!(
        eventually(Duration::from_secs(60), || values(&xrange(&mut c, "out"))
            .into_iter()
            .collect::<BTreeSet<_>>()
            == expected)
        .await,
        "every entry at least once after the restart"
    );
    assert!(
        after_kill < n,
        "the kill happened mid-run ({after_kill} of {n} were out)"
    );
    assert!(eventually(WAIT, || pending(&mut c, "in", "g") == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_discovery_picks_up_a_new_stream() {
    let server = RedisServer::start();
    let mut c = server.conn();
    xadd(&mut c, "orders:eu", &[("value", "first")]);
    let config = format!(
        r#"
[sources.orders]
type = "redis"
url = "{url}"
pattern = "orders:*"
discover_interval = "200ms"
group = "g"
value_field = "value"
block = "100ms"

[sinks.out]
type = "redis_stream"
url = "{url}"
stream = "copy"

[routes.copy]
from = "orders"
to = ["out"]
"#,
        url = server.url()
    );
    let running = start(&config, &workspace()).await;
    assert!(eventually(WAIT, || xrange(&mut c, "copy").len() == 1).await);
    xadd(&mut c, "orders:us", &[("value", "second")]);
    assert!(
        eventually(WAIT, || values(&xrange(&mut c, "copy"))
            == ["first", "second"])
        .await,
        "the stream created after start was read: {:?}",
        values(&xrange(&mut c, "copy"))
    );
    running.shutdown().await.unwrap();
}

fn sse_config(url: &str, extra_route: &str) -> String {
    format!(
        r#"
[sources.in]
type = "http"

[sinks.notify]
type = "sse"
heartbeat = "1s"
[sinks.notify.redis]
url = "{url}"
stream = "client:{{client_id}}"
presence_refresh = "100ms"
presence_ttl = "3s"

[routes.r]
from = "in"
to = ["notify"]
{extra_route}
"#
    )
}

async fn post(addr: std::net::SocketAddr, client: &str, n: usize) {
    let req = builder(addr, "POST", "/ingest/in")
        .header("sluice-key", client)
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            r#"{{"n":{n}}}"#
        ))))
        .unwrap();
    let (status, body) = call(addr, req).await;
    assert_eq!(status, 200, "{body}");
}

/// A resume from an id the stream no longer keeps (trimmed, as `maxlen`
/// does) first gets a `gap` event naming the oldest kept entry, then the
/// stream from it; a resume inside what is kept gets no gap; an id newer
/// than anything the stream held gets `unknown_id`, then new events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_from_a_trimmed_id_gets_a_gap_event_first() {
    let server = RedisServer::start();
    let running = start(&sse_config(&server.url(), ""), &workspace()).await;
    let addr = running.addr;
    let mut first = SseClient::connect(addr, "notify", "c1").await;
    for n in 0..10 {
        post(addr, "c1", n).await;
    }
    let seen = first.take(10, WAIT).await;
    drop(first);
    let ids: Vec<String> = seen.iter().map(|e| e.id.clone().unwrap()).collect();
    let mut c = server.conn();
    let _: i64 = ::redis::cmd("XTRIM")
        .arg("client:c1")
        .arg("MAXLEN")
        .arg(3)
        .query(&mut c)
        .unwrap();
    let data = |events: &[Event]| events.iter().map(|e| e.data.clone()).collect::<Vec<_>>();

    let mut trimmed = SseClient::resume(addr, "notify", "c1", Some(&ids[2])).await;
    let got = trimmed.take(4, WAIT).await;
    assert_eq!(got[0].event.as_deref(), Some("gap"), "{got:?}");
    assert_eq!(got[0].id, None, "a gap event carries no id");
    let gap: serde_json::Value = serde_json::from_str(&got[0].data).unwrap();
    assert_eq!(
        gap,
        serde_json::json!({"reason": "trimmed", "last_event_id": ids[2], "oldest_id": ids[7]})
    );
    assert_eq!(
        data(&got[1..]),
        [r#"{"n":7}"#, r#"{"n":8}"#, r#"{"n":9}"#],
        "then the stream from its oldest entry"
    );
    assert_eq!(got[3].id.as_deref(), Some(ids[9].as_str()));
    drop(trimmed);

    let mut kept = SseClient::resume(addr, "notify", "c1", Some(&ids[8])).await;
    let got = kept.take(1, WAIT).await;
    assert_eq!(
        (got[0].event.clone(), data(&got)),
        (None, vec![r#"{"n":9}"#.to_owned()])
    );
    assert!(
        kept.next(Duration::from_millis(300)).await.is_none(),
        "no gap, nothing more"
    );
    drop(kept);

    let mut future = SseClient::resume(addr, "notify", "c1", Some("99999999999999-0")).await;
    let got = future.take(1, WAIT).await;
    assert_eq!(got[0].event.as_deref(), Some("gap"));
    let gap: serde_json::Value = serde_json::from_str(&got[0].data).unwrap();
    assert_eq!(
        gap,
        serde_json::json!({"reason": "unknown_id", "last_event_id": "99999999999999-0", "newest_id": ids[9]})
    );
    post(addr, "c1", 10).await;
    let got = future.take(1, WAIT).await;
    assert_eq!(data(&got), [r#"{"n":10}"#]);
    running.shutdown().await.unwrap();
}

/// Redis's `connected_clients`.
fn redis_clients(server: &RedisServer) -> usize {
    let info: String = ::redis::cmd("INFO")
        .arg("clients")
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Sixty-one SSE connections are read over the sink's two readers and its
/// control, presence and notice (Pub/Sub) connections, not one Redis
/// connection each; every connection of
/// every client gets exactly its client's events, in order; and a client
/// that does not read while 20 MB are sent to it holds up no one and then
/// gets every one of its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_connections_share_a_few_redis_readers_and_a_slow_one_loses_nothing() {
    let server = RedisServer::start();
    let config = format!(
        r#"
[sources.in]
type = "http"
max_body = "1MiB"
[sinks.notify]
type = "sse"
heartbeat = "1s"
queue = 4
[sinks.notify.redis]
url = "{}"
readers = 2
[routes.r]
from = "in"
to = ["notify"]
"#,
        server.url()
    );
    let running = start(&config, &workspace()).await;
    let addr = running.addr;
    let before = redis_clients(&server);
    let mut slow = SseClient::connect(addr, "notify", "slow").await;
    let mut clients = Vec::new();
    for c in 0..30 {
        for _ in 0..2 {
            clients.push((
                c,
                SseClient::connect(addr, "notify", &format!("c{c}")).await,
            ));
        }
    }
    let during = redis_clients(&server);
    assert!(
        during <= before + 5,
        "61 SSE connections use 2 readers, the control, presence and notice connections: {before} Redis clients before, {during} with them"
    );
    let big = "x".repeat(100_000);
    for n in 0..200 {
        let req = builder(addr, "POST", "/ingest/in")
            .header("sluice-key", "slow")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                r#"{{"n":{n},"pad":"{big}"}}"#
            ))))
            .unwrap();
        let (status, body) = call(addr, req).await;
        assert_eq!(status, 200, "{body}");
    }
    for n in 0..5 {
        for c in 0..30 {
            post(addr, &format!("c{c}"), n).await;
        }
    }
    for (c, client) in &mut clients {
        let got = client.take(5, WAIT).await;
        assert_eq!(
            got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            (0..5)
                .map(|n| format!(r#"{{"n":{n}}}"#))
                .collect::<Vec<_>>(),
            "client c{c}: its events, in order, while another client reads nothing"
        );
        assert!(client.next(Duration::from_millis(20)).await.is_none());
    }
    let got = slow.take(200, WAIT).await;
    let seq: Vec<u64> = got
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seq,
        (0..200).collect::<Vec<_>>(),
        "the slow client: every event once, in order"
    );
    let mut c = server.conn();
    let ids = xrange_ids(&mut c, "client:slow");
    assert_eq!(
        got.into_iter().map(|e| e.id.unwrap()).collect::<Vec<_>>(),
        ids
    );
    assert!(
        slow.next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );
    let (_, metrics) = get(addr, "/metrics").await;
    let catch_ups: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"sluice_sse_catch_ups_total{sink="notify"} "#))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        catch_ups >= 1,
        "the slow client fell behind its reader and caught up: {catch_ups}"
    );
    // An entry another program adds without a notice still arrives (the
    // readers' periodic sweep).
    xadd(&mut c, "client:c0", &[("value", r#"{"n":"outside"}"#)]);
    for (c, client) in clients.iter_mut().filter(|(c, _)| *c == 0) {
        let got = client.take(1, WAIT).await;
        assert_eq!(got[0].data, r#"{"n":"outside"}"#, "client c{c}");
    }
    running.shutdown().await.unwrap();
}

/// 1,200 clients on two shared readers: each gets exactly its own events,
/// in order; a quarter of them leave, miss events and come back with
/// `Last-Event-ID`, and get exactly what they missed, then the next event,
/// with nothing twice. Redis connections do not grow with the clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_hundred_clients_on_two_readers_get_their_events_exactly_and_resume_exactly() {
    const CLIENTS: usize = 1_200;
    let server = RedisServer::start();
    let config = format!(
        r#"
[sources.in]
type = "http"
max_body = "4MiB"
[sinks.notify]
type = "sse"
[sinks.notify.redis]
url = "{}"
readers = 2
[routes.r]
from = "in"
to = ["notify"]
"#,
        server.url()
    );
    let running = start(&config, &workspace()).await;
    let addr = running.addr;
    let before = redis_clients(&server);
    let mut clients = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        clients.push(SseClient::connect(addr, "notify", &format!("c{c}")).await);
    }
    let during = redis_clients(&server);
    assert!(
        during <= before + 5,
        "{CLIENTS} SSE connections: {before} Redis clients before, {during} with them"
    );
    // Events `from..to` for every client, interleaved across clients.
    let post_rounds = async |from: usize, to: usize| {
        let lines: Vec<_> = (from..to)
            .flat_map(|n| {
                (0..CLIENTS).map(move |c| {
                    serde_json::json!({"key": format!("c{c}"), "value": format!("c{c}-{n}")})
                })
            })
            .collect();
        let (status, body) = post_ndjson(addr, "in", &lines).await;
        assert_eq!(status, 200, "{body}");
    };
    let expect = |c: usize, from: usize, to: usize| -> Vec<String> {
        (from..to).map(|n| format!("c{c}-{n}")).collect()
    };
    post_rounds(0, 3).await;
    let mut last_ids = Vec::with_capacity(CLIENTS);
    for (c, client) in clients.iter_mut().enumerate() {
        let got = client.take(3, WAIT).await;
        assert_eq!(
            got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
            expect(c, 0, 3),
            "client c{c}"
        );
        last_ids.push(got[2].id.clone().unwrap());
    }
    // A quarter leave, miss two events, and resume.
    let leaving = CLIENTS / 4;
    clients.drain(..leaving);
    post_rounds(3, 5).await;
    let mut back = Vec::with_capacity(leaving);
    for (c, last) in last_ids.iter().enumerate().take(leaving) {
        back.push(SseClient::resume(addr, "notify", &format!("c{c}"), Some(last)).await);
    }
    back.append(&mut clients);
    post_rounds(5, 6).await;
    for (c, client) in back.iter_mut().enumerate() {
        let got = client.take(3, WAIT).await;
        assert_eq!(
            got.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
            expect(c, 3, 6),
            "client c{c}: what it missed (or was sent), then the next, once each"
        );
    }
    assert!(redis_clients(&server) <= before + 5);
    drop(back);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_exactly_after_last_event_id() {
    let server = RedisServer::start();
    let running = start(&sse_config(&server.url(), ""), &workspace()).await;
    let addr = running.addr;
    let mut first = SseClient::connect(addr, "notify", "c1").await;
    for n in 0..3 {
        post(addr, "c1", n).await;
    }
    let seen = first.take(3, WAIT).await;
    assert_eq!(
        seen.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]
    );
    drop(first);
    for n in 3..6 {
        post(addr, "c1", n).await;
    }
    let last = seen[2].id.clone().unwrap();
    let mut again = SseClient::resume(addr, "notify", "c1", Some(&last)).await;
    let missed = again.take(3, WAIT).await;
    assert_eq!(
        missed.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        [r#"{"n":3}"#, r#"{"n":4}"#, r#"{"n":5}"#],
        "exactly the missed events, in order"
    );
    assert!(
        again.next(Duration::from_millis(300)).await.is_none(),
        "nothing more"
    );
    // Ids are the entry ids of the client's stream.
    let mut c = server.conn();
    let ids = xrange_ids(&mut c, "client:c1");
    let mut all = seen.clone();
    all.extend(missed);
    assert_eq!(
        all.into_iter().map(|e| e.id.unwrap()).collect::<Vec<_>>(),
        ids
    );
    let (status, _) = get(addr, "/sse/notify?client_id=c1&last_event_id=nonsense").await;
    assert_eq!(status, 400, "a malformed Last-Event-ID is refused");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_time_closes_connections_cleanly() {
    let config = r#"
[sources.in]
type = "http"
[sinks.notify]
type = "sse"
hold = "300ms"
[routes.r]
from = "in"
to = ["notify"]
"#;
    let running = start(config, &workspace()).await;
    let mut client = SseClient::connect(running.addr, "notify", "c1").await;
    assert!(client.next(Duration::from_secs(5)).await.is_none());
    assert!(client.ended, "the server ended the response");
    assert_eq!(
        client.comments.last().map(String::as_str),
        Some("hold time over; reconnect")
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_connected_clients_get_streams_on_any_instance() {
    let server = RedisServer::start();
    let config = sse_config(&server.url(), "only_connected = \"notify\"");
    let a = start(&config, &workspace()).await;
    let b = start(&config, &workspace()).await;
    let mut here = SseClient::connect(a.addr, "notify", "c1").await;
    let mut elsewhere = SseClient::connect(b.addr, "notify", "c3").await;
    // Instance A learns of B's client from the presence set.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..4 {
        post(a.addr, "c1", n).await;
        post(a.addr, "c2", n).await;
        post(a.addr, "c3", n).await;
    }
    let mine: Vec<String> = here
        .take(4, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(
        mine,
        (0..4)
            .map(|n| format!(r#"{{"n":{n}}}"#))
            .collect::<Vec<_>>()
    );
    let theirs: Vec<String> = elsewhere
        .take(4, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(theirs, mine, "served by the other instance");
    let mut c = server.conn();
    let exists: bool = ::redis::cmd("EXISTS")
        .arg("client:c2")
        .query(&mut c)
        .unwrap();
    assert!(!exists, "no stream for a client nobody is connected as");
    let (_, metrics) = get(a.addr, "/metrics").await;
    assert!(
        metrics.contains(r#"sluice_route_not_connected_total{route="r"} 4"#),
        "{metrics}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Loads an example with `REDIS_URL` pointing at `server`, on a free port.
async fn start_example(name: &str, server: &RedisServer) -> sluice::runtime::Running {
    init_logging();
    let path = workspace().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let url = server.url();
    let config = sluice::config::Config::parse(&text, path.parent().unwrap(), |var| match var {
        "REDIS_URL" => Some(url.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn hgetall(c: &mut ::redis::Connection, key: &str) -> std::collections::BTreeMap<String, String> {
    ::redis::cmd("HGETALL").arg(key).query(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_sourcing_example_folds_commands_into_snapshots() {
    let server = RedisServer::start();
    let running = start_example("event-sourcing.toml", &server).await;
    let mut c = server.conn();
    let commands: &[(&str, &[(&str, &str)])] = &[
        (
            "user_updates",
            &[
                ("user_id", "1"),
                ("command", "register"),
                ("name", "Duffy"),
                ("surename", "Duck"),
            ],
        ),
        (
            "user_updates",
            &[
                ("user_id", "2"),
                ("command", "register"),
                ("name", "Mickey"),
                ("surename", "Mouse"),
            ],
        ),
        (
            "user_friends",
            &[
                ("user_id", "1"),
                ("command", "add_friend"),
                ("friend_id", "2"),
            ],
        ),
        (
            "user_friends",
            &[
                ("user_id", "1"),
                ("command", "add_friend"),
                ("friend_id", "3"),
            ],
        ),
        ("user_activity", &[("user_id", "1"), ("command", "login")]),
        (
            "user_friends",
            &[
                ("user_id", "1"),
                ("command", "remove_friend"),
                ("friend_id", "3"),
            ],
        ),
        (
            "user_updates",
            &[("user_id", "1"), ("command", "rename"), ("name", "Daffy")],
        ),
        (
            "user_updates",
            &[("user_id", "2"), ("command", "unregister")],
        ),
        (
            "user_updates",
            &[("command", "register"), ("name", "Nobody")],
        ),
    ];
    for (stream, fields) in commands {
        xadd(&mut c, stream, fields);
    }
    let expected: std::collections::BTreeMap<String, String> = [
        ("name", "Daffy"),
        ("surename", "Duck"),
        ("status", "registered"),
        ("friend:2", "1"),
        ("online", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(
        eventually(WAIT, || hgetall(&mut c, "user_snapshot_1") == expected).await,
        "{:?}",
        hgetall(&mut c, "user_snapshot_1")
    );
    assert!(eventually(WAIT, || xrange(&mut c, "user_commands_rejected").len() == 1).await);
    let rejected = &xrange(&mut c, "user_commands_rejected")[0];
    assert!(
        field(rejected, "sluice-error").unwrap().contains("user_id"),
        "{rejected:?}"
    );
    assert!(
        hgetall(&mut c, "user_snapshot_2").is_empty(),
        "unregister deleted the snapshot"
    );
    for stream in ["user_updates", "user_activity", "user_friends"] {
        assert!(
            eventually(WAIT, || pending(&mut c, stream, "snapshotter") == 0).await,
            "{stream}: XACKed after the HSET"
        );
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_notifications_example_streams_to_connected_clients_only() {
    let server = RedisServer::start();
    let running = start_example("client-notifications.toml", &server).await;
    let bootstrap = running.embedded_kafka().unwrap().to_owned();
    let mut client = SseClient::connect(running.addr, "notifications", "client-1").await;
    let records: Vec<kafka::Input> = (0..6)
        .map(|i| {
            let key = ["client-1", "client-2", "other-9"][i % 3];
            (
                key.to_owned(),
                format!(r#"{{"n":{i}}}"#),
                vec![],
                1_700_000_000_000 + i as i64,
            )
        })
        .collect();
    kafka::produce(&bootstrap, "events", &records).await;
    let got: Vec<String> = client
        .take(2, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, [r#"{"n":0}"#, r#"{"n":3}"#]);
    assert!(client.next(Duration::from_millis(300)).await.is_none());
    let mut c = server.conn();
    assert_eq!(xrange(&mut c, "client:client-1").len(), 2);
    let streams: Vec<String> = ::redis::cmd("KEYS").arg("client:*").query(&mut c).unwrap();
    assert_eq!(
        streams,
        ["client:client-1"],
        "no stream for clients that are not connected"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_ask_the_host_whether_a_client_is_connected() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = format!(
        r#"
{sse}
[plugins.connected]
path = "{filter}"
config = {{ only_connected = true }}

[sinks.seen]
type = "file"
path = "{out}"

[routes.audit]
from = "in"
through = ["connected"]
to = ["seen"]
"#,
        sse = sse_config(&server.url(), ""),
        filter = plugin("client-filter"),
        out = out.display()
    );
    let a = start(&config, &workspace()).await;
    let b = start(&config, &workspace()).await;
    let _here = SseClient::connect(a.addr, "notify", "c1").await;
    let _elsewhere = SseClient::connect(b.addr, "notify", "c3").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for client in ["c1", "c2", "c3"] {
        post(a.addr, client, 0).await;
    }
    let keys = || {
        read_lines(&out)
            .iter()
            .map(|v| v["key"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(eventually(WAIT, || keys().len() >= 2).await, "{:?}", keys());
    assert_eq!(
        keys(),
        ["c1", "c3"],
        "connected here, and on the other instance"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_connection_rides_out_a_redis_restart() {
    let mut server = RedisServer::start_persistent();
    let running = start(&sse_config(&server.url(), ""), &workspace()).await;
    let addr = running.addr;
    let mut client = SseClient::connect(addr, "notify", "c1").await;
    for n in 0..2 {
        post(addr, "c1", n).await;
    }
    let before: Vec<String> = client
        .take(2, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    server.restart();
    // Ingest answers 500 until the sink's connection is back; a client
    // that retries gets its records in.
    for n in 2..4 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let req = builder(addr, "POST", "/ingest/in")
                .header("sluice-key", "c1")
                .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                    r#"{{"n":{n}}}"#
                ))))
                .unwrap();
            if call(addr, req).await.0 == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ingest never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after: Vec<String> = client
        .take(2, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(before, [r#"{"n":0}"#, r#"{"n":1}"#]);
    assert_eq!(
        after,
        [r#"{"n":2}"#, r#"{"n":3}"#],
        "the same connection, nothing twice"
    );
    assert!(client.next(Duration::from_millis(300)).await.is_none());
    running.shutdown().await.unwrap();
}
