//! `[server]`: the one HTTP server for ingest, SSE, health and metrics.

use std::net::SocketAddr;

use serde::Deserialize;

use super::HumanDuration;

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `host:port`. Port 0 picks a free port.
    #[serde(default = "crate::config::defaults::server_listen")]
    pub listen: SocketAddr,
    /// How long graceful shutdown may take before the rest is abandoned.
    #[serde(default = "crate::config::defaults::server_grace")]
    pub shutdown_grace: HumanDuration,
    /// Reload a plugin when its component file changes.
    #[serde(default = "crate::config::defaults::server_hot_reload")]
    pub hot_reload: bool,
    /// Reload the config when its file changes (`sluice run`; SIGHUP
    /// always reloads).
    #[serde(default = "crate::config::defaults::server_hot_reload")]
    pub watch_config: bool,
    /// Bearer tokens for the admin endpoints (`/metrics`, `/plugins`, and
    /// the detail of `/health`). Unset (with no `admin_token_file`): they
    /// are open. `/health`'s status and `/ready` stay open for probes.
    #[serde(default)]
    pub admin_tokens: Vec<crate::config::Secret>,
    /// A file of admin tokens, one a line. Relative to the config file.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Serve HTTPS: `{ cert_file = "…", key_file = "…" }`, read again on
    /// every config reload.
    pub tls: Option<crate::server::ServerTls>,
    /// How long a source, sink or table may be unable to reach its Kafka
    /// or Redis before `/ready` answers 503 naming it.
    #[serde(default = "crate::config::defaults::server_ready_grace")]
    pub ready_grace: HumanDuration,
    /// This instance's name among those sharing a config: part of the
    /// `transactional.id` of `exactly_once` routes, so it must differ per
    /// running instance and stay the same across its restarts (a
    /// StatefulSet pod name). Unset: `$HOSTNAME`, then the host name.
    pub instance_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: crate::config::defaults::server_listen(),
            shutdown_grace: crate::config::defaults::server_grace(),
            hot_reload: crate::config::defaults::server_hot_reload(),
            watch_config: crate::config::defaults::server_hot_reload(),
            admin_tokens: Vec::new(),
            admin_token_file: None,
            tls: None,
            ready_grace: crate::config::defaults::server_ready_grace(),
            instance_id: None,
        }
    }
}

impl ServerConfig {
    /// [`ServerConfig::instance_id`], or the host's name.
    pub fn instance(&self) -> String {
        if let Some(id) = self.instance_id.as_ref().filter(|s| !s.is_empty()) {
            return id.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sluice".to_owned())
    }
}
