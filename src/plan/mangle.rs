//! The mangle table: where a new connection gets its uplink's mark. LAN packets restore
//! their connection's mark; an undecided NEW connection meets the connected networks, the
//! policies in order and the weighted cascade; the decision is saved to the connection. The
//! router's own traffic is decided the same way from OUTPUT.

use super::balance::Balance;
use super::pins::{Layout, PinRun, Side};
use super::rules::{Chain, Match, Origin, Rule, TablePlan, Target};
use super::*;
use crate::config::{Policy, PortRange, Protocol, SET_THRESHOLD};

pub(super) fn mangle(
    config: &Config,
    family: Family,
    observed: &Observed,
    balance: &Balance,
    policies: &[PolicyPlan],
    pins: &(Vec<Layout>, Vec<PinRun>),
) -> TablePlan {
    let mut chains = vec![
        prerouting(config),
        restore(config),
        lan(config, family, observed),
        output(config),
    ];
    if !config.policies.is_empty() {
        chains.push(Chain {
            name: CHAIN_POLICY.into(),
            rules: policy_rules(config, family, policies, pins),
        });
    }
    chains.push(Chain {
        name: CHAIN_BALANCE.into(),
        rules: balance_rules(config, balance),
    });
    TablePlan {
        name: "mangle".into(),
        family,
        chains,
    }
}

/// Entry point. A packet of a connection already decided goes (`-g`) to the restore and is
/// done: the jump, this test and the restore are all an established packet costs, in both
/// directions. A NEW one from the LAN goes to the LAN chain; a NEW connection from an
/// uplink (a port forward) gets that uplink's mark in its CONNMARK only.
///
/// Restoring the mark on replies from the internet is safe only because of the
/// `suppress_prefixlength 0` rule ahead of the fwmark rules: a reply to a LAN host finds
/// main's LAN route first. Without it, the fwmark rule would send the reply back out of the
/// WAN and every connection would hang (see docs/architecture.md).
fn prerouting(config: &Config) -> Chain {
    let mut rules = vec![Rule::new(
        vec![Match::NewConnection { negated: true }],
        Target::Goto(CHAIN_RESTORE.into()),
        "multiwan established",
    )];
    rules.extend(ha_takeover_guard(config));
    rules.extend(config.lan_interfaces.iter().map(|lan| {
        Rule::new(
            vec![Match::InInterface(lan.clone())],
            Target::Goto(CHAIN_LAN.into()),
            "multiwan lan",
        )
    }));
    for u in &config.uplinks {
        rules.push(Rule::new(
            vec![
                Match::InInterface(u.interface.clone()),
                Match::NewConnection { negated: false },
            ],
            Target::SetConnmark {
                value: config.marks.uplink(u.id),
                mask: config.marks.mask,
            },
            format!("multiwan inbound {}", u.name),
        ));
    }
    Chain {
        name: CHAIN_PREROUTING.into(),
        rules,
    }
}

/// The connection's decision, if any, onto the packet (our bits only).
fn restore(config: &Config) -> Chain {
    Chain {
        name: CHAIN_RESTORE.into(),
        rules: vec![Rule::new(
            vec![],
            Target::RestoreMark {
                mask: config.marks.mask,
            },
            "multiwan restore",
        )],
    }
}

/// The router's own packets: a socket that set its mark itself (the probes, SO_MARK) keeps
/// it; everything else is decided exactly like LAN traffic, so the router's DNS, NTP or VPN
/// follow failover too. (MASQUERADE then gives a rerouted packet the right source.)
fn output(config: &Config) -> Chain {
    Chain {
        name: CHAIN_OUTPUT.into(),
        rules: vec![
            Rule::new(
                vec![Match::Mark {
                    value: 0,
                    mask: config.marks.mask,
                    negated: true,
                }],
                Target::Return,
                "multiwan marked by its socket",
            ),
            Rule::new(vec![], Target::Goto(CHAIN_LAN.into()), "multiwan local"),
        ],
    }
}

/// On a node of an HA pair: a TCP packet that is not a SYN yet would open a connection is
/// one of an established connection whose conntrack entry is not committed yet (keepalived
/// adds the shared addresses before `ha notify master` commits conntrackd's cache). Let
/// through, it would become a fresh entry with a random mark and a wrong address; dropped,
/// it is retransmitted after the commit.
fn ha_takeover_guard(config: &Config) -> Option<Rule> {
    config.ha.as_ref()?;
    Some(Rule::new(
        vec![
            Match::Protocol(Protocol::Tcp),
            Match::NewConnection { negated: false },
            Match::TcpNotSyn,
        ],
        Target::Drop,
        "multiwan ha mid-stream",
    ))
}

