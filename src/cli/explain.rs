//! `multiwan explain`: which uplink a new connection takes, and why.

use std::net::IpAddr;
use std::process::ExitCode;

use multiwan::config::Protocol;
use multiwan::explain::{Packet, explain};
use multiwan::plan::Plan;

use super::{ConfigArg, observed_with_down};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Source address (a LAN host), IPv4 or IPv6.
    #[arg(long, required_unless_present = "from_wan")]
    pub src: Option<IpAddr>,
    /// Destination address, of the source's family.
    #[arg(long, required_unless_present = "from_wan")]
    pub dst: Option<IpAddr>,
    /// Explain a connection arriving from the internet on this uplink (port forwards);
    /// needs --dport.
    #[arg(long, value_name = "UPLINK", requires = "dport", conflicts_with_all = ["src", "dst"])]
    pub from_wan: Option<String>,
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: Proto,
    /// Destination port.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Source port.
    #[arg(long)]
    pub sport: Option<u16>,
    /// The LAN interface the connection enters by (default: the first in the config).
    #[arg(long, value_name = "INTERFACE")]
    pub from_lan: Option<String>,
    /// Assume this uplink is down (repeatable); `UPLINK:ipv4` or `UPLINK:ipv6` for one
    /// family only.
    #[arg(long, value_name = "UPLINK")]
    pub down: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let observed = observed_with_down(&config, &args.down)?;
    let plan = Plan::build(&config, &observed);
    let protocol = match args.proto {
        Proto::Tcp => Protocol::Tcp,
        Proto::Udp => Protocol::Udp,
        Proto::Icmp => Protocol::Icmp,
    };
    if let Some(uplink) = &args.from_wan {
        super::known_uplink(&config, "--from-wan", uplink)?;
        let dport = args.dport.expect("clap requires --dport with --from-wan");
        println!(
            "{}",
            multiwan::explain::explain_forward(&config, &plan, uplink, protocol, dport).text()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let in_interface = args
        .from_lan
        .unwrap_or_else(|| config.lan_interfaces[0].clone());
    let (src, dst) = (
        args.src.expect("clap requires --src"),
        args.dst.expect("clap requires --dst"),
    );
    if src.is_ipv4() != dst.is_ipv4() {
        eprintln!("multiwan: --src {src} and --dst {dst} are of different families");
        return Ok(ExitCode::from(2));
    }
    let packet = Packet {
        src,
        dst,
        protocol,
        sport: args.sport,
        dport: args.dport,
        in_interface,
    };
    println!("{}", explain(&config, &plan, &packet).text());
    Ok(ExitCode::SUCCESS)
}
