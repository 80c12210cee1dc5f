//! `type = "kafka"`: produce to a topic, fixed or filled from each record.
//!
//! Key, value (null stays null), headers and timestamp are kept. The
//! idempotent producer is on and keyed records are partitioned with
//! murmur2, as Java clients do, so topics stay co-partitioned with Kafka
//! Streams apps. A batch is acknowledged when every record's delivery report
//! is a success; any failure fails the batch (and so holds its source).

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;

use anyhow::Context as _;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind};
use crate::kinds::BuildContext;

use crate::common::kafka::{self, EmbeddedKafka};
use crate::common::kafka_link::{KafkaLink, LinkContext, STATS_INTERVAL_MS};
use crate::config::HumanDuration;
use crate::template::{Destination, Template};

/// `[sinks.NAME]` with `type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port,...`, or `"embedded"` for the in-process broker.
    pub bootstrap_servers: String,
    /// The topic: fixed (`"orders"`) or a template (`"orders-{field.region}"`,
    /// `"{header.topic}"`, `"user-{key}"`, `"{origin.topic}"`). With
    /// `topic_map`, the fallback for records no entry matches.
    pub topic: Option<Template>,
    /// Topics by the record's origin (the Redis stream or Kafka topic it
    /// came from): `[{ match = "device:*:stream", topic = "devices" }, …]`;
    /// the first match wins, in the order written.
    #[serde(default)]
    pub topic_map: Vec<crate::template::MapEntry>,
    /// The message key: a template (`"{field.device_id}"`, `"{origin.topic}"`).
    /// Unset: the record's key.
    pub key: Option<Template>,
    /// How long librdkafka may keep retrying one record before its delivery
    /// fails (`message.timeout.ms`).
    #[serde(default = "crate::config::defaults::kafka_sink_delivery_timeout")]
    pub delivery_timeout: HumanDuration,
    /// librdkafka settings, passed through as they are (they override
    /// Sluice's).
    #[serde(default)]
    pub options: crate::common::kafka::KafkaOptions,
}

#[async_trait]
impl SinkKind for KafkaSinkConfig {
    fn type_name() -> &'static str {
        "kafka"
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topic.as_ref().and_then(Template::fixed) == Some("") {
            problems.push(format!("{at}.topic: must not be empty"));
        }
        if self.topic.is_none() && self.topic_map.is_empty() {
            problems.push(format!("{at}: set `topic`, `topic_map`, or both"));
        }
        problems.extend(kafka::bootstrap_problem(at, &self.bootstrap_servers));
        problems
    }

    fn client_problems(&self, at: &str) -> Vec<String> {
        kafka::client_problems(at, &self.bootstrap_servers, &self.options, false)
    }

    fn embedded_topics(&self) -> Option<Vec<String>> {
        // A templated topic is only known per record.
        (self.bootstrap_servers == kafka::EMBEDDED).then(|| {
            self.destination()
                .fixed_names()
                .map(str::to_owned)
                .collect()
        })
    }

    async fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        let sink = KafkaSink::new(name, self, cx.embedded, cx.metrics.links())
            .with_context(|| format!("cannot create the producer of sinks.{name}"))?;
        Ok(BuiltKind::plain(sink))
    }
}

impl KafkaSinkConfig {
    /// Where records go: `topic_map`, then `topic`.
    fn destination(&self) -> Destination {
        Destination::new(self.topic_map.clone(), self.topic.clone())
    }
}

/// Sluice's producer settings for `config` (its `options` override them).
pub(crate) fn producer_defaults(config: &KafkaSinkConfig) -> Vec<(&'static str, String)> {
    vec![
        ("enable.idempotence", "true".to_owned()),
        ("acks", "all".to_owned()),
        // Java's default partitioner for keyed records.
        ("partitioner", "murmur2_random".to_owned()),
        ("linger.ms", "5".to_owned()),
        (
            "message.timeout.ms",
            config.delivery_timeout.0.as_millis().to_string(),
        ),
        ("statistics.interval.ms", STATS_INTERVAL_MS.into()),
    ]
}