/// LAN ingress: restore the connection's mark; marked packets leave at once; only NEW
/// connections are decided (a connection that predates multiwan keeps the main table
/// rather than being moved mid-stream); the decision is saved to the connection.
fn lan(config: &Config, family: Family, observed: &Observed) -> Chain {
    let mask = config.marks.mask;
    let unmarked = || Match::Mark {
        value: 0,
        mask,
        negated: false,
    };
    let mut rules = vec![
        Rule::new(vec![], Target::RestoreMark { mask }, "multiwan restore"),
        Rule::new(
            vec![Match::Mark {
                value: 0,
                mask,
                negated: true,
            }],
            Target::Return,
            "multiwan decided",
        ),
        Rule::new(
            vec![Match::NewConnection { negated: true }],
            Target::Return,
            "multiwan not new",
        ),
        Rule::new(
            vec![Match::DestinationInSet(connected_set(family))],
            Target::SetMark {
                value: config.marks.main(),
                mask,
            },
            "multiwan connected",
        )
        .origin(Origin::Connected),
    ];
    rules.extend(source_prefix_rules(config, family, observed));
    if !config.policies.is_empty() {
        rules.push(Rule::new(
            vec![unmarked()],
            Target::Jump(CHAIN_POLICY.into()),
            "multiwan policies",
        ));
    }
    rules.push(Rule::new(
        vec![unmarked()],
        Target::Jump(CHAIN_BALANCE.into()),
        "multiwan balance",
    ));
    rules.push(Rule::new(
        vec![],
        Target::SaveMark { mask },
        "multiwan save",
    ));
    Chain {
        name: CHAIN_LAN.into(),
        rules,
    }
}

/// The set of connected networks of a family (IPv6 also holds link-local and multicast).
pub(super) fn connected_set(family: Family) -> String {
    match family {
        Family::Ipv4 => CONNECTED_SET.into(),
        Family::Ipv6 => CONNECTED_SET6.into(),
    }
}

/// IPv6 uplinks with `nat6: none`: LAN hosts hold addresses of that ISP's prefix, which
/// only that ISP routes back, so a connection from it is that uplink's, whatever its
/// health (the hosts' address selection is what fails over).
fn source_prefix_rules(config: &Config, family: Family, observed: &Observed) -> Vec<Rule> {
    if family != Family::Ipv6 {
        return Vec::new();
    }
    config
        .uplinks
        .iter()
        .filter(|u| {
            u.ipv6
                .as_ref()
                .is_some_and(|s| s.nat == crate::config::Nat6::None)
        })
        .filter_map(|u| {
            let prefix = observed.prefix6(u)?;
            Some(Rule::new(
                vec![Match::Source(prefix.into())],
                Target::SetMark {
                    value: config.marks.uplink(u.id),
                    mask: config.marks.mask,
                },
                format!("multiwan prefix {}", u.name),
            ))
        })
        .collect()
}

/// What a policy's matching connections get under its current decision.
fn decision_target(config: &Config, decision: &Decision) -> Target {
    let mask = config.marks.mask;
    match decision {
        Decision::Pinned { uplink } => {
            let u = config
                .uplink(uplink)
                .expect("validated: policy names a known uplink");
            Target::SetMark {
                value: config.marks.uplink(u.id),
                mask,
            }
        }
        Decision::FallbackBalance { .. } => Target::Jump(CHAIN_BALANCE.into()),
        Decision::FallbackDrop { .. } => Target::Drop,
        Decision::Main => Target::SetMark {
            value: config.marks.main(),
            mask,
        },
    }
}

/// The policies in order: each its own rules, or a run of pins as one rule per set.
fn policy_rules(
    config: &Config,
    family: Family,
    decisions: &[PolicyPlan],
    (layout, runs): &(Vec<Layout>, Vec<PinRun>),
) -> Vec<Rule> {
    let mut out = renew_rules(config, family);
    for item in layout {
        match *item {
            Layout::Rules(i) => {
                let policy = &config.policies[i];
                let target = decision_target(config, &decisions[i].decision);
                for matches in policy_matches(config, family, i, policy) {
                    let comment = format!("multiwan policy {}", policy.name);
                    out.push(Rule::new(matches, target.clone(), comment).origin(Origin::Policy(i)));
                }
            }
            Layout::Run(r) => out.extend(run_rules(config, decisions, r, &runs[r])),
        }
    }
    out
}

/// A new connection to an address a resolver added renews it (the set's timeout starts
/// again): the resolver adds an address once and does not renew it on later answers, so
/// without this a service in use would leave its uplink `timeout` after it was learned.
/// Only the learned sets a policy uses.
fn renew_rules(config: &Config, family: Family) -> Vec<Rule> {
    let used = |name: &str| {
        config
            .policies
            .iter()
            .any(|p| !p.matcher.never && p.matcher.destination_set.as_deref() == Some(name))
    };
    config
        .sets
        .iter()
        .filter(|s| !s.domains.is_empty() && used(&s.name))
        .map(|s| {
            let set = super::learned_set(family, &s.name);
            Rule::new(
                vec![Match::DestinationInSet(set.clone())],
                Target::RenewInSet(set),
                format!("multiwan renew {}", s.name),
            )
        })
        .collect()
}

