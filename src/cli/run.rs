//! `multiwan run`: the daemon.

use std::process::ExitCode;

use super::ConfigArg;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Log format; filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(multiwan::daemon::agent::run(&args.config.config)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(multiwan::daemon::agent::AgentError::Config(e)) => {
            super::print_config_error(&e);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    // `RUST_LOG=multiwan=debug`-style filters (targets and levels; no regex engine in the
    // binary for span or field filters). The netlink crates are chatty below warn.
    const DEFAULT: &str = "info,netlink_proto=warn,rtnetlink=warn,surge_ping=warn";
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<Targets>().ok())
        .unwrap_or_else(|| DEFAULT.parse().expect("the default filter parses"));
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text if super::journal::stderr_is_journal() => {
            let inner = tracing_subscriber::fmt::format().without_time();
            let layer = layer
                .with_ansi(false)
                .event_format(super::journal::WithPriority(inner));
            registry.with(layer.with_filter(filter)).init()
        }
        LogFormat::Text => registry.with(layer.with_filter(filter)).init(),
        LogFormat::Json => registry.with(layer.json().with_filter(filter)).init(),
    }
}
