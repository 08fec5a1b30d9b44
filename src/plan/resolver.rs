//! The resolver's side of sets that follow DNS names: a dnsmasq drop-in that adds every
//! address dnsmasq answers for a set's domains (and their subdomains) to the set, before
//! the client sees the answer, so the first connection already matches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{Family, has_ipv6, learned_set};
use crate::config::Config;

/// The `ipset=` lines for dnsmasq, one per domain (a domain in several sets names them
/// all: dnsmasq uses only one line per domain). With IPv6, each set is named twice: its
/// IPv4 set for A answers, its IPv6 set for AAAA ones (dnsmasq puts each address only in
/// sets of its family). Domains and set names were checked by the config, so nothing else
/// can reach dnsmasq's config.
pub fn dnsmasq(config: &Config, source: &str) -> String {
    let families: &[Family] = if has_ipv6(config) {
        &Family::ALL
    } else {
        &[Family::Ipv4]
    };
    let mut sets_of: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for set in &config.sets {
        for domain in &set.domains {
            for f in families {
                sets_of
                    .entry(domain.as_str())
                    .or_default()
                    .insert(learned_set(*f, &set.name));
            }
        }
    }
    let mut out = format!(
        "# Written by `multiwan dnsmasq` from {source}: edit that file, not this one.\n\
         # dnsmasq adds the addresses it answers for these domains (and their subdomains) to\n\
         # multiwan's sets; restart dnsmasq after writing this file.\n"
    );
    if sets_of.is_empty() {
        out.push_str("# (no set in the config has `domains`)\n");
    }
    for (domain, sets) in sets_of {
        let sets: Vec<String> = sets.into_iter().collect();
        let _ = writeln!(out, "ipset=/{domain}/{}", sets.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_domain_naming_every_set_of_it() {
        let config = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan0, gateway: 192.0.2.1}\n  - {name: b, interface: wan1, gateway: 198.51.100.1}\n\
             sets:\n  tv: {domains: [nflxvideo.net, netflix.com, netflix.com], members: [203.0.113.0/25]}\n\
             \x20 bank: {domains: [netflix.com], timeout: 10m}\n  plain: [192.0.2.0/24]\n",
            "m.yaml",
        )
        .unwrap();
        let text = dnsmasq(&config, "/etc/multiwan/config.yaml");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "ipset=/netflix.com/multiwan_bank.dns,multiwan_tv.dns",
                "ipset=/nflxvideo.net/multiwan_tv.dns",
            ]
        );
        assert!(text.starts_with("# Written by `multiwan dnsmasq` from /etc/multiwan/config.yaml"));
    }
}
