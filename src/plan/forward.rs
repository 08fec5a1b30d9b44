//! The port-forward part of a plan: nat PREROUTING DNAT to live backends (round robin by
//! `statistic --mode nth`, or the weighted random cascade), hairpin for LAN clients using a
//! public address, and masquerade of hairpin connections so backends reply via the router.

use super::balance::cascade;
use super::rules::{Chain, Match, Origin, Rule, Target};
use super::*;
use crate::config::{Config, ForwardBalance, PortForward};

/// Which backends are in rotation: the live ones, or all of them when none is.
pub fn forward_plans(config: &Config, observed: &Observed) -> Vec<ForwardPlan> {
    config
        .port_forwards
        .iter()
        .map(|f| {
            let live: Vec<usize> = (0..f.backends.len())
                .filter(|i| !observed.backends_down.contains(&(f.name.clone(), *i)))
                .collect();
            let all_down = live.is_empty();
            ForwardPlan {
                name: f.name.clone(),
                live: if all_down {
                    (0..f.backends.len()).collect()
                } else {
                    live
                },
                all_down,
            }
        })
        .collect()
}

pub fn chain_name(f: &PortForward) -> String {
    format!("{CHAIN_FORWARD_PREFIX}{}", f.name)
}

/// `MULTIWAN_DNAT`: sends a new connection for a forwarded port to the forward's chain
/// when it arrives on one of its uplinks, or from the LAN to an uplink address (hairpin).
pub fn dnat_chain(config: &Config) -> Chain {
    let mut rules = Vec::new();
    for (i, f) in config.port_forwards.iter().enumerate() {
        let service = |first: Match| {
            vec![
                first,
                Match::Protocol(f.protocol),
                Match::DestinationPorts(vec![f.ports]),
            ]
        };
        for name in &f.uplinks {
            let u = config
                .uplink(name)
                .expect("validated: forward names known uplinks");
            let comment = format!("multiwan forward {} on {}", f.name, u.name);
            rules.push(
                Rule::new(
                    service(Match::InInterface(u.interface.clone())),
                    Target::Jump(chain_name(f)),
                    comment,
                )
                .origin(Origin::Forward(i)),
            );
        }
        if f.hairpin {
            for lan in &config.lan_interfaces {
                let mut m = service(Match::InInterface(lan.clone()));
                m.insert(1, Match::DestinationInSet(WAN_ADDRESSES_SET.into()));
                let comment = format!("multiwan hairpin {}", f.name);
                rules.push(
                    Rule::new(m, Target::Jump(chain_name(f)), comment).origin(Origin::Forward(i)),
                );
            }
        }
    }
    Chain {
        name: CHAIN_DNAT.into(),
        rules,
    }
}

/// A forward's own chain: one DNAT per backend in rotation.
pub fn backend_chain(index: usize, f: &PortForward, plan: &ForwardPlan) -> Chain {
    let n = plan.live.len();
    let probabilities: Vec<f64> = match f.balance {
        // Rule i sees the connections the earlier rules let through; every (n-i)th of them
        // is its own, so consecutive connections go round the backends.
        ForwardBalance::RoundRobin => (0..n).map(|i| 1.0 / (n - i) as f64).collect(),
        ForwardBalance::Random => {
            let weights: Vec<(String, f64)> = plan
                .live
                .iter()
                .map(|b| (b.to_string(), f64::from(f.backends[*b].weight)))
                .collect();
            cascade(&weights).iter().map(|m| m.probability).collect()
        }
    };
    let rules = plan
        .live
        .iter()
        .zip(probabilities)
        .enumerate()
        .map(|(i, (b, p))| {
            let backend = &f.backends[*b];
            let mut m = vec![Match::Protocol(f.protocol)];
            if i + 1 < n {
                m.push(match f.balance {
                    ForwardBalance::RoundRobin => Match::EveryNth((n - i) as u32),
                    ForwardBalance::Random => Match::Random(p),
                });
            }
            let comment = format!("multiwan forward {} to {}", f.name, backend.target());
            Rule::new(m, Target::Dnat(backend.target()), comment).origin(Origin::Forward(index))
        })
        .collect();
    Chain {
        name: chain_name(f),
        rules,
    }
}

/// Hairpin connections reach a LAN backend from a LAN client: masquerade them to the
/// router's LAN address so the backend replies through the router. Only connections from the
/// LAN that were DNATed; a forwarded connection from the internet keeps its real source.
pub fn hairpin_masquerade(config: &Config) -> Vec<Rule> {
    if !config.port_forwards.iter().any(|f| f.hairpin) {
        return Vec::new();
    }
    config
        .lan_interfaces
        .iter()
        .map(|lan| {
            let m = vec![
                Match::OutInterface(lan.clone()),
                Match::SourceInSet(LAN_NETWORKS_SET.into()),
                Match::DnatConnection,
            ];
            Rule::new(m, Target::Masquerade, "multiwan hairpin nat")
        })
        .collect()
}
