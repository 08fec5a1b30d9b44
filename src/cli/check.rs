//! `multiwan check`: validate a config file.

use std::process::ExitCode;

use multiwan::kernel::netfilter;
use multiwan::plan::Family;

use super::ConfigArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    println!("{}: OK: {}", args.config.config.display(), config.summary());
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let drops = || {
        let rt = super::runtime().ok()?;
        rt.block_on(netfilter::forward_policy_drops(Family::Ipv4))
    };
    if !config.port_forwards.is_empty() && drops() == Some(true) {
        println!(
            "note: the FORWARD policy is DROP and multiwan does not open the firewall: accept forwarded \
             connections, e.g. iptables -A FORWARD -m conntrack --ctstate DNAT -j ACCEPT"
        );
    }
    Ok(ExitCode::SUCCESS)
}
