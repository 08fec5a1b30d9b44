//! The nat table (masquerade or an HA pair's SNAT per uplink, port forwards), the filter
//! table (refusing connections when every uplink is down), and the jumps from the built-in
//! chains into ours.

use super::rules::{Chain, Jump, Match, Rule, TablePlan, Target};
use super::*;
use crate::config::Protocol;

pub(super) fn nat(
    config: &Config,
    family: Family,
    observed: &Observed,
    forwards: &[ForwardPlan],
) -> TablePlan {
    let mut rules: Vec<Rule> = match family {
        _ if !config.masquerade => Vec::new(),
        Family::Ipv4 => config
            .uplinks
            .iter()
            .flat_map(|u| uplink_nat(config, u))
            .collect(),
        Family::Ipv6 => config
            .uplinks
            .iter()
            .flat_map(|u| uplink_nat6(config, observed, u))
            .collect(),
    };
    rules.extend(forward::hairpin_masquerade(config));
    let mut chains = vec![Chain {
        name: CHAIN_POSTROUTING.into(),
        rules,
    }];
    if !config.port_forwards.is_empty() {
        chains.push(forward::dnat_chain(config));
        for (i, (f, p)) in config.port_forwards.iter().zip(forwards).enumerate() {
            chains.push(forward::backend_chain(i, f, p));
        }
    }
    TablePlan {
        name: "nat".into(),
        family,
        chains,
    }
}

/// An uplink's source NAT. A node of an HA pair sends forwarded connections from the
/// uplink's shared address, so they keep working when the other node takes the address
/// over; masquerade would pick each node's own address. The router's own traffic (probes,
/// which must leave from this node's address) is still masqueraded.
fn uplink_nat(config: &Config, u: &Uplink) -> Vec<Rule> {
    let out = || Match::OutInterface(u.interface.clone());
    let comment = format!("multiwan nat {}", u.name);
    let mut rules = Vec::new();
    if let Some(shared) = config
        .ha
        .as_ref()
        .and_then(|ha| ha.uplink_addresses.get(&u.name))
    {
        rules.push(Rule::new(
            vec![out(), Match::LocalSource { negated: true }],
            Target::Snat(shared.addr().into()),
            format!("multiwan ha nat {}", u.name),
        ));
    }
    rules.push(Rule::new(vec![out()], Target::Masquerade, comment));
    rules
}

/// An uplink's IPv6 translation (`nat6`). `npt` maps the LAN prefix onto the uplink's
/// prefix with NETMAP, which keeps each host's bits: a stable address per ISP. It is done
/// by conntrack's NAT, not by stateless SNPT/DNPT: those rewrite packets after conntrack has
/// seen them, so a reply would not match its connection and the connection's mark (its
/// uplink) would be lost. Until the prefix is known, the uplink masquerades.
fn uplink_nat6(config: &Config, observed: &Observed, u: &Uplink) -> Vec<Rule> {
    use crate::config::Nat6;
    let out = || Match::OutInterface(u.interface.clone());
    let Some(side) = &u.ipv6 else {
        return Vec::new();
    };
    let masquerade = || {
        Rule::new(
            vec![out()],
            Target::Masquerade,
            format!("multiwan nat6 {}", u.name),
        )
    };
    match side.nat {
        Nat6::Masquerade => vec![masquerade()],
        Nat6::None => Vec::new(),
        Nat6::Npt => match (config.lan_prefix6, observed.prefix6(u)) {
            (Some(lan), Some(prefix)) => vec![Rule::new(
                vec![out(), Match::Source(lan.into())],
                Target::Netmap(prefix.into()),
                format!("multiwan npt {}", u.name),
            )],
            _ => vec![masquerade()],
        },
    }
}

/// With `when_all_down: unreachable`, connections marked unreachable are refused in
/// FORWARD: a TCP reset (which no ICMP rate limit delays) or ICMP net unreachable. An
/// `unreachable` ip rule would answer only the first attempts: the kernel rate-limits its
/// ICMP per host, and later attempts would hang until they time out.
pub(super) fn filter(config: &Config, family: Family) -> TablePlan {
    let mut chains = Vec::new();
    if config.when_all_down == crate::config::WhenAllDown::Unreachable {
        let mark = || Match::Mark {
            value: config.marks.unreachable(),
            mask: config.marks.mask,
            negated: false,
        };
        let comment = "multiwan all uplinks down";
        chains.push(Chain {
            name: CHAIN_FORWARD.into(),
            rules: vec![
                Rule::new(
                    vec![Match::Protocol(Protocol::Tcp), mark()],
                    Target::Reject("tcp-reset".into()),
                    comment,
                ),
                Rule::new(
                    vec![mark()],
                    Target::Reject(family.unreachable_reply().into()),
                    comment,
                ),
            ],
        });
    }
    chains.push(Chain {
        name: CHAIN_INPUT.into(),
        rules: config
            .uplinks
            .iter()
            .filter(|u| family == Family::Ipv4 || u.ipv6.is_some())
            .map(|u| {
                Rule::new(
                    vec![Match::InInterface(u.interface.clone()), Match::Reply],
                    Target::Accept,
                    "multiwan replies to the router",
                )
            })
            .collect(),
    });
    TablePlan {
        name: "filter".into(),
        family,
        chains,
    }
}

/// The jumps from the built-in chains of one family's view of the config (an IPv6 view has
/// no port forwards, so no DNAT jump).
pub(super) fn jumps(config: &Config, _family: Family) -> Vec<Jump> {
    let mut out = vec![
        Jump {
            table: "mangle".into(),
            from: "PREROUTING".into(),
            to: CHAIN_PREROUTING.into(),
        },
        Jump {
            table: "mangle".into(),
            from: "OUTPUT".into(),
            to: CHAIN_OUTPUT.into(),
        },
        Jump {
            table: "nat".into(),
            from: "POSTROUTING".into(),
            to: CHAIN_POSTROUTING.into(),
        },
    ];
    if !config.port_forwards.is_empty() {
        out.push(Jump {
            table: "nat".into(),
            from: "PREROUTING".into(),
            to: CHAIN_DNAT.into(),
        });
    }
    if config.when_all_down == crate::config::WhenAllDown::Unreachable {
        out.push(Jump {
            table: "filter".into(),
            from: "FORWARD".into(),
            to: CHAIN_FORWARD.into(),
        });
    }
    out.push(Jump {
        table: "filter".into(),
        from: "INPUT".into(),
        to: CHAIN_INPUT.into(),
    });
    out
}
