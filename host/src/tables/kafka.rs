//! `type = "kafka"` tables: the last value of every key of a topic (a
//! compacted topic, usually), a null value deleting the key.
//!
//! The loader is not a group member: it assigns itself every partition
//! from the beginning, so every instance holds the whole table, and it
//! commits nothing. It is ready once each partition has reached the end
//! offset it had when loading began.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;

use super::{Loader, Table, TableKind};
use crate::common::kafka::{self, EmbeddedKafka};
use crate::common::kafka_link::{KafkaLink, LinkContext, STATS_INTERVAL_MS};
use crate::kinds::BuildContext;
use crate::shutdown::Shutdown;

/// How often the lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How long a metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `[tables.NAME]` with `type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTableConfig {
    /// `host:port,…`, or `"embedded"` for the in-process broker.
    pub bootstrap_servers: String,
    /// The topic to materialize.
    pub topic: String,
    /// librdkafka settings, over Sluice's.
    #[serde(default)]
    pub options: crate::common::kafka::KafkaOptions,
}

impl TableKind for KafkaTableConfig {
    fn type_name() -> &'static str {
        "kafka"
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topic.is_empty() {
            problems.push(format!("{at}.topic: must not be empty"));
        }
        problems.extend(kafka::bootstrap_problem(at, &self.bootstrap_servers));
        problems
    }

    fn client_problems(&self, at: &str) -> Vec<String> {
        kafka::client_problems(at, &self.bootstrap_servers, &self.options, true)
    }

    fn embedded_topics(&self) -> Option<Vec<String>> {
        (self.bootstrap_servers == kafka::EMBEDDED).then(|| vec![self.topic.clone()])
    }

    fn build(&self, table: Arc<Table>, cx: &BuildContext<'_>) -> anyhow::Result<Box<dyn Loader>> {
        Ok(Box::new(KafkaLoader::new(
            table,
            self,
            cx.embedded,
            cx.metrics.links(),
        )?))
    }
}

/// Fills a table from a topic and follows it.
pub(super) struct KafkaLoader {
    table: Arc<Table>,
    topic: String,
    consumer: Arc<StreamConsumer<LinkContext>>,
}

impl KafkaLoader {
    pub(super) fn new(
        table: Arc<Table>,
        config: &KafkaTableConfig,
        embedded: Option<&EmbeddedKafka>,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        let bootstrap =
            kafka::resolve(&config.bootstrap_servers, embedded).map_err(anyhow::Error::msg)?;
        let defaults = [
            // Never used to join a group or commit: librdkafka wants one.
            ("group.id", format!("sluice-table-{}", table.name())),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("enable.partition.eof", "true".into()),
            ("auto.offset.reset", "earliest".into()),
            ("fetch.wait.max.ms", "10".into()),
            ("statistics.interval.ms", STATS_INTERVAL_MS.into()),
        ];
        let link = KafkaLink::new(links, &format!("tables.{}", table.name()));
        let consumer: StreamConsumer<LinkContext> =
            kafka::client_config(&bootstrap, &defaults, &config.options)
                .create_with_context(LinkContext(link))?;
        Ok(Self {
            table,
            topic: config.topic.clone(),
            consumer: Arc::new(consumer),
        })
    }
}

#[async_trait::async_trait]
impl Loader for KafkaLoader {
    async fn run(self: Box<Self>, mut shutdown: Shutdown) {
        let name = self.table.name().to_owned();
        // Retry until the topic can be read: the broker may be starting.
        let mut ends = loop {
            match self.assign().await {
                Ok(ends) => break ends,
                Err(e) => {
                    tracing::warn!(table = %name, topic = %self.topic, error = %format!("{e:#}"), "Cannot read the table's topic yet; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.recv() => return,
                    }
                }
            }
        };
        // The next offset to read, per partition.
        let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
        let mut behind: Vec<i32> = ends
            .iter()
            .filter(|(_, (low, high))| high > low)
            .map(|(p, _)| *p)
            .collect();
        if behind.is_empty() {
            self.table.set_ready();
        }
        let mut lag_tick = tokio::time::interval(LAG_INTERVAL);
        loop {
            tokio::select! {
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let (partition, offset) = (m.partition(), m.offset());
                        if let Some(key) = m.key() {
                            self.table.apply([(key, m.payload())]);
                        }
                        next.insert(partition, offset + 1);
                        let end = ends.get(&partition).map_or(0, |(_, high)| *high);
                        if offset + 1 >= end {
                            behind.retain(|p| *p != partition);
                        }
                    }
                    Err(KafkaError::PartitionEOF(partition)) => behind.retain(|p| *p != partition),
                    Err(e) => {
                        tracing::warn!(table = %name, error = %e, "Reading the table's topic failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = lag_tick.tick() => {
                    if let Ok(latest) = self.watermarks(ends.keys().copied().collect()).await {
                        let lag: i64 = latest
                            .iter()
                            .map(|(p, (_, high))| high - next.get(p).copied().unwrap_or(0))
                            .sum();
                        self.table.set_lag(lag);
                        ends = latest;
                    }
                }
                _ = shutdown.recv() => return,
            }
            if behind.is_empty() {
                self.table.set_ready();
            }
        }
    }
}

impl KafkaLoader {
    /// Assigns every partition from the beginning; returns each one's
    /// (low, high) watermarks as of now.
    async fn assign(&self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .context("cannot fetch the topic's metadata")?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                anyhow::bail!("topic `{topic}` does not exist (or has no partitions)");
            }
            let mut list = TopicPartitionList::new();
            for p in &partitions {
                list.add_partition_offset(&topic, *p, Offset::Beginning)?;
            }
            consumer.assign(&list)?;
            Ok(partitions)
        })
        .await
        .context("the assign task failed")??;
        self.watermarks(partitions).await
    }

    async fn watermarks(&self, partitions: Vec<i32>) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|p| {
                    let marks = consumer
                        .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                        .with_context(|| format!("cannot fetch the end of partition {p}"))?;
                    Ok((p, marks))
                })
                .collect()
        })
        .await
        .context("the watermark task failed")?
    }
}
