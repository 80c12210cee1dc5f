//! What Kafka sources and sinks share: the embedded broker and client
//! settings.
//!
//! `bootstrap_servers = "embedded"` runs librdkafka's in-process mock
//! cluster, so a config (like the quickstart) can go through real Kafka
//! protocol without installing a broker. It is for trying things out: it keeps
//! everything in memory and is gone when Sluice stops.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::ClientConfig;

/// The `bootstrap_servers` value that selects the embedded broker.
pub const EMBEDDED: &str = "embedded";

/// Partitions of each topic Sluice creates on the embedded broker.
pub const EMBEDDED_PARTITIONS: i32 = 4;

enum Command {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    Stop,
}

/// The embedded broker. The mock cluster is not `Send`, so it lives on a
/// thread of its own and takes commands from there.
pub struct EmbeddedKafka {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster on a loopback port.
    pub fn start() -> Result<Self, String> {
        let (commands, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sluice-embedded-kafka".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start the embedded broker: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Command::CreateTopic(name, partitions, reply) => {
                            let r = match cluster.create_topic(&name, partitions, 1) {
                                Err(e) if e.to_string().contains("TopicAlreadyExists") => Ok(()),
                                r => r.map_err(|e| format!("cannot create topic `{name}`: {e}")),
                            };
                            let _ = reply.send(r);
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|e| format!("cannot start the embedded broker thread: {e}"))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| "the embedded broker thread died".to_owned())??;
        Ok(Self {
            bootstrap,
            commands,
            thread: Some(thread),
        })
    }

    /// The address other Kafka clients can use.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions (an existing topic is fine).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic(topic.to_owned(), partitions, tx))
            .map_err(|_| "the embedded broker has stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "the embedded broker has stopped".to_owned())?
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `options = { … }` of a Kafka part: librdkafka settings, passed through
/// as they are. Its `Debug` hides the values of secret settings
/// (`sasl.password`, `ssl.key.password`, `*.secret`, PEM keys).
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct KafkaOptions(pub BTreeMap<String, String>);

impl std::ops::Deref for KafkaOptions {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Whether librdkafka setting `key` holds a secret.
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "ssl.key.pem",
        "token",
        "sasl.jaas.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_option(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// Problems creating a librdkafka client with `options` shows, each under
/// `at` (`sources.NAME`), naming the setting: an unknown or invalid value
/// (`security.protocol`, `sasl.mechanisms`), a certificate file that cannot
/// be read (`ssl.ca.location`). Nothing connects. A secret's value is never
/// in the message.
pub fn client_problems(
    at: &str,
    bootstrap: &str,
    options: &BTreeMap<String, String>,
    consumer: bool,
) -> Vec<String> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::KafkaError;
    use rdkafka::producer::BaseProducer;
    // The embedded broker runs only with Sluice; any address will do, as
    // nothing connects.
    let bootstrap = if bootstrap == EMBEDDED {
        "127.0.0.1:9"
    } else {
        bootstrap
    };
    let defaults: Vec<(&str, String)> = if consumer {
        vec![("group.id", "sluice-check".to_owned())]
    } else {
        Vec::new()
    };
    let config = client_config(bootstrap, &defaults, options);
    let result = if consumer {
        config.create::<BaseConsumer>().map(drop)
    } else {
        config.create::<BaseProducer>().map(drop)
    };
    match result {
        Ok(()) => Vec::new(),
        Err(KafkaError::ClientConfig(_, description, key, _)) => {
            vec![format!("{at}.options.\"{key}\": {description}")]
        }
        Err(e) => {
            let message = match &e {
                KafkaError::ClientCreation(m) => m.clone(),
                other => other.to_string(),
            };
            let message = redact_values(&message, options);
            // librdkafka names the setting at the start of its message.
            match options.keys().find(|k| message.contains(k.as_str())) {
                Some(key) => vec![format!("{at}.options.\"{key}\": {message}")],
                None => vec![format!("{at}.options: {message}")],
            }
        }
    }
}

/// `message` with the value of every secret option replaced by `***`.
fn redact_values(message: &str, options: &BTreeMap<String, String>) -> String {
    options
        .iter()
        .filter(|(k, v)| is_secret_option(k) && !v.is_empty())
        .fold(message.to_owned(), |m, (_, v)| m.replace(v.as_str(), "***"))
}

/// A librdkafka config: Sluice's settings for `bootstrap`, then the user's
/// `options` on top (they win; an empty one is left out).
pub fn client_config(
    bootstrap: &str,
    defaults: &[(&str, String)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in defaults {
        c.set(*k, v);
    }
    // An empty value leaves the setting unset, so `"${VAR:-}"` in a config
    // turns a setting off (TLS and SASL settings for a plaintext run).
    for (k, v) in options.iter().filter(|(_, v)| !v.is_empty()) {
        c.set(k, v);
    }
    c
}

/// `bootstrap_servers` with `embedded` replaced by the embedded broker.
pub fn resolve(bootstrap: &str, embedded: Option<&EmbeddedKafka>) -> Result<String, String> {
    if bootstrap == EMBEDDED {
        embedded
            .map(|e| e.bootstrap_servers().to_owned())
            .ok_or_else(|| "the embedded broker is not running".to_owned())
    } else {
        Ok(bootstrap.to_owned())
    }
}

/// The problem with a `bootstrap_servers` value at `at`, if any.
pub fn bootstrap_problem(at: &str, bootstrap: &str) -> Option<String> {
    bootstrap.is_empty().then(|| {
        format!(
            "{at}.bootstrap_servers: must not be empty (\"embedded\" runs an in-process broker)"
        )
    })
}
