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
    use tracing_subscriber::EnvFilter;
    // The netlink crates are chatty below warn.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,netlink_proto=warn,rtnetlink=warn,surge_ping=warn")
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text if super::journal::stderr_is_journal() => {
            let inner = tracing_subscriber::fmt::format().without_time();
            builder
                .with_ansi(false)
                .event_format(super::journal::WithPriority(inner))
                .init()
        }
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