pub(crate) struct KafkaSink {
    name: String,
    producer: FutureProducer<LinkContext>,
    topic: Destination,
    key: Option<Template>,
    /// Write each batch to its source partition (a state changelog).
    by_origin_partition: bool,
    /// Scratch for rendered topics and keys.
    buf: String,
}

impl KafkaSink {
    pub(crate) fn new(
        name: &str,
        config: &KafkaSinkConfig,
        embedded: Option<&EmbeddedKafka>,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        let bootstrap =
            kafka::resolve(&config.bootstrap_servers, embedded).map_err(anyhow::Error::msg)?;
        let producer: FutureProducer<LinkContext> =
            kafka::client_config(&bootstrap, &producer_defaults(config), &config.options)
                .create_with_context(LinkContext(KafkaLink::new(
                    links,
                    &format!("sinks.{name}"),
                )))?;
        Ok(Self::with_producer(name, config, producer))
    }

    /// Sink `name` writing through `producer` (a transactional one, for an
    /// `exactly_once` route: the route's source commits its transactions).
    pub(crate) fn with_producer(
        name: &str,
        config: &KafkaSinkConfig,
        producer: FutureProducer<LinkContext>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            producer,
            topic: config.destination(),
            key: config.key.clone(),
            by_origin_partition: false,
            buf: String::new(),
        }
    }

    /// Writes each batch to the partition its records came from, not by
    /// key: a state changelog, whose partition `p` holds the state of
    /// source partition `p`.
    pub(crate) fn by_origin_partition(mut self) -> Self {
        self.by_origin_partition = true;
        self
    }

    fn error(&self, reason: String) -> SinkError {
        SinkError::Delivery {
            sink: self.name.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        for record in batch.records() {
            // Nothing per record for a fixed topic or a record without
            // headers: both would otherwise allocate for every message.
            let topic: Cow<'_, str> = match self.topic.fixed() {
                Some(t) => Cow::Borrowed(t),
                None => {
                    self.buf.clear();
                    self.topic
                        .render_into(&record, &mut self.buf)
                        .map_err(|e| self.error(e.to_string()))?;
                    Cow::Owned(self.buf.clone())
                }
            };
            let key: Option<Cow<'_, [u8]>> = match &self.key {
                Some(t) => {
                    let k = t.render(&record).map_err(|e| self.error(e.to_string()))?;
                    Some(Cow::Owned(k.into_bytes()))
                }
                None => record.key().map(Cow::Borrowed),
            };
            let mut message: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).timestamp(record.timestamp());
            let mut headers = record.headers().peekable();
            if headers.peek().is_some() {
                let mut owned = OwnedHeaders::new();
                for (key, value) in headers {
                    owned = owned.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                message = message.headers(owned);
            }
            if let Some(key) = &key {
                message = message.key(key.as_ref());
            }
            if self.by_origin_partition {
                message = message.partition(batch.batch.origin.partition);
            }
            if let Some(value) = record.value_opt() {
                message = message.payload(value);
            }
            loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: let it drain a little.
                        message = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => {
                        return Err(self.error(format!("cannot enqueue to `{topic}`: {e}")));
                    }
                }
            }
        }
        // Enqueued: the delivery reports arrive later, while the next batches
        // are being enqueued.
        let name = self.name.clone();
        Ok(Box::pin(async move {
            for delivery in deliveries {
                let failure = match delivery.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err((e, _))) => format!("delivery failed: {e}"),
                    Err(_) => "the producer dropped a delivery report".to_owned(),
                };
                return Err(SinkError::Delivery {
                    sink: name,
                    reason: failure,
                });
            }
            Ok(())
        }))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await
            .map_err(|e| self.error(e.to_string()))?
            .map_err(|e| self.error(format!("flush: {e}")))
    }
}
