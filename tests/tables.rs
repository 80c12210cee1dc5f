//! Tables and joins: `examples/enrich-purchases.toml` end to end on a real
//! Kafka-protocol broker, table updates and tombstones while running, the
//! wait for a table to load, undeclared tables, and the same join against a
//! Redis hash.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kafka::*;
use common::redis::RedisServer;
use common::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const WAIT: Duration = Duration::from_secs(30);

/// Produces `(key, value)` records (a `None` value is a tombstone), all
/// sent before any is awaited, in order.
async fn send(bootstrap: &str, topic: &str, records: &[(Option<String>, Option<String>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for (key, value) in records {
        let mut r: FutureRecord<'_, String, String> = FutureRecord::to(topic);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        pending.push(producer.send_result(r).map_err(|(e, _)| e).unwrap());
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

fn product(id: u32, name: &str) -> (Option<String>, Option<String>) {
    (
        Some(id.to_string()),
        Some(format!(r#"{{"id":{id}, "name":"{name}"}}"#)),
    )
}

fn purchase(id: u32, price: &str) -> (Option<String>, Option<String>) {
    (None, Some(format!(r#"{{"id": {id}, "price": {price}}}"#)))
}

/// The example, with its topics on `broker` (one partition for purchases,
/// so their order is the test's), its group and listen address unique.
async fn start_example(broker: &Broker) -> sluice::runtime::Running {
    broker.create_topic("referentiel", 3).await;
    broker.create_topic("achats", 1).await;
    broker.create_topic("achats-enrichis", 1).await;
    let path = workspace().join("examples").join("enrich-purchases.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bootstrap = broker.bootstrap();
    let group = unique("enrich");
    let config = sluice::config::Config::parse(&text, path.parent().unwrap(), |name| match name {
        "KAFKA_BOOTSTRAP_SERVERS" => Some(bootstrap.clone()),
        "SLUICE_GROUP" => Some(group.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    init_logging();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sluice::runtime::start_with_listener(config, listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn read(bootstrap: &str, topic: &'static str, n: usize) -> tokio::task::JoinHandle<Vec<Rec>> {
    let b = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || consume(&b, topic, n, WAIT))
}

fn values(recs: &[Rec]) -> Vec<&str> {
    recs.iter().map(|r| r.value.as_str()).collect()
}

/// Every topic name here is the example's own, so each test has a broker to
/// itself (the mock cluster; an external broker would share them).
fn own_broker() -> Broker {
    Broker::Mock(sluice::common::kafka::EmbeddedKafka::start().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrich_purchases_example_joins_exactly_as_specified() {
    let broker = own_broker();
    let running = start_example(&broker).await;
    let bootstrap = broker.bootstrap();
    send(
        &bootstrap,
        "referentiel",
        &[
            product(1, "produit1"),
            product(2, "produit2"),
            product(3, "produit3"),
        ],
    )
    .await;
    // The table follows the topic; let it have the products first.
    wait_keys(running.addr, 3).await;
    send(
        &bootstrap,
        "achats",
        &[
            purchase(1, "3.45"),
            purchase(2, "13.40"),
            purchase(30, "1.05"),
            purchase(1, "3.40"),
        ],
    )
    .await;
    let out = read(&bootstrap, "achats-enrichis", 4).await.unwrap();
    running.shutdown().await.unwrap();
    assert_eq!(
        values(&out),
        [
            r#"{"id":1,"name":"produit1","price":3.45}"#,
            r#"{"id":2,"name":"produit2","price":13.40}"#,
            r#"{"id":30,"name":"REF INCONNUE","price":1.05}"#,
            r#"{"id":1,"name":"produit1","price":3.40}"#,
        ]
    );
}

/// Waits until the `products` table holds `n` keys.
async fn wait_keys(addr: std::net::SocketAddr, n: usize) {
    let wanted = format!("sluice_table_keys{{table=\"products\"}} {n}\n");
    let loaded = eventually_async(WAIT, || async {
        get(addr, "/metrics").await.1.contains(&wanted)
    })
    .await;
    assert!(loaded, "the table never held {n} keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_tombstones_apply_to_later_records_only() {
    let broker = own_broker();
    let running = start_example(&broker).await;
    let bootstrap = broker.bootstrap();
    send(
        &bootstrap,
        "referentiel",
        &[product(1, "produit1"), product(2, "produit2")],
    )
    .await;
    wait_keys(running.addr, 2).await;
    send(&bootstrap, "achats", &[purchase(1, "1"), purchase(2, "2")]).await;
    let first = read(&bootstrap, "achats-enrichis", 2).await.unwrap();
    assert_eq!(
        values(&first),
        [
            r#"{"id":1,"name":"produit1","price":1}"#,
            r#"{"id":2,"name":"produit2","price":2}"#,
        ]
    );

    // Rename product 1, delete product 2, then keep buying both until the
    // change shows; every purchase comes out once.
    send(
        &bootstrap,
        "referentiel",
        &[product(1, "renamed"), (Some("2".into()), None)],
    )
    .await;
    let mut sent = 2;
    let mut out = Vec::new();
    for round in 0..50 {
        send(&bootstrap, "achats", &[purchase(1, "3"), purchase(2, "4")]).await;
        sent += 2;
        out = read(&bootstrap, "achats-enrichis", sent).await.unwrap();
        if out.len() >= sent
            && out[sent - 2].value.contains("renamed")
            && out[sent - 1].value.contains("REF INCONNUE")
        {
            break;
        }
        assert!(round < 49, "the update never applied: {:?}", values(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown().await.unwrap();
    assert_eq!(
        out.len(),
        sent,
        "each purchase exactly once: {:?}",
        values(&out)
    );
    // Earlier purchases were not re-emitted with the new name: the first
    // two are unchanged, and once a purchase saw the update, all later did.
    assert_eq!(values(&out[..2]), values(&first));
    let one: Vec<&str> = out.iter().step_by(2).map(|r| r.value.as_str()).collect();
    let renamed_from = one.iter().position(|v| v.contains("renamed")).unwrap();
    assert!(one[..renamed_from].iter().all(|v| v.contains("produit1")));
    assert!(one[renamed_from..].iter().all(|v| v.contains("renamed")));
    let two: Vec<&str> = out
        .iter()
        .skip(1)
        .step_by(2)
        .map(|r| r.value.as_str())
        .collect();
    let deleted_from = two.iter().position(|v| v.contains("REF INCONNUE")).unwrap();
    assert!(two[..deleted_from].iter().all(|v| v.contains("produit2")));
    assert!(
        two[deleted_from..]
            .iter()
            .all(|v| v.contains("REF INCONNUE"))
    );
}

/// A join route on an HTTP source and a table on `server`'s hash.
fn redis_join(url: &str, refresh: &str) -> String {
    format!(
        r#"
        [tables.products]
        type = "redis"
        url = "{url}"
        hash = "produits"
        refresh = "{refresh}"
        [sources.in]
        type = "http"
        [plugins.enrich]
        path = "{plugin}"
        tables = ["products"]
        [plugins.enrich.config]
        table = "products"
        join_field = "id"
        fields = ["name"]
        default = {{ name = "REF INCONNUE" }}
        [sinks.out]
        type = "file"
        path = "out.jsonl"
        [routes.r]
        from = "in"
        through = ["enrich"]
        to = ["out"]
        "#,
        plugin = plugin("json-enrich")
    )
}

async fn post_purchase(addr: std::net::SocketAddr, id: u32, price: f64) -> (u16, String) {
    let record = serde_json::json!({"value": {"id": id, "price": price}});
    let (status, body) = post_ndjson(addr, "in", &[record]).await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_waits_for_its_table_to_load_before_the_first_join() {
    // The table's Redis is down when Sluice starts: the table cannot load,
    // so the route must not join (it would miss every key).
    let mut server = RedisServer::start_persistent();
    let mut c = server.conn();
    let _: () = ::redis::cmd("HSET")
        .arg("produits")
        .arg("1")
        .arg(r#"{"id":1, "name":"produit1"}"#)
        .query(&mut c)
        .unwrap();
    let _: () = ::redis::cmd("SAVE").query(&mut c).unwrap();
    drop(c);
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let running = start(&redis_join(&server.url(), "50ms"), dir.path()).await;
    let (status, body) = post_purchase(running.addr, 1, 3.45).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for a table"), "{body}");
    let (_, metrics) = get(running.addr, "/metrics").await;
    assert!(
        metrics.contains("sluice_table_keys{table=\"products\"} 0"),
        "{metrics}"
    );
    let (status, ready) = get(running.addr, "/ready").await;
    assert_eq!(status, 503, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        ready["waiting"],
        serde_json::json!(["table `products` is loading", "source `in` is not open"])
    );
    let (status, health) = get(running.addr, "/health").await;
    assert_eq!(status, 200, "loading is not a failure: {health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["tables"]["products"],
        serde_json::json!({"ready": false, "keys": 0})
    );

    server.restart();
    wait_ready(running.addr).await;
    let (_, health) = get(running.addr, "/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["tables"]["products"],
        serde_json::json!({"ready": true, "keys": 1})
    );
    let accepted = eventually_async(WAIT, || async {
        post_purchase(running.addr, 1, 3.45).await.0 == 200
    })
    .await;
    assert!(accepted, "the source never opened after the table loaded");
    running.shutdown().await.unwrap();
    let lines = read_lines(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["value"],
        serde_json::json!({"id": 1, "name": "produit1", "price": 3.45})
    );
}

#[tokio::test]
async fn a_stage_that_reads_an_undeclared_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [tables.products]
        type = "redis"
        url = "redis://127.0.0.1:1"
        hash = "produits"
        [sources.in]
        type = "http"
        [plugins.enrich]
        path = "{plugin}"
        [plugins.enrich.config]
        table = "products"
        join_field = "id"
        fields = ["name"]
        [sinks.out]
        type = "blackhole"
        [routes.r]
        from = "in"
        through = ["enrich"]
        to = ["out"]
        "#,
        plugin = plugin("json-enrich")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = sluice::runtime::start_with_listener(config(&text, dir.path()), listener)
        .await
        .err()
        .unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("plugins.enrich")
            && err.contains("may not read table `products`")
            && err.contains("[plugins.enrich] tables"),
        "{err}"
    );

    // Naming a table that does not exist is a config error.
    let text = text.replace(
        "[plugins.enrich]\n",
        "[plugins.enrich]\n        tables = [\"prodcts\"]\n",
    );
    let err = sluice::config::Config::parse(&text, dir.path(), |_| None).unwrap_err();
    assert!(
        err.to_string()
            .contains("plugins.enrich.tables[0]: no table named `prodcts`"),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_join_runs_against_a_redis_hash() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let _: () = ::redis::cmd("HSET")
        .arg("produits")
        .arg("1")
        .arg(r#"{"id":1, "name":"produit1"}"#)
        .arg("2")
        .arg(r#"{"id":2, "name":"produit2"}"#)
        .query(&mut c)
        .unwrap();
    // Only the table's source differs from the example.
    let dir = tempfile::tempdir().unwrap();
    let text = redis_join(&server.url(), "50ms");
    let running = start(&text, dir.path()).await;
    // The source opens once the table has loaded (ingest answers 503 before).
    wait_ready(running.addr).await;
    let post = |id: u32, price: f64| {
        let addr = running.addr;
        async move {
            let (status, body) = post_ndjson(
                addr,
                "in",
                &[serde_json::json!({"value": {"id": id, "price": price}})],
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    post(1, 3.45).await;
    post(30, 1.05).await;
    let _: () = ::redis::cmd("HSET")
        .arg("produits")
        .arg("30")
        .arg(r#"{"id":30, "name":"produit30"}"#)
        .query(&mut c)
        .unwrap();
    let out = dir.path().join("out.jsonl");
    assert!(
        eventually_async(WAIT, || async {
            post(30, 2.0).await;
            read_lines(&out)
                .last()
                .is_some_and(|l| l["value"]["name"] == "produit30")
        })
        .await
    );
    running.shutdown().await.unwrap();
    let lines = read_lines(&out);
    assert_eq!(
        lines[0]["value"],
        serde_json::json!({"id": 1, "name": "produit1", "price": 3.45})
    );
    assert_eq!(
        lines[1]["value"],
        serde_json::json!({"id": 30, "name": "REF INCONNUE", "price": 1.05})
    );
}

fn hset(c: &mut ::redis::Connection, hash: &str, entries: &[(&str, &str)]) {
    let mut cmd = ::redis::cmd("HSET");
    cmd.arg(hash);
    for (k, v) in entries {
        cmd.arg(*k).arg(*v);
    }
    let _: () = cmd.query(c).unwrap();
}

async fn table_keys(addr: std::net::SocketAddr) -> String {
    let (_, metrics) = get(addr, "/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("sluice_table_keys{table=\"products\"}"))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_swaps_a_changed_table_and_reloads_its_readers() {
    let server = RedisServer::start();
    let mut c = server.conn();
    hset(
        &mut c,
        "produits",
        &[("1", r#"{"id":1,"name":"produit1"}"#)],
    );
    hset(
        &mut c,
        "produits-v2",
        &[
            ("1", r#"{"id":1,"name":"nouveau1"}"#),
            ("2", r#"{"id":2,"name":"nouveau2"}"#),
            ("3", r#"{"id":3,"name":"nouveau3"}"#),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let text = redis_join(&server.url(), "50ms");
    let mut running = start(&text, dir.path()).await;
    wait_ready(running.addr).await;
    assert_eq!(post_purchase(running.addr, 1, 1.0).await.0, 200);

    // The table now reads another hash: the table is loaded anew, the
    // plugin that reads it is loaded again, and its unit restarts.
    let v2 = text.replace("hash = \"produits\"", "hash = \"produits-v2\"");
    let report = running
        .reload(config(&v2, dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(report.tables, ["products"], "{report}");
    assert_eq!(report.plugins, ["enrich"], "{report}");
    assert_eq!(report.restarted, ["in"], "{report}");
    assert!(report.need_restart.is_empty(), "{report:?}");
    wait_ready(running.addr).await;
    assert_eq!(post_purchase(running.addr, 1, 2.0).await.0, 200);
    assert_eq!(post_purchase(running.addr, 2, 3.0).await.0, 200);

    // The old loader has stopped: changing the old hash moves nothing (the
    // key-count gauge is shared by name, so a live old loader would set it
    // to 2 within a refresh).
    assert_eq!(
        table_keys(running.addr).await,
        "sluice_table_keys{table=\"products\"} 3"
    );
    hset(&mut c, "produits", &[("9", r#"{"id":9,"name":"x"}"#)]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        table_keys(running.addr).await,
        "sluice_table_keys{table=\"products\"} 3"
    );

    let cut = |text: &str, from: &str, to: &str| {
        let (a, b) = (text.find(from).unwrap(), text.find(to).unwrap());
        format!("{}{}", &text[..a], &text[b..])
    };
    // A table that cannot be built refuses the reload; the running table
    // and its readers carry on.
    let bad = v2.replace(
        "type = \"redis\"\n        url = ",
        "type = \"kafka\"\n        bootstrap_servers = \"127.0.0.1:1\"\n        topic = \"t\"\n        options = { \"no.such.setting\" = \"1\" }\n        # url = ",
    );
    let bad = cut(&bad, "        hash = \"produits-v2\"", "[sources.in]");
    let err = running.reload(config(&bad, dir.path())).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("tables.products") && err.contains("no.such.setting"),
        "{err}"
    );
    wait_ready(running.addr).await;
    assert_eq!(post_purchase(running.addr, 3, 3.5).await.0, 200);

    // The table and its reader removed: the route passes records through.
    let plain = cut(&v2, "[tables.products]", "[sources.in]");
    let plain =
        cut(&plain, "[plugins.enrich]", "[sinks.out]").replace("through = [\"enrich\"]", "");
    let report = running
        .reload(config(&plain, dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.tables.is_empty(), "{report}");
    assert_eq!(report.restarted, ["in"], "{report}");
    wait_ready(running.addr).await;
    let (_, health) = get(running.addr, "/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["tables"], serde_json::json!({}));
    assert_eq!(
        table_keys(running.addr).await,
        "sluice_table_keys{table=\"products\"} 0"
    );
    assert_eq!(post_purchase(running.addr, 2, 4.0).await.0, 200);

    running.shutdown().await.unwrap();
    let values: Vec<serde_json::Value> = read_lines(&dir.path().join("out.jsonl"))
        .into_iter()
        .map(|l| l["value"].clone())
        .collect();
    assert_eq!(
        values,
        [
            serde_json::json!({"id": 1, "name": "produit1", "price": 1.0}),
            serde_json::json!({"id": 1, "name": "nouveau1", "price": 2.0}),
            serde_json::json!({"id": 2, "name": "nouveau2", "price": 3.0}),
            serde_json::json!({"id": 3, "name": "nouveau3", "price": 3.5}),
            serde_json::json!({"id": 2, "price": 4.0}),
        ]
    );
}
