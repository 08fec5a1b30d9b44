//! `multiwan cleanup`: remove exactly what multiwan installed. It needs no config: the
//! daemon records the ranges it owns when it installs (see `multiwan::owned`), and the
//! defaults are used when there is neither. It refuses while a daemon is running, which
//! would re-install within a second what was removed.

use std::path::PathBuf;
use std::process::ExitCode;

use multiwan::config;
use multiwan::kernel::install::Installer;
use multiwan::owned::{self, Ranges};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file. Without one: /etc/multiwan/multiwan.yaml if it is valid, else
    /// what the daemon recorded, else the defaults.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The record of what was installed (default: beside the control socket,
    /// /run/multiwan/installed.json).
    #[arg(long)]
    pub record: Option<PathBuf>,
}

/// What to remove, where its daemon would listen, and where that was learned.
struct Owned {
    ranges: Ranges,
    socket: PathBuf,
    from: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(owned) = what_is_owned(&args) else {
        return Ok(ExitCode::FAILURE);
    };
    if let Ok(status) = multiwan::control::query(&owned.socket) {
        eprintln!(
            "multiwan: a daemon is running (pid {}) and would re-install within a second what \
             cleanup removes: stop it first (systemctl stop multiwan), then run cleanup",
            status.pid
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("removing what multiwan owns ({})", owned.from);
    let rt = super::runtime()?;
    let removed = rt.block_on(async {
        let installer = Installer::new()?;
        anyhow::Ok(installer.cleanup(owned.ranges).await)
    })?;
    let chains = removed.netfilter.removed();
    println!(
        "removed: {chains} chain(s), {} ip rule(s), {} route(s), {} set(s)",
        removed.routing.rules_deleted.len(),
        removed.routing.routes_deleted.len(),
        removed.sets.len()
    );
    for e in &removed.errors {
        eprintln!("error: {}", multiwan::error_chain(e));
    }
    if removed.errors.is_empty() {
        let _ = std::fs::remove_file(owned.socket.with_file_name(owned::RECORD));
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// A config named on the command line must be valid; otherwise the default config, the
/// record and the defaults are tried in that order.
fn what_is_owned(args: &Args) -> Option<Owned> {
    let from_config = |c: config::Config, path: &std::path::Path| Owned {
        ranges: Ranges::of(&c),
        socket: c.control.socket.clone(),
        from: format!("as {} says", path.display()),
    };
    if let Some(path) = &args.config {
        return match multiwan::files::load_config(path) {
            Ok(c) => Some(from_config(c, path)),
            Err(e) => {
                super::print_config_error(&e);
                None
            }
        };
    }
    let default = PathBuf::from(config::DEFAULT_PATH);
    if args.record.is_none()
        && let Ok(c) = multiwan::files::load_config(&default)
    {
        return Some(from_config(c, &default));
    }
    let record = args
        .record
        .clone()
        .unwrap_or_else(|| owned::record_beside(std::path::Path::new(config::DEFAULT_SOCKET)));
    match owned::read(&record) {
        Ok(r) => Some(Owned {
            ranges: r.ranges,
            socket: r.socket,
            from: format!("as recorded in {}", record.display()),
        }),
        Err(e) => {
            if args.record.is_some() {
                eprintln!("multiwan: {e}");
                return None;
            }
            Some(Owned {
                ranges: Ranges::defaults(),
                socket: PathBuf::from(config::DEFAULT_SOCKET),
                from: "no config, no record: the default tables and rule priorities".into(),
            })
        }
    }
}
