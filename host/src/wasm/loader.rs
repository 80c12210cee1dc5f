//! Turning a `[plugins.NAME]` table into a linked [`Plugin`]: read the
//! component (building the crate first, if the table names one), compile it
//! off the async runtime, link it, and check it starts with its config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::WasmError;
use super::engine::{WasmEngine, content_hash};
use super::host::HostImports;
use super::plugin::{Limits, Plugin};
use crate::config::{PluginConfig, PluginSource};

/// A plugin ready to instantiate, and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// The component file it was read from.
    pub file: PathBuf,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// Loads `[plugins.name]`, and proves it by creating (and discarding) one
/// instance, so that a bad config fails at start-up, not at the first record.
pub async fn load_plugin(name: &str, plugin: &PluginConfig) -> Result<LoadedPlugin, WasmError> {
    load_plugin_with(name, plugin, HostImports::default()).await
}

/// [`load_plugin`], with the imports the check instance sees (the running
/// tables, so a join plugin's `init` can open them).
pub async fn load_plugin_with(
    name: &str,
    plugin: &PluginConfig,
    imports: HostImports,
) -> Result<LoadedPlugin, WasmError> {
    let file = match plugin.source() {
        Some(PluginSource::File(p)) => p,
        Some(PluginSource::Crate(c)) => crate::reload::build_crate(&c).await?,
        None => {
            return Err(WasmError::NoSource);
        }
    };
    let bytes = tokio::fs::read(&file).await.map_err(|e| WasmError::Read {
        file: file.clone(),
        source: Arc::new(e),
    })?;
    let config_json =
        serde_json::to_string(&plugin.config).map_err(|e| WasmError::ConfigJson(Arc::new(e)))?;
    let limits = Limits {
        max_memory: usize::try_from(plugin.memory_limit.0).unwrap_or(usize::MAX),
        timeout: plugin.timeout.0,
        fuel: plugin.fuel,
        state_limit: usize::try_from(plugin.state_limit.0).unwrap_or(usize::MAX),
        max_outputs_per_record: plugin.max_outputs_per_record,
    };
    let name = name.to_owned();
    let tables = plugin.tables.clone();
    let allow_precompiled = plugin.allow_precompiled;
    let plugin = tokio::task::spawn_blocking(move || {
        let hash = content_hash(&bytes);
        let component =
            WasmEngine::for_fuel(limits.fuel)?.compile(&hash, &bytes, allow_precompiled)?;
        let plugin = Arc::new(Plugin::new(
            &name,
            component,
            hash,
            limits,
            config_json,
            tables,
        )?);
        plugin.instantiate(format!("{name}/check").into(), imports)?;
        Ok::<_, WasmError>(plugin)
    })
    .await
    .map_err(|e| WasmError::Task(Arc::new(e)))??;
    Ok(LoadedPlugin {
        plugin,
        file,
        loaded_at: SystemTime::now(),
    })
}
