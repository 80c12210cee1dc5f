//! The `sluice` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::runtime;

/// A stream router whose per-record logic runs as WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the routes in a config until SIGINT or SIGTERM.
    Run {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Run a config for plugin development: plugins named by `crate` are
    /// rebuilt when their sources change and hot-reloaded.
    Dev {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Validate a config and load every plugin in it, then exit.
    Check {
        /// The TOML config file.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run { config } => run(config, false).await,
            Command::Dev { config } => run(config, true).await,
            Command::Check { config } => check(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf, dev: bool) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    let running = if dev {
        runtime::start_dev(config, listener).await
    } else {
        runtime::start_with_listener(config, listener).await
    }
    .with_context(|| format!("cannot start {}", path.display()))?;
    wait_for_signal().await?;
    running.shutdown().await
}

async fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let plugins = runtime::load_plugins(&config).await?;
    for (name, p) in &plugins {
        println!(
            "plugins.{name}: ok ({}, version {}, {})",
            p.plugin.kind,
            p.plugin.hash,
            p.file.display()
        );
    }
    println!(
        "{}: ok ({} sources, {} plugins, {} sinks, {} routes)",
        path.display(),
        config.sources.len(),
        config.plugins.len(),
        config.sinks.len(),
        config.routes.len()
    );
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
