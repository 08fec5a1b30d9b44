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
    for w in firewall_warnings(&config) {
        println!("warning: {w}");
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

/// What this host's firewall would drop of what the config routes; nothing when the
/// tables cannot be read (not root). Reads only: `check` changes nothing.
fn firewall_warnings(config: &multiwan::config::Config) -> Vec<String> {
    // Only root can read the tables.
    if unsafe { libc::geteuid() } != 0 {
        return Vec::new();
    }
    let Ok(rt) = super::runtime() else {
        return Vec::new();
    };
    rt.block_on(async {
        let mut out = Vec::new();
        match netfilter::backend::select(config.backend).await {
            Ok(selected) => out.extend(selected.decision.warnings),
            Err(e) => {
                out.push(multiwan::error_chain(&e));
                return out;
            }
        }
        let plan = multiwan::plan::Plan::build(config, &Default::default());
        for fp in plan.families() {
            if let Ok(save) = netfilter::save(fp.family).await {
                out.extend(netfilter::firewall_warnings(
                    fp,
                    &config.lan_interfaces,
                    &save,
                ));
            }
        }
        out
    })
}
