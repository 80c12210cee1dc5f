//! `[server]`: the one HTTP server for ingest, SSE, health and metrics.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{HumanDuration, defaults};

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `host:port`. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long graceful shutdown may take before the rest is abandoned.
    #[serde(default = "default_grace")]
    pub shutdown_grace: HumanDuration,
    /// Reload a plugin when its component file changes.
    #[serde(default = "default_hot_reload")]
    pub hot_reload: bool,
    /// Reload the config when its file changes (`sluice run`; SIGHUP
    /// always reloads).
    #[serde(default = "default_hot_reload")]
    pub watch_config: bool,
}

fn default_hot_reload() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    // The literal is a valid address; see `defaults::LISTEN`.
    defaults::LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

fn default_grace() -> HumanDuration {
    HumanDuration(defaults::SHUTDOWN_GRACE)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            shutdown_grace: default_grace(),
            hot_reload: default_hot_reload(),
            watch_config: default_hot_reload(),
        }
    }
}
