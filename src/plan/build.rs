//! Builds a [`Plan`] from a config and what is observed. Pure: no I/O, no clock.

use super::balance::{self, Balance};
use super::routing::{IpRule, MAIN_TABLE, RouteKind, RoutePlan, RuleAction, UNREACHABLE_METRIC};
use super::rules::{self, Chain, Jump, Match, Origin, Rule, TablePlan, Target};
use super::*;
use crate::config::{Fallback, Gateway, Policy, PolicyAction, Protocol};

/// Offsets inside the rule priority range.
const PRIO_SUPPRESS_MAIN: u32 = 0;
/// fwmark rules come before the `from <address>` rules: the router's own traffic has its
/// source address chosen by main's route before OUTPUT marks it for another uplink.
const PRIO_FWMARK: u32 = 100;
const PRIO_FROM: u32 = 200;

pub fn build(config: &Config, observed: &Observed) -> Plan {
    let observed_health: Vec<Health> = config
        .uplinks
        .iter()
        .map(|u| observed.health_of(config, u))
        .collect();
    let all_down = observed_health.iter().all(|h| *h == Health::Down);
    let states = balance::effective_health(config, |u| observed.health_of(config, u));
    let balance = balance::balance(config, &states);
    let policies = decide_policies(config, &states);
    let forwards = forward::forward_plans(config, observed);
    Plan {
        marks: config.marks,
        all_down,
        uplinks: uplink_plans(config, observed, &observed_health, &balance),
        mangle: mangle(config, &balance, &policies),
        nat: nat(config, &forwards),
        filter: filter(config),
        jumps: jumps(config),
        ip_rules: ip_rules(config, observed),
        routes: routes(config, observed),
        sets: sets(config, observed),
        balance,
        policies,
        forwards,
    }
}

fn uplink_plans(
    config: &Config,
    observed: &Observed,
    health: &[Health],
    balance: &Balance,
) -> Vec<UplinkPlan> {
    config
        .uplinks
        .iter()
        .zip(health)
        .map(|(u, h)| {
            let member = balance.members().iter().find(|m| m.uplink == u.name);
            UplinkPlan {
                name: u.name.clone(),
                interface: u.interface.clone(),
                id: u.id,
                mark: config.marks.uplink(u.id),
                table: config.table(u),
                tier: u.tier,
                health: *h,
                weight: u.weight,
                effective_weight: member.map_or(0.0, |m| m.weight),
                share: member.map_or(0.0, |m| m.share),
                address: address(observed, u),
                gateway: gateway(observed, u),
            }
        })
        .collect()
}

fn address(observed: &Observed, u: &Uplink) -> Resolved<Ipv4Addr> {
    match observed.addresses.get(&u.name) {
        Some(a) => Resolved::Known(*a),
        None => Resolved::Unknown(format!("address of {}", u.interface)),
    }
}

fn gateway(observed: &Observed, u: &Uplink) -> Resolved<Ipv4Addr> {
    match (u.gateway, observed.gateways.get(&u.name)) {
        (Gateway::Static(ip), _) => Resolved::Known(ip),
        (Gateway::Auto, Some(ip)) => Resolved::Known(*ip),
        (Gateway::Auto, None) => Resolved::Unknown(format!("gateway of {}", u.interface)),
    }
}

fn decide_policies(config: &Config, states: &[Health]) -> Vec<PolicyPlan> {
    config
        .policies
        .iter()
        .map(|p| {
            let decision = match &p.action {
                PolicyAction::Main => Decision::Main,
                PolicyAction::Pin { uplink, fallback } => {
                    let idx = config.uplinks.iter().position(|u| &u.name == uplink);
                    let usable = idx.is_some_and(|i| states[i] != Health::Down);
                    let uplink = uplink.clone();
                    match (usable, fallback) {
                        (true, _) => Decision::Pinned { uplink },
                        (false, Fallback::Balance) => Decision::FallbackBalance { uplink },
                        (false, Fallback::Drop) => Decision::FallbackDrop { uplink },
                    }
                }
            };
            PolicyPlan {
                name: p.name.clone(),
                decision,
            }
        })
        .collect()
}

