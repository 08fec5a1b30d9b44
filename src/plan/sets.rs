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
    /// Its members, of its family: all of them multiwan's (a learned set has none of ours).
    pub networks: Resolved<Vec<IpNet>>,
    /// For a set a resolver fills (`<set>.dns`): the seconds an address stays. multiwan
    /// creates it with that `timeout` and never adds or removes a member.
    pub learned_timeout: Option<u32>,
}

impl IpSet {
    /// A set whose every member is multiwan's.
    pub fn fixed(family: Family, name: impl Into<String>, networks: Resolved<Vec<IpNet>>) -> Self {
        Self {
            name: name.into(),
            family,
            networks,
            learned_timeout: None,
        }
    }

    /// `create` for this set's type and options (under another name for a swap).
    pub fn create_line(&self, name: &str) -> String {
        create_line(name, self.family, self.hashsize(), self.learned_timeout)
    }

    /// A large set is created with room for its members: filled from the default 1024
    /// buckets, the kernel would grow and rehash it again and again (10 000 pins took
    /// 44 ms to load instead of 18). `ipset create -exist` ignores it for a set that
    /// exists.
    pub fn hashsize(&self) -> Option<usize> {
        match &self.networks {
            Resolved::Known(nets) if nets.len() > 1024 => {
                Some(nets.len().next_power_of_two().min(1 << 16))
            }
            _ => None,
        }
    }
}

/// `create` of a `hash:net` set: the one text form of its options.
pub fn create_line(
    name: &str,
    family: Family,
    hashsize: Option<usize>,
    timeout: Option<u32>,
) -> String {
    let hashsize = hashsize.map_or(String::new(), |h| format!(" hashsize {h}"));
    let timeout = timeout.map_or(String::new(), |t| format!(" timeout {t}"));
    format!(
        "create {name} hash:net family {}{hashsize}{timeout} -exist",
        family.ipset()
    )
}

/// The kernel set of config set `name` in `family`.
pub fn config_set(family: Family, name: &str) -> String {
    format!("{}{name}", family.set_prefix())
}

/// The set a resolver fills for config set `name`: its addresses age out, so they live
/// apart from the config's members, which multiwan keeps exact. `multiwan6_` + 17 + `.dns`
/// fits ipset's 31 characters.
pub fn learned_set(family: Family, name: &str) -> String {
    format!("{}{name}.dns", family.set_prefix())
}

/// The kernel sets a policy's `destination_set: name` matches in a family's view: the
/// config's members (when there are any or nothing else) and the learned addresses (when
/// it has domains).
pub fn kernel_sets_of(config: &Config, family: Family, name: &str) -> Vec<String> {
    let Some(set) = config.sets.iter().find(|s| s.name == name) else {
        return vec![config_set(family, name)];
    };
    let mut out = Vec::new();
    if !set.networks.is_empty() || set.domains.is_empty() {
        out.push(config_set(family, name));
    }
    if !set.domains.is_empty() {
        out.push(learned_set(family, name));
    }
    out
}

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

/// Link-local and multicast: never routed by an uplink, so in the IPv6 connected set.
const IPV6_LOCAL: [&str; 2] = ["fe80::/10", "ff00::/8"];

pub(super) fn sets(
    config: &Config,
    family: Family,
    observed: &Observed,
    (layout, runs): &(Vec<Layout>, Vec<PinRun>),
) -> Vec<IpSet> {
    let connected = match &observed.connected {
        Some(nets) => {
            let mut nets = nets.clone();
            if family == Family::Ipv6 {
                nets.extend(
                    IPV6_LOCAL
                        .iter()
                        .map(|n| n.parse::<IpNet>().expect("valid")),
                );
            }
            Resolved::Known(nets)
        }
        None => Resolved::Unknown("connected networks, read from the kernel".into()),
    };
    let mut out = vec![IpSet::fixed(
        family,
        super::mangle::connected_set(family),
        connected,
    )];
    for s in &config.sets {
        out.push(IpSet::fixed(
            family,
            config_set(family, &s.name),
            Resolved::Known(s.networks.clone()),
        ));
        if let Some(t) = s.timeout.filter(|_| !s.domains.is_empty()) {
            out.push(IpSet {
                learned_timeout: Some(u32::try_from(t.as_secs()).unwrap_or(u32::MAX)),
                ..IpSet::fixed(
                    family,
                    learned_set(family, &s.name),
                    Resolved::Known(Vec::new()),
                )
            });
        }
    }
    for group in runs.iter().flat_map(|r| &r.groups) {
        out.push(IpSet::fixed(
            family,
            group.set.clone(),
            Resolved::Known(group.networks.clone()),
        ));
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
            if nets.len() > SET_THRESHOLD && !p.matcher.never {
                out.push(IpSet::fixed(
                    family,
                    policy_set(family, i, dir),
                    Resolved::Known(nets.clone()),
                ));
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
            .map(|a| IpNet::from(std::net::IpAddr::V4(a.addr())));
        let addresses: Option<Vec<IpNet>> = observed.connected.as_ref().map(|_| {
            config
                .uplinks
                .iter()
                .filter_map(|u| observed.addresses.get(&u.name).map(|a| IpNet::from(*a)))
                .chain(shared)
                .collect()
        });
        out.push(IpSet::fixed(
            family,
            WAN_ADDRESSES_SET,
            match addresses {
                Some(a) => Resolved::Known(a),
                None => Resolved::Unknown("the uplinks' addresses, read from the kernel".into()),
            },
        ));
        out.push(IpSet::fixed(
            family,
            LAN_NETWORKS_SET,
            match &observed.lan_networks {
                Some(n) => Resolved::Known(n.clone()),
                None => {
                    Resolved::Unknown("the LAN interfaces' networks, read from the kernel".into())
                }
            },
        ));
    }
    out
}
