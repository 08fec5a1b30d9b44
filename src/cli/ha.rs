//! `multiwan ha`: a node of a VRRP pair. `render` writes keepalived's and conntrackd's
//! configs, `notify` is what keepalived runs on a role change, `check-peer` compares the
//! two nodes' configs.

use std::path::PathBuf;
use std::process::ExitCode;

use multiwan::config::Config;
use multiwan::daemon::ha_notify;
use multiwan::ha::{self, Role, render};

use super::{ConfigArg, Reported};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HaCommand {
    /// Write this node's keepalived.conf and conntrackd.conf from the multiwan config (root,
    /// on the node: it reads the sync interface's address).
    Render(RenderArgs),
    /// Run by keepalived on a role change: drive conntrackd, then tell the agent (root).
    Notify(NotifyArgs),
    /// Compare this node's config with the peer's: uplink ids, marks, tables, rules and the
    /// shared addresses must be identical (no root needed).
    CheckPeer(CheckPeerArgs),
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where to write (default: `ha.config_dir`, /etc/multiwan/ha).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The multiwan binary keepalived runs (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// This node's address on the sync link (default: read from `ha.sync_interface`).
    #[arg(long)]
    pub sync_address: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, clap::Args)]
pub struct NotifyArgs {
    /// The role keepalived entered: master, backup or fault.
    pub role: Role,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, clap::Args)]
pub struct CheckPeerArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The other node's multiwan config file (a copy of it).
    pub peer: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        HaCommand::Render(a) => render_files(a),
        HaCommand::Notify(a) => notify(a),
        HaCommand::CheckPeer(a) => check_peer(a),
    }
}

/// The config, which must have an `ha` section.
fn load_ha(arg: &ConfigArg) -> anyhow::Result<Config> {
    let config = arg.load()?;
    if let Err(e) = ha::ha_of(&config) {
        eprintln!("multiwan: {}: {e}", arg.config.display());
        return Err(Reported(ExitCode::FAILURE).into());
    }
    Ok(config)
}

fn render_files(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let config = load_ha(&args.config)?;
    let ha = config.ha.as_ref().expect("checked");
    let sync_address = match args.sync_address {
        Some(a) => a,
        None => sync_address_of(&ha.sync_interface)?,
    };
    let ctx = render::Context {
        binary: match args.binary {
            Some(b) => b,
            None => std::env::current_exe()?,
        },
        config_path: std::path::absolute(&args.config.config)?,
        sync_address,
    };
    let keepalived = render::keepalived(&config, &ctx)?;
    let conntrackd = render::conntrackd(&config, &ctx)?;
    let dir = args.out.unwrap_or_else(|| ha.config_dir.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in [
        ("keepalived.conf", keepalived),
        ("conntrackd.conf", conntrackd),
    ] {
        // keepalived runs what this file names as root: only a directory no one else can
        // write is good enough, and the file is never written through a planted symlink.
        let path = multiwan::files::write_atomically(&dir, name, &text)
            .map_err(|e| anyhow::anyhow!("cannot write {name} in {}: {e}", dir.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn sync_address_of(interface: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let view = super::runtime()?
        .block_on(async { multiwan::kernel::routing::Routing::connect()?.view().await })?;
    let address = view
        .links
        .get(interface)
        .and_then(|index| view.v4.addresses.get(index));
    match address {
        Some(std::net::IpAddr::V4(a)) => Ok(*a),
        _ => {
            eprintln!(
                "multiwan: ha.sync_interface {interface} has no IPv4 address here: configure the sync link first, or give --sync-address"
            );
            Err(Reported(ExitCode::FAILURE).into())
        }
    }
}

/// keepalived's notify: conntrackd's steps, then the agent (see `daemon::ha_notify`). Any
/// failure is the exit code.
fn notify(args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let config = load_ha(&args.config)?;
    let role = args.role;
    let done = super::runtime()?
        .block_on(ha_notify::notify(&config, role))
        .expect("load_ha checked the ha section");
    for (flag, what, ok) in &done.steps {
        if *ok {
            println!("{role}: conntrackd {flag}: {what}");
        }
    }
    for f in &done.failures {
        eprintln!("multiwan ha notify {role}: {f}");
    }
    match &done.told {
        Ok(()) => println!("{role}: the agent knows"),
        Err(e) => eprintln!(
            "multiwan ha notify {role}: could not tell the agent: {}",
            multiwan::error_chain(e)
        ),
    }
    Ok(if done.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check_peer(args: CheckPeerArgs) -> anyhow::Result<ExitCode> {
    let mine = load_ha(&args.config)?;
    let theirs = multiwan::files::load_config(&args.peer).map_err(|e| {
        super::print_config_error(&e);
        Reported(ExitCode::FAILURE)
    })?;
    let differences = ha::peer::differences(&mine, &theirs);
    if differences.is_empty() {
        println!(
            "{} and {} agree: same uplink ids, marks, tables, rules and shared addresses",
            args.config.config.display(),
            args.peer.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for d in &differences {
        println!("{d}");
    }
    eprintln!(
        "{} difference(s): connections synced from one node would be routed wrongly by the other",
        differences.len()
    );
    Ok(ExitCode::FAILURE)
}