fn mangle(config: &Config, balance: &Balance, policies: &[PolicyPlan]) -> TablePlan {
    let mut chains = vec![prerouting(config), lan(config), output(config)];
    if !config.policies.is_empty() {
        chains.push(Chain {
            name: CHAIN_POLICY.into(),
            rules: policy_rules(config, policies),
        });
    }
    chains.push(Chain {
        name: CHAIN_BALANCE.into(),
        rules: balance_rules(config, balance),
    });
    TablePlan {
        name: "mangle".into(),
        chains,
    }
}

/// Entry point: LAN packets go (`-g`, so a RETURN there ends our part at once) to the LAN
/// chain; a NEW connection from an uplink (a port forward) gets that uplink's mark in its CONNMARK only. Never a packet mark here: a reply
/// from the internet carrying a mark would be routed straight back out of the WAN.
fn prerouting(config: &Config) -> Chain {
    let mut rules: Vec<Rule> = ha_takeover_guard(config).into_iter().collect();
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
fn lan(config: &Config) -> Chain {
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
            vec![Match::DestinationInSet(CONNECTED_SET.into())],
            Target::SetMark {
                value: config.marks.main(),
                mask,
            },
            "multiwan connected",
        )
        .origin(Origin::Connected),
    ];
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

fn policy_rules(config: &Config, decisions: &[PolicyPlan]) -> Vec<Rule> {
    let mask = config.marks.mask;
    let mut out = Vec::new();
    for (i, (policy, plan)) in config.policies.iter().zip(decisions).enumerate() {
        let target = match &plan.decision {
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
        };
        for matches in policy_matches(i, policy, mask) {
            let comment = format!("multiwan policy {}", policy.name);
            out.push(Rule::new(matches, target.clone(), comment).origin(Origin::Policy(i)));
        }
    }
    out
}

/// A policy with more than this many sources (or destinations) keeps them in an ipset:
/// one rule and a hash lookup instead of one rule per network.
const SET_THRESHOLD: usize = 4;

/// The ipset holding a long source or destination list of policy `index`. A `.` cannot
/// appear in config set names, so it cannot clash with them.
fn policy_set(index: usize, dir: &str) -> String {
    format!("{SET_PREFIX}p{index}.{dir}")
}

/// A policy's networks as rules see them: listed one per rule, or in its ipset.
fn listed(nets: &[ipnet::Ipv4Net]) -> Vec<Option<ipnet::Ipv4Net>> {
    if nets.len() > SET_THRESHOLD {
        vec![None]
    } else {
        optional_list(nets)
    }
}

/// One match list per combination of source, destination and port chunk; each also
/// requires the packet to be undecided, so the first matching policy wins.
fn policy_matches(index: usize, policy: &Policy, mask: u32) -> Vec<Vec<Match>> {
    let m = &policy.matcher;
    let sources = listed(&m.sources);
    let destinations = listed(&m.destinations);
    let sports = optional_list(&rules::port_chunks(&m.source_ports));
    let dports = optional_list(&rules::port_chunks(&m.destination_ports));
    let mut out = Vec::new();
    for s in &sources {
        for d in &destinations {
            for sp in &sports {
                for dp in &dports {
                    let mut matches = Vec::new();
                    matches.extend(s.map(Match::Source));
                    matches.extend(d.map(Match::Destination));
                    if m.protocol != Protocol::All {
                        matches.push(Match::Protocol(m.protocol));
                    }
                    if m.sources.len() > SET_THRESHOLD {
                        matches.push(Match::SourceInSet(policy_set(index, "src")));
                    }
                    if m.destinations.len() > SET_THRESHOLD {
                        matches.push(Match::DestinationInSet(policy_set(index, "dst")));
                    }
                    matches.extend(sp.clone().map(Match::SourcePorts));
                    matches.extend(dp.clone().map(Match::DestinationPorts));
                    if let Some(set) = &m.destination_set {
                        matches.push(Match::DestinationInSet(format!("{SET_PREFIX}{set}")));
                    }
                    matches.push(Match::Mark {
                        value: 0,
                        mask,
                        negated: false,
                    });
                    out.push(matches);
                }
            }
        }
    }
    out
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

fn nat(config: &Config, forwards: &[ForwardPlan]) -> TablePlan {
    let mut rules: Vec<Rule> = if config.masquerade {
        config
            .uplinks
            .iter()
            .flat_map(|u| uplink_nat(config, u))
            .collect()
    } else {
        Vec::new()
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
            Target::Snat(shared.addr()),
            format!("multiwan ha nat {}", u.name),
        ));
    }
    rules.push(Rule::new(vec![out()], Target::Masquerade, comment));
    rules
}