/// One rule per set of a run, in the run's order.
fn run_rules(config: &Config, decisions: &[PolicyPlan], r: usize, run: &PinRun) -> Vec<Rule> {
    let unmarked = Match::Mark {
        value: 0,
        mask: config.marks.mask,
        negated: false,
    };
    run.groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let matches = match run.side {
                Side::Source => Match::SourceInSet(group.set.clone()),
                Side::Destination => Match::DestinationInSet(group.set.clone()),
            };
            let target = decision_target(config, &decisions[group.policies[0]].decision);
            let comment = format!("multiwan pins {}", group.set);
            Rule::new(vec![matches, unmarked.clone()], target, comment).origin(Origin::Pins(r, g))
        })
        .collect()
}

/// The ipset holding a long source or destination list of policy `index`. A `.` cannot
/// appear in config set names, so it cannot clash with them.
pub(super) fn policy_set(family: Family, index: usize, dir: &str) -> String {
    format!("{}p{index}.{dir}", family.set_prefix())
}

/// A policy's networks as rules see them: listed one per rule, or in its ipset.
fn listed(nets: &[ipnet::IpNet]) -> Vec<Option<ipnet::IpNet>> {
    if nets.len() > SET_THRESHOLD {
        vec![None]
    } else {
        optional_list(nets)
    }
}

/// One match list per combination of source, destination and port chunk; each also
/// requires the packet to be undecided, so the first matching policy wins.
fn policy_matches(
    config: &Config,
    family: Family,
    index: usize,
    policy: &Policy,
) -> Vec<Vec<Match>> {
    let m = &policy.matcher;
    if m.never {
        return Vec::new();
    }
    // Each axis lists the alternatives for one part of the rule (None: not matched on);
    // a policy is one rule per combination.
    let mut fixed = Vec::new();
    if m.protocol != Protocol::All {
        fixed.push(Match::Protocol(m.protocol));
    }
    if m.sources.len() > SET_THRESHOLD {
        fixed.push(Match::SourceInSet(policy_set(family, index, "src")));
    }
    if m.destinations.len() > SET_THRESHOLD {
        fixed.push(Match::DestinationInSet(policy_set(family, index, "dst")));
    }
    let dest_sets = match &m.destination_set {
        Some(name) => super::kernel_sets_of(config, family, name),
        None => Vec::new(),
    };
    let axes: [Vec<Option<Match>>; 5] = [
        axis(listed(&m.sources), Match::Source),
        axis(listed(&m.destinations), Match::Destination),
        axis(
            optional_list(&PortRange::chunks(&m.source_ports)),
            Match::SourcePorts,
        ),
        axis(
            optional_list(&PortRange::chunks(&m.destination_ports)),
            Match::DestinationPorts,
        ),
        axis(optional_list(&dest_sets), Match::DestinationInSet),
    ];
    let mut out: Vec<Vec<Match>> = vec![Vec::new()];
    for alternatives in axes {
        out = out
            .iter()
            .flat_map(|partial| {
                alternatives.iter().map(move |alt| {
                    let mut next = partial.clone();
                    next.extend(alt.clone());
                    next
                })
            })
            .collect();
    }
    let undecided = Match::Mark {
        value: 0,
        mask: config.marks.mask,
        negated: false,
    };
    for matches in &mut out {
        // Keep the rule text's order: addresses, protocol and sets, then ports and sets.
        let at = matches
            .iter()
            .position(|m| !matches!(m, Match::Source(_) | Match::Destination(_)))
            .unwrap_or(matches.len());
        matches.splice(at..at, fixed.iter().cloned());
        matches.push(undecided.clone());
    }
    out
}

fn axis<T>(items: Vec<Option<T>>, to_match: impl Fn(T) -> Match) -> Vec<Option<Match>> {
    items.into_iter().map(|i| i.map(&to_match)).collect()
}

fn optional_list<T: Clone>(items: &[T]) -> Vec<Option<T>> {
    if items.is_empty() {
        vec![None]
    } else {
        items.iter().cloned().map(Some).collect()
    }
}

fn balance_rules(config: &Config, balance: &Balance) -> Vec<Rule> {
    let mask = config.marks.mask;
    let members = match balance {
        Balance::Unreachable => {
            return vec![
                Rule::new(
                    vec![],
                    Target::SetMark {
                        value: config.marks.unreachable(),
                        mask,
                    },
                    "multiwan all uplinks down",
                )
                .origin(Origin::Balance),
            ];
        }
        Balance::Weighted { members, .. } => members,
    };
    members
        .iter()
        .map(|m| {
            let u = config
                .uplink(&m.uplink)
                .expect("balance members are uplinks");
            let mut matches = vec![Match::Mark {
                value: 0,
                mask,
                negated: false,
            }];
            if m.probability < 1.0 {
                matches.push(Match::Random(m.probability));
            }
            let target = Target::SetMark {
                value: config.marks.uplink(u.id),
                mask,
            };
            Rule::new(matches, target, format!("multiwan balance {}", u.name))
                .origin(Origin::Balance)
        })
        .collect()
}
