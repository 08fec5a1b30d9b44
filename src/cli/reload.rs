//! `multiwan reload`: what `systemctl reload multiwan` runs. It checks the daemon's config
//! file first (an invalid one is reported with its positions and never sent), then signals
//! the daemon and waits for its verdict, so a reload the kernel refuses fails too.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use multiwan::control;

use super::status::{SocketArgs, socket_path};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// How long to wait for the daemon's verdict.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.socket.config
        && let Err(e) = multiwan::files::load_config(file)
    {
        return Ok(not_sent(&e));
    }
    let path = socket_path(&args.socket);
    let before = match control::query(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "multiwan: {}: is the daemon running?",
                multiwan::error_chain(&e)
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let file = std::path::PathBuf::from(&before.config);
    if let Err(e) = multiwan::files::load_config(&file) {
        return Ok(not_sent(&e));
    }
    let at = before.last_reload.as_ref().map_or(0.0, |r| r.at_unix);
    let pid = i32::try_from(before.pid).unwrap_or(0);
    if pid <= 1 || unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        eprintln!(
            "multiwan: cannot signal the daemon (pid {}): {}",
            before.pid,
            std::io::Error::last_os_error()
        );
        return Ok(ExitCode::FAILURE);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(now) = control::query(&path) else {
            continue;
        };
        match now.last_reload {
            Some(r) if r.at_unix > at && r.ok => {
                println!("reloaded {}", before.config);
                return Ok(ExitCode::SUCCESS);
            }
            Some(r) if r.at_unix > at => {
                eprintln!(
                    "multiwan: reload refused, the previous config runs on: {}",
                    r.error.unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
    eprintln!(
        "multiwan: no verdict from the daemon within {} s",
        args.timeout
    );
    Ok(ExitCode::FAILURE)
}

fn not_sent(e: &multiwan::config::ConfigError) -> ExitCode {
    super::print_config_error(e);
    eprintln!("multiwan: reload not sent: the daemon runs on with its previous config");
    ExitCode::FAILURE
}