/// With `when_all_down: unreachable`, connections marked unreachable are refused in
/// FORWARD: a TCP reset (which no ICMP rate limit delays) or ICMP net unreachable. An
/// `unreachable` ip rule would answer only the first attempts: the kernel rate-limits its
/// ICMP per host, and later attempts would hang until they time out.
fn filter(config: &Config) -> TablePlan {
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
                    Target::Reject("icmp-net-unreachable".into()),
                    comment,
                ),
            ],
        });
    }
    TablePlan {
        name: "filter".into(),
        chains,
    }
}

fn jumps(config: &Config) -> Vec<Jump> {
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
    out
}

/// Main's specific routes first (LAN, connected networks, a VPN), then the router's own
/// traffic by source address, then forwarded traffic by mark.
fn ip_rules(config: &Config, observed: &Observed) -> Vec<IpRule> {
    let base = config.rule_priority_base;
    let mut out = vec![IpRule {
        priority: base + PRIO_SUPPRESS_MAIN,
        from: None,
        fwmark: None,
        action: RuleAction::Lookup {
            table: MAIN_TABLE,
            suppress_prefixlength: Some(0),
        },
    }];
    for u in &config.uplinks {
        out.push(IpRule {
            priority: base + PRIO_FROM + u.id,
            from: Some(address(observed, u)),
            fwmark: None,
            action: lookup(config.table(u)),
        });
    }
    for u in &config.uplinks {
        out.push(IpRule {
            priority: base + PRIO_FWMARK + u.id,
            from: None,
            fwmark: Some((config.marks.uplink(u.id), config.marks.mask)),
            action: lookup(config.table(u)),
        });
    }
    out.sort_by_key(|r| r.priority);
    out
}

fn lookup(table: u32) -> RuleAction {
    RuleAction::Lookup {
        table,
        suppress_prefixlength: None,
    }
}

fn routes(config: &Config, observed: &Observed) -> Vec<RoutePlan> {
    let mut out = Vec::new();
    for u in &config.uplinks {
        let table = config.table(u);
        out.push(RoutePlan {
            table,
            kind: RouteKind::Default {
                gateway: gateway(observed, u),
                interface: u.interface.clone(),
            },
            metric: 0,
        });
        out.push(RoutePlan {
            table,
            kind: RouteKind::Unreachable,
            metric: UNREACHABLE_METRIC,
        });
    }
    out
}

fn sets(config: &Config, observed: &Observed) -> Vec<IpSet> {
    let mut out = vec![IpSet {
        name: CONNECTED_SET.into(),
        networks: match &observed.connected {
            Some(nets) => Resolved::Known(nets.clone()),
            None => Resolved::Unknown("connected networks, read from the kernel".into()),
        },
    }];
    for s in &config.sets {
        out.push(IpSet {
            name: format!("{SET_PREFIX}{}", s.name),
            networks: Resolved::Known(s.networks.clone()),
        });
    }
    for (i, p) in config.policies.iter().enumerate() {
        for (dir, nets) in [
            ("src", &p.matcher.sources),
            ("dst", &p.matcher.destinations),
        ] {
            if nets.len() > SET_THRESHOLD {
                out.push(IpSet {
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
            name: WAN_ADDRESSES_SET.into(),
            networks: match addresses {
                Some(a) => Resolved::Known(a),
                None => Resolved::Unknown("the uplinks' addresses, read from the kernel".into()),
            },
        });
        out.push(IpSet {
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
