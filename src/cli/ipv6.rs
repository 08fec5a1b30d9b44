//! `multiwan ipv6`: what a DHCPv6-PD client's hook tells the running daemon.

use std::process::ExitCode;

use ipnet::Ipv6Net;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Ipv6Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Ipv6Command {
    /// Hand over the prefix the ISP delegated to an uplink (`none` withdraws it); the
    /// translation of `nat6: npt` or the source rule of `nat6: none` follows at once (root).
    Prefix(PrefixArgs),
}

#[derive(Debug, clap::Args)]
pub struct PrefixArgs {
    /// The uplink, as named in the config.
    pub uplink: String,
    /// The delegated prefix, like 2001:db8:1::/56, or `none`.
    pub prefix: String,
    #[command(flatten)]
    pub socket: super::status::SocketArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Ipv6Command::Prefix(a) => prefix(a),
    }
}

fn prefix(args: PrefixArgs) -> anyhow::Result<ExitCode> {
    let prefix = match args.prefix.as_str() {
        "none" => None,
        p => match p.parse::<Ipv6Net>() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!("multiwan: `{p}` is not an IPv6 prefix (like 2001:db8:1::/56) or none");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let path = super::status::socket_path(&args.socket);
    match multiwan::control::set_prefix6(&path, &args.uplink, prefix) {
        Ok(done) => {
            println!("{done}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("multiwan: {}", multiwan::error_chain(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}
