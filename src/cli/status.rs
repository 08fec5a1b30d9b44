//! `multiwan status`: ask the running daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use multiwan::config;
use multiwan::control;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print the documented JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the running daemon listens.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The config file, to find the control socket in it.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The control socket (default: from the config, else /run/multiwan/multiwan.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// The control socket: `--socket`, else the config's, else the default.
pub fn socket_path(args: &SocketArgs) -> PathBuf {
    if let Some(s) = &args.socket {
        return s.clone();
    }
    let file = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    match multiwan::files::load_config(&file) {
        Ok(c) => c.control.socket,
        Err(e) => {
            if args.config.is_some() {
                eprintln!(
                    "warning: {}\nwarning: trying the default control socket",
                    multiwan::error_chain(&e)
                );
            }
            PathBuf::from(config::DEFAULT_SOCKET)
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = socket_path(&args.socket);
    let status = match control::query(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("multiwan: {}", multiwan::error_chain(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        print!("{}", control::render(&status, now));
    }
    Ok(ExitCode::SUCCESS)
}
