//! Command-line interface: one module per subcommand.

mod apply;
mod assets;
mod check;
mod cleanup;
mod dnsmasq;
mod explain;
mod ha;
mod ipv6;
mod journal;
mod manpage;
mod plan;
mod reload;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use multiwan::config::{self, Config, ConfigError};

/// multiwan: balance and fail over new connections across several Internet uplinks.
#[derive(Debug, Parser)]
#[command(name = "multiwan", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config file and print a one-line summary (no root needed).
    Check(ConfigArg),
    /// Print the rules, routes and sets multiwan would install (no root needed).
    Plan(plan::Args),
    /// Tell which uplink a new connection would take, and why (no root needed).
    Explain(explain::Args),
    /// Install the plan in the kernel with every uplink assumed up (root).
    Apply(ConfigArg),
    /// Remove every rule, route, chain and set multiwan installed, and nothing else (root).
    Cleanup(cleanup::Args),
    /// Run the daemon: install, probe every uplink, fail over and back (root).
    Run(run::Args),
    /// Show what the running daemon is doing: states, weights, RTT, loss, reasons.
    Status(status::Args),
    /// Reload the running daemon's config and wait for its verdict (`systemctl reload`):
    /// fails, saying why, when the file is invalid or the kernel refuses it (root).
    Reload(reload::Args),
    /// Write man pages and shell completions into a folder (for packaging).
    #[command(hide = true)]
    Assets(assets::Args),
    /// Print or write the dnsmasq drop-in that fills the sets with `domains` (no root
    /// needed to print).
    Dnsmasq(dnsmasq::Args),
    /// IPv6 at run time: hand over a delegated prefix (from a DHCPv6-PD client's hook).
    Ipv6(ipv6::Args),
    /// Two routers as a VRRP pair: render keepalived/conntrackd configs, role changes, checks.
    Ha(ha::Args),
}

/// `-c/--config`, shared by every subcommand that reads the config.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(short, long, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl ConfigArg {
    /// Loads the config; on failure every diagnostic is printed and the command ends with
    /// exit code 1.
    pub fn load(&self) -> anyhow::Result<Config> {
        multiwan::files::load_config(&self.config).map_err(|e| {
            print_config_error(&e);
            Reported(ExitCode::FAILURE).into()
        })
    }
}

/// Every diagnostic of an invalid file, or why the file could not be read.
pub fn print_config_error(e: &ConfigError) {
    match e {
        ConfigError::Invalid { .. } => eprintln!("{e}"),
        _ => eprintln!("multiwan: {}", multiwan::error_chain(e)),
    }
}

/// A failure already explained to the user: the command only has to end with this code.
#[derive(Debug)]
pub struct Reported(pub ExitCode);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already reported")
    }
}

impl std::error::Error for Reported {}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Run(_)) {
        quiet_on_closed_pipe();
    }
    let result = run_command(cli);
    match result {
        Err(e) if e.is::<Reported>() => Ok(e.downcast_ref::<Reported>().expect("checked").0),
        other => other,
    }
}

fn run_command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(a) => check::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Cleanup(a) => cleanup::run(a),
        Command::Run(a) => run::run(a),
        Command::Status(a) => status::run(a),
        Command::Reload(a) => reload::run(a),
        Command::Assets(a) => assets::run(a),
        Command::Dnsmasq(a) => dnsmasq::run(a),
        Command::Ha(a) => ha::run(a),
        Command::Ipv6(a) => ipv6::run(a),
    }
}

/// An uplink named on the command line must exist (exit code 2 otherwise, as for any
/// wrong argument).
pub fn known_uplink(config: &Config, flag: &str, name: &str) -> anyhow::Result<()> {
    if config.uplink(name).is_none() {
        let known: Vec<&str> = config.uplinks.iter().map(|u| u.name.as_str()).collect();
        eprintln!(
            "multiwan: {flag} {name}: no such uplink (uplinks: {})",
            known.join(", ")
        );
        return Err(Reported(ExitCode::from(2)).into());
    }
    Ok(())
}

/// `--down NAME` (both families) or `--down NAME:ipv4|ipv6`: uplinks to assume down;
/// each must exist.
pub fn observed_with_down(
    config: &Config,
    down: &[String],
) -> anyhow::Result<multiwan::plan::Observed> {
    use multiwan::plan::Family;
    let mut observed = multiwan::plan::Observed::default();
    for arg in down {
        let (name, families) = match arg.rsplit_once(':') {
            Some((name, "ipv4")) => (name, vec![Family::Ipv4]),
            Some((name, "ipv6")) => (name, vec![Family::Ipv6]),
            _ => (arg.as_str(), Family::ALL.to_vec()),
        };
        known_uplink(config, "--down", name)?;
        for f in families {
            let seen = match f {
                Family::Ipv4 => &mut observed,
                Family::Ipv6 => observed.v6_mut(),
            };
            seen.health
                .insert(name.to_string(), multiwan::health::Health::Down);
        }
    }
    Ok(observed)
}

/// `multiwan plan | head` should end quietly when `head` has read enough, as other tools
/// do: the default action of SIGPIPE (Rust ignores it, and `println!` then panics). Not for
/// the daemon, whose writes to a client that went away must only fail.
fn quiet_on_closed_pipe() {
    // SAFETY: restores a signal's default disposition before any thread writes.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A single-threaded runtime for the one-shot commands that talk netlink.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
