//! The address family of rules, sets and routes, and each family's view of the config.
//!
//! IPv4 and IPv6 are planned by the same builders: each gets a view of the config holding
//! only what concerns it (the uplinks that carry it, with that family's gateway; each
//! policy's networks of that family; each set's members of that family). So IPv6 adds data
//! (its own tables, sets and rules), not code paths.

use std::borrow::Cow;

use ipnet::IpNet;

use crate::config::{Config, Match};
pub use crate::family::Family;

/// Whether the config carries IPv6 at all (an uplink with `gateway6`).
pub fn has_ipv6(config: &Config) -> bool {
    config.uplinks.iter().any(|u| u.ipv6.is_some())
}

/// The config as `family`'s planning sees it. IPv4 borrows the config when it names no
/// IPv6 network; IPv6 keeps only the uplinks with an IPv6 side (their gateway becomes the
/// IPv6 one) and no port forwards or HA (IPv4 only).
pub fn view(config: &Config, family: Family) -> Cow<'_, Config> {
    let mixed = config
        .policies
        .iter()
        .flat_map(|p| p.matcher.sources.iter().chain(&p.matcher.destinations))
        .chain(config.sets.iter().flat_map(|s| &s.networks))
        .any(|n| !family.holds(n));
    if family == Family::Ipv4 && !mixed {
        return Cow::Borrowed(config);
    }
    let mut v = config.clone();
    for p in &mut v.policies {
        p.matcher = match_in(config, family, &p.matcher);
    }
    for s in &mut v.sets {
        s.networks.retain(|n| family.holds(n));
    }
    if family == Family::Ipv6 {
        v.uplinks.retain(|u| u.ipv6.is_some());
        for u in &mut v.uplinks {
            u.gateway = u.ipv6.as_ref().expect("kept").gateway;
        }
        v.port_forwards.clear();
        v.ha = None;
    }
    Cow::Owned(v)
}

/// A policy's match as `family` sees it: its networks of that family. A policy that names
/// networks (or a set) only of the other family cannot match this family's traffic: it
/// becomes `never`.
fn match_in(config: &Config, family: Family, m: &Match) -> Match {
    let keep = |nets: &[IpNet]| -> (Vec<IpNet>, bool) {
        let kept: Vec<IpNet> = nets.iter().copied().filter(|n| family.holds(n)).collect();
        let lost_all = !nets.is_empty() && kept.is_empty();
        (kept, lost_all)
    };
    let (sources, no_source) = keep(&m.sources);
    let (destinations, no_destination) = keep(&m.destinations);
    let empty_set = m.destination_set.as_ref().is_some_and(|name| {
        config
            .sets
            .iter()
            .find(|s| &s.name == name)
            .is_some_and(|s| s.domains.is_empty() && !s.networks.iter().any(|n| family.holds(n)))
    });
    Match {
        sources,
        destinations,
        never: m.never || no_source || no_destination || empty_set,
        ..m.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 100.64.1.1, gateway6: auto}
  - {name: b, interface: wan2, gateway: 100.64.2.1}
policies:
  - {name: both, match: {source: [10.0.0.5, 2001:db8:10::5]}, uplink: a}
  - {name: v4, match: {destination: 192.0.2.0/24}, uplink: b}
  - {name: any, match: {protocol: udp, destination_ports: 53}, uplink: a}
  - {name: s4, match: {destination_set: s4}, uplink: a}
sets:
  s4: [203.0.113.0/24]
",
            "t.yaml",
        )
        .unwrap()
    }

    #[test]
    fn each_family_sees_its_own_networks_and_uplinks() {
        let c = config();
        let v4 = view(&c, Family::Ipv4);
        assert!(matches!(v4, Cow::Owned(_)), "mixed networks need a view");
        assert_eq!(v4.policies[0].matcher.sources.len(), 1);
        assert_eq!(v4.uplinks.len(), 2);
        let v6 = view(&c, Family::Ipv6);
        assert_eq!(v6.uplinks.len(), 1);
        assert_eq!(v6.uplinks[0].gateway, crate::config::Gateway::Auto);
        let never: Vec<bool> = v6.policies.iter().map(|p| p.matcher.never).collect();
        assert_eq!(never, [false, true, false, true]);
        assert_eq!(
            v6.policies[0].matcher.sources,
            ["2001:db8:10::5/128".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn a_plain_ipv4_config_is_borrowed() {
        let c = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1}\n",
            "t.yaml",
        )
        .unwrap();
        assert!(matches!(view(&c, Family::Ipv4), Cow::Borrowed(_)));
        assert!(!has_ipv6(&c));
    }
}
