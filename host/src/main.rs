//! The `sluice` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::reload::config as watch;
use sluice::runtime;
use sluice::wasm::WasmEngine;

/// A stream router whose per-record logic runs as WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the routes in a config until SIGINT or SIGTERM. SIGHUP, or a
    /// change to the file, reloads the config.
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
    /// Compile a component ahead of time for this build of sluice, so it
    /// loads (and hot-reloads) without compiling. Load the output with
    /// `allow_precompiled = true`.
    Compile {
        /// The component (`.wasm`).
        input: PathBuf,
        /// Where to write it; default: the input with extension `.cwasm`.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// For a plugin with a `fuel` budget (it runs on the fuel-counting
        /// engine, whose code differs).
        #[arg(long)]
        fuel: bool,
    },
    /// Write a new plugin project into directory NAME: sources, a build
    /// file, a README, a sample config (for `sluice dev`) and a fixture (for
    /// `sluice test`).
    New {
        /// The plugin's name (and directory).
        name: PathBuf,
        /// What it does.
        #[arg(long, value_enum, default_value = "filter")]
        kind: sluice::scaffold::Kind,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: sluice::scaffold::Lang,
    },
    /// Golden tests of a plugin, with no broker: run each fixture's input
    /// records through the plugin's stage and compare what comes out with
    /// the fixture's expected records and errors.
    Test {
        /// A component (`.wasm`, `.cwasm`), or a Rust plugin crate directory
        /// (built first; its fixtures default to `fixtures/*.json`).
        target: PathBuf,
        /// Fixture files.
        fixtures: Vec<PathBuf>,
        /// Write what came out into each fixture instead of comparing.
        #[arg(long)]
        update: bool,
    },
    /// Validate a config and load every plugin in it, then exit.
    Check {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Print a sample of the records a running route sends out, one JSON
    /// object a line (the console's tap; read-only, never slows the route).
    Tap {
        /// `ROUTE` or `ROUTE:PORT` (`default` is the default port).
        target: String,
        /// The running Sluice (its `server.listen`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Only records with this key (a client id).
        #[arg(long)]
        key: Option<String>,
        /// Records a second at most (1 to 1000).
        #[arg(long, default_value_t = sluice::tap::DEFAULT_RATE)]
        rate: u32,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): text, coloured
/// only on a terminal (and without `NO_COLOR`), or one JSON object per line
/// with `SLUICE_LOG_FORMAT=json`.
fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("SLUICE_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "json" => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        _ => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).init();
            if !matches!(format.as_str(), "" | "text") {
                tracing::warn!(value = %format, "SLUICE_LOG_FORMAT is `text` or `json`; using text.");
            }
        }
    }
}

fn main() -> ExitCode {
    init_logging();
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
            Command::New { name, kind, lang } => scaffold(&name, kind, lang),
            Command::Test {
                target,
                fixtures,
                update,
            } => golden(&target, fixtures, update).await,
            Command::Compile {
                input,
                output,
                fuel,
            } => compile(&input, output, fuel),
            Command::Tap {
                target,
                server,
                key,
                rate,
                limit,
            } => tap(&target, &server, key, rate, limit).await,
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
    let watch_file = config.server.watch_config;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    // Watch before starting: a change (or SIGHUP) while starting is then
    // applied right after, not missed (or, for SIGHUP, fatal).
    let mut triggers = watch::config_triggers(&path, watch_file)?;
    let mut running = if dev {
        runtime::start_dev(config, listener).await
    } else {
        runtime::start_with_listener(config, listener).await
    }
    .with_context(|| format!("cannot start {}", path.display()))?;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => {
                r?;
                break;
            }
            Some(trigger) = triggers.recv() => {
                tracing::info!(?trigger, file = %path.display(), "Reloading the config.");
                match Config::load(&path) {
                    // Errors are logged and counted by `reload`; the old
                    // config keeps running.
                    Ok(config) => { let _ = running.reload(config).await; }
                    Err(e) => {
                        running.metrics.counter("sluice_config_reload_failures_total", &[]).add(1);
                        tracing::error!(error = %e, "Config reload failed; the running config is unchanged.");
                    }
                }
            }
        }
    }
    running.shutdown().await
}

/// `sluice tap`: the admin token, when the server wants one, is read from
/// `SLUICE_ADMIN_TOKEN` (never from the command line, where `ps` shows it).
async fn tap(
    target: &str,
    server: &str,
    key: Option<String>,
    rate: u32,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let (route, port) = sluice::tap_client::parse_target(target)?;
    if !(1..=sluice::tap::MAX_RATE).contains(&rate) {
        anyhow::bail!(
            "--rate: from 1 to {} records a second",
            sluice::tap::MAX_RATE
        );
    }
    let filter = sluice::tap::TapFilter {
        route,
        port,
        key: key.map(String::into_bytes),
        rate,
    };
    let token = std::env::var("SLUICE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    sluice::tap_client::follow(
        server,
        &filter,
        token.as_deref(),
        limit,
        std::io::stdout().lock(),
    )
    .await
}

fn compile(input: &std::path::Path, output: Option<PathBuf>, fuel: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let engine = WasmEngine::for_fuel(fuel.then_some(1))?;
    let compiled = engine
        .precompile(&bytes)
        .with_context(|| format!("cannot compile {}", input.display()))?;
    let output = output.unwrap_or_else(|| input.with_extension("cwasm"));
    std::fs::write(&output, &compiled)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "{}: {} bytes (load with allow_precompiled = true{})",
        output.display(),
        compiled.len(),
        if fuel { " and a fuel budget" } else { "" }
    );
    Ok(())
}

fn scaffold(
    dir: &std::path::Path,
    kind: sluice::scaffold::Kind,
    lang: sluice::scaffold::Lang,
) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = sluice::scaffold::create(dir, &name, kind, lang)?;
    println!("wrote {} files into {}", files.len(), dir.display());
    let native = match lang {
        sluice::scaffold::Lang::Rust => "cargo test",
        sluice::scaffold::Lang::Python => "python -m pytest",
        sluice::scaffold::Lang::Js => "npm install && npm test",
    };
    println!(
        "next: cd {} && {native} && sluice test . && sluice dev sluice.toml",
        dir.display()
    );
    Ok(())
}

async fn golden(
    target: &std::path::Path,
    fixtures: Vec<PathBuf>,
    update: bool,
) -> anyhow::Result<()> {
    use sluice::golden;
    let (wasm, fixtures) = golden::resolve(target, fixtures).await?;
    let mut failed = 0;
    for fixture in &fixtures {
        let outcome = golden::run(&wasm, fixture).await?;
        match (&outcome.diff, update) {
            (Some(_), true) => {
                golden::update(&outcome)?;
                println!("updated {}", fixture.display());
            }
            (Some(diff), false) => {
                failed += 1;
                println!("FAIL {}\n{diff}", fixture.display());
            }
            (None, _) => println!(
                "ok   {} ({} records, {} errors)",
                fixture.display(),
                outcome.expected.len(),
                outcome.errors.len()
            ),
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} fixtures failed", fixtures.len());
    }
    Ok(())
}

async fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let problems = runtime::client_problems(&config);
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid config {}:\n  - {}",
            path.display(),
            problems.join("\n  - ")
        );
    }
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

async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
