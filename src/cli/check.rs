//! `multiwan check`: validate a config file.

use std::process::ExitCode;

use multiwan::kernel::netfilter;
use multiwan::plan::Family;

use super::ConfigArg;

pub fn run(args: ConfigArg) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    println!("{}: OK: {}", args.config.display(), config.summary());
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    for hook in &config.hooks {
        if let Err(e) = multiwan::files::trusted(hook) {
            println!(
                "warning: hooks: {} will not be run: {} (only root may be able to change what root runs)",
                hook.display(),
                multiwan::error_chain(&e)
            );
        }
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
