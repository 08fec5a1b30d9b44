//! The plan's ipsets (connected networks, destination sets, long policy lists, hairpin
//! addresses) and their one text form: `ipset restore` input, for `plan` and for the
//! kernel adapter alike.

use std::fmt::Write;

use super::mangle::policy_set;
use super::pins::{Layout, PinRun};
use super::*;
use crate::config::SET_THRESHOLD;

/// A `hash:net` ipset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpSet {
    pub name: String,
    pub family: Family,
    pub networks: Resolved<Vec<Ipv4Net>>,
}

impl IpSet {
    fn create_line(&self, name: &str) -> String {
        format!(
            "create {name} hash:net family {} -exist",
            self.family.ipset()
        )
    }
}

/// Suffix of the temporary set an update fills; `.` is not allowed in config set names, so
/// it cannot clash.
pub const TEMP_SUFFIX: &str = ".new";

/// The sets as `ipset restore` input (placeholders become comments).
pub fn ipset_restore(sets: &[IpSet]) -> String {
    let mut out = String::new();
    for set in sets {
        let _ = writeln!(out, "{}", set.create_line(&set.name));
        match &set.networks {
            Resolved::Known(nets) => {
                for n in nets {
                    let _ = writeln!(out, "add {} {n} -exist", set.name);
                }
            }
            Resolved::Unknown(what) => {
                let _ = writeln!(out, "# {}: <{what}>", set.name);
            }
        }
    }
    out
}

/// `ipset restore` input that creates each set and swaps in its new content: a temporary
/// set is filled and swapped, so the live set is never half-filled. A set whose content is
/// not known is only created.
pub fn swap_script(sets: &[&IpSet]) -> String {
    let mut out = String::new();
    for set in sets {
        let _ = writeln!(out, "{}", set.create_line(&set.name));
        let Resolved::Known(nets) = &set.networks else {
            continue;
        };
        let temp = format!("{}{TEMP_SUFFIX}", set.name);
        let _ = writeln!(out, "{}", set.create_line(&temp));
        let _ = writeln!(out, "flush {temp}");
        for n in nets {
            let _ = writeln!(out, "add {temp} {n} -exist");
        }
        let _ = writeln!(out, "swap {temp} {}", set.name);
        let _ = writeln!(out, "destroy {temp}");
    }
    out
}

pub(super) fn sets(
    config: &Config,
    observed: &Observed,
    (layout, runs): &(Vec<Layout>, Vec<PinRun>),
) -> Vec<IpSet> {
    let mut out = vec![IpSet {
        family: Family::Ipv4,
        name: CONNECTED_SET.into(),
        networks: match &observed.connected {
            Some(nets) => Resolved::Known(nets.clone()),
            None => Resolved::Unknown("connected networks, read from the kernel".into()),
        },
    }];
    for s in &config.sets {
        out.push(IpSet {
            family: Family::Ipv4,
            name: format!("{SET_PREFIX}{}", s.name),
            networks: Resolved::Known(s.networks.clone()),
        });
    }
    for group in runs.iter().flat_map(|r| &r.groups) {
        out.push(IpSet {
            family: Family::Ipv4,
            name: group.set.clone(),
            networks: Resolved::Known(group.networks.clone()),
        });
    }
    // A long list of a policy with rules of its own is one set of its own.
    let own = layout.iter().filter_map(|l| match l {
        Layout::Rules(i) => Some(*i),
        Layout::Run(_) => None,
    });
    for i in own {
        let p = &config.policies[i];
        for (dir, nets) in [
            ("src", &p.matcher.sources),
            ("dst", &p.matcher.destinations),
        ] {
            if nets.len() > SET_THRESHOLD {
                out.push(IpSet {
                    family: Family::Ipv4,
                    name: policy_set(i, dir),
                    networks: Resolved::Known(nets.clone()),
                });
            }
        }
    }
    if config.port_forwards.iter().any(|f| f.hairpin) {
        // Online (connected is known) the set holds the addresses found so far, and an HA
        // pair's shared addresses (the ones LAN clients are told to use).
        let shared = config
            .ha
            .iter()
            .flat_map(|ha| ha.uplink_addresses.values())
            .map(|a| ipnet::Ipv4Net::from(a.addr()));
        let addresses: Option<Vec<ipnet::Ipv4Net>> = observed.connected.as_ref().map(|_| {
            config
                .uplinks
                .iter()
                .filter_map(|u| {
                    observed
                        .addresses
                        .get(&u.name)
                        .map(|a| ipnet::Ipv4Net::from(*a))
                })
                .chain(shared)
                .collect()
        });
        out.push(IpSet {
            family: Family::Ipv4,
            name: WAN_ADDRESSES_SET.into(),
            networks: match addresses {
                Some(a) => Resolved::Known(a),
                None => Resolved::Unknown("the uplinks' addresses, read from the kernel".into()),
            },
        });
        out.push(IpSet {
            family: Family::Ipv4,
            name: LAN_NETWORKS_SET.into(),
            networks: match &observed.lan_networks {
                Some(n) => Resolved::Known(n.clone()),
                None => {
                    Resolved::Unknown("the LAN interfaces' networks, read from the kernel".into())
                }
            },
        });
    }
    out
}
