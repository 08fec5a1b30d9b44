//! `multiwan explain`: which uplink a new connection takes, and why. It walks the plan's own
//! mangle rules (the ones `apply` installs), so the answer cannot drift from the kernel's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::config::{Config, Protocol};
use crate::plan::{
    Balance, CHAIN_PREROUTING, Family, Match, Origin, Plan, Resolved, RouteKind, Rule, RuleAction,
    Target,
};

/// A new connection as it enters the router (source and destination of one family).
#[derive(Debug, Clone)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub in_interface: String,
}

/// Where a connection ends up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Uplink(String),
    /// A port forward's DNAT to this backend.
    Backend(String),
    Main,
    Unreachable,
    Dropped,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    /// One line naming only the uplink(s) the connection may take.
    pub verdict: String,
    /// Each possible route with its probability.
    pub routes: Vec<(Route, f64)>,
    /// The reasoning, one line each.
    pub reasons: Vec<String>,
}

impl Explanation {
    pub fn text(&self) -> String {
        let mut out = self.verdict.clone();
        for r in &self.reasons {
            out.push_str("\n  ");
            out.push_str(r);
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Branch {
    probability: f64,
    mark: u32,
    dropped: bool,
    dnat: Option<String>,
    trail: Vec<String>,
}

impl Branch {
    /// A new connection before any rule: certain, unmarked.
    fn start() -> Self {
        Self {
            probability: 1.0,
            mark: 0,
            dropped: false,
            dnat: None,
            trail: Vec::new(),
        }
    }
}

struct Walker<'a> {
    plan: &'a Plan,
    table: &'a crate::plan::TablePlan,
    config: &'a Config,
    packet: &'a Packet,
    notes: Vec<String>,
}

/// Walks the plan of the packet's family through that family's view of the config.
pub fn explain(config: &Config, plan: &Plan, packet: &Packet) -> Explanation {
    let family = Family::of_addr(&packet.src);
    let Some(plan) = plan.of(family) else {
        return Explanation {
            verdict: "main table (multiwan does not handle IPv6 here)".into(),
            routes: vec![(Route::Main, 1.0)],
            reasons: vec![
                "no uplink has `gateway6`: IPv6 connections follow the main table, are not balanced and do not fail over".into(),
            ],
        };
    };
    let view = crate::plan::view(config, family);
    explain_in(&view, plan, packet)
}

fn explain_in(config: &Config, plan: &Plan, packet: &Packet) -> Explanation {
    let mut w = Walker {
        plan,
        table: &plan.mangle,
        config,
        packet,
        notes: Vec::new(),
    };
    let branches = w.run(CHAIN_PREROUTING, Branch::start());
    let mut grouped: BTreeMap<Route, (f64, Vec<String>)> = BTreeMap::new();
    for b in branches {
        let route = w.route_of(&b);
        let entry = grouped.entry(route).or_insert((0.0, b.trail.clone()));
        entry.0 += b.probability;
    }
    let mut grouped: Vec<(Route, (f64, Vec<String>))> = grouped.into_iter().collect();
    grouped.sort_by_key(|(r, _)| match r {
        Route::Uplink(name) => config
            .uplinks
            .iter()
            .position(|u| &u.name == name)
            .unwrap_or(usize::MAX),
        _ => usize::MAX,
    });
    let mut reasons = assumed_states(plan);
    for (_, (_, trail)) in &grouped {
        for line in trail {
            if !reasons.contains(line) {
                reasons.push(line.clone());
            }
        }
    }
    for (route, _) in &grouped {
        reasons.extend(w.routing_line(route));
    }
    reasons.extend(w.notes.iter().cloned());
    let routes: Vec<(Route, f64)> = grouped.into_iter().map(|(r, (p, _))| (r, p)).collect();
    Explanation {
        verdict: verdict(&routes),
        routes,
        reasons,
    }
}

fn assumed_states(plan: &Plan) -> Vec<String> {
    let states: Vec<String> = plan
        .uplinks
        .iter()
        .map(|u| format!("{} {}", u.name, u.health))
        .collect();
    vec![format!("uplink states assumed: {}", states.join(", "))]
}

fn verdict(routes: &[(Route, f64)]) -> String {
    let uplinks: Vec<(&str, f64)> = routes
        .iter()
        .filter_map(|(r, p)| match r {
            Route::Uplink(name) if *p > 0.0 => Some((name.as_str(), *p)),
            _ => None,
        })
        .collect();
    match (uplinks.as_slice(), routes) {
        ([(name, _)], [_]) => format!("uplink {name}"),
        ([], [(Route::Main, _)]) => "main table (not routed by multiwan)".into(),
        ([], [(Route::Dropped, _)]) => "dropped (no uplink)".into(),
        ([], [(Route::Unreachable, _)]) => "unreachable (no uplink)".into(),
        (many, _) => {
            let parts: Vec<String> = many
                .iter()
                .map(|(n, p)| format!("{n} {:.1} %", p * 100.0))
                .collect();
            format!("balanced: {}", parts.join(", "))
        }
    }
}

impl Walker<'_> {
    /// Runs a chain; returns the branches that leave it (returned, fell off, or dropped).
    fn run(&mut self, chain: &str, branch: Branch) -> Vec<Branch> {
        let Some(rules) = self.table.chain(chain).map(|c| c.rules.clone()) else {
            return vec![branch];
        };
        let mut pending = vec![(0usize, branch)];
        let mut out = Vec::new();
        while let Some((i, mut b)) = pending.pop() {
            if b.dropped || b.dnat.is_some() || i == rules.len() {
                out.push(b);
                continue;
            }
            let rule = &rules[i];
            let Some(p) = self.matches(rule, &b) else {
                pending.push((i + 1, b));
                continue;
            };
            if p < 1.0 {
                let mut miss = b.clone();
                miss.probability *= 1.0 - p;
                pending.push((i + 1, miss));
                b.probability *= p;
            }
            self.note(rule, &mut b);
            match &rule.target {
                Target::Return => out.push(b),
                Target::Drop => {
                    b.dropped = true;
                    out.push(b);
                }
                Target::Dnat(to) => {
                    b.dnat = Some(to.clone());
                    out.push(b);
                }
                Target::Jump(next) => {
                    for r in self.run(next, b) {
                        if r.dropped || r.dnat.is_some() {
                            out.push(r);
                        } else {
                            pending.push((i + 1, r));
                        }
                    }
                }
                // Whatever leaves the goto target leaves this chain as well.
                Target::Goto(next) => out.extend(self.run(next, b)),
                Target::SetMark { value, mask } => {
                    b.mark = (b.mark & !mask) | value;
                    pending.push((i + 1, b));
                }
                _ => pending.push((i + 1, b)),
            }
        }
        out
    }

    /// The probability that the rule matches (None when it cannot).
    fn matches(&mut self, rule: &Rule, b: &Branch) -> Option<f64> {
        let mut p = 1.0;
        for m in &rule.matches {
            match m {
                Match::Random(q) => p *= q,
                // Every nth connection reaching the rule: a share of 1/n of them.
                Match::EveryNth(n) => p /= f64::from(*n),
                other => {
                    if !self.matches_one(other, b) {
                        return None;
                    }
                }
            }
        }
        Some(p)
    }

    fn matches_one(&mut self, m: &Match, b: &Branch) -> bool {
        let pkt = self.packet;
        match m {
            Match::InInterface(i) => &pkt.in_interface == i,
            Match::OutInterface(_) => false,
            Match::Source(n) => n.contains(&pkt.src),
            Match::Destination(n) => n.contains(&pkt.dst),
            Match::Protocol(p) => *p == Protocol::All || *p == pkt.protocol,
            Match::SourcePorts(r) => self.port_in(pkt.sport, r, "--sport"),
            Match::DestinationPorts(r) => self.port_in(pkt.dport, r, "--dport"),
            Match::DestinationInSet(name) => self.in_set(name),
            Match::Mark {
                value,
                mask,
                negated,
            } => ((b.mark & mask) == *value) != *negated,
            Match::NewConnection { negated } => !negated,
            Match::Random(_) | Match::EveryNth(_) => true,
            Match::SourceInSet(name) => self.set_contains(name, pkt.src),
            Match::DnatConnection => false,
            // The packet explained opens a connection (a SYN) and comes from another host.
            Match::TcpNotSyn => false,
            Match::LocalSource { negated } => *negated,
            // The packet explained opens a connection.
            Match::Reply => false,
        }
    }

    fn port_in(
        &mut self,
        port: Option<u16>,
        ranges: &[crate::config::PortRange],
        flag: &str,
    ) -> bool {
        match port {
            Some(p) => ranges.iter().any(|r| r.contains(p)),
            None => {
                let note = format!(
                    "no {flag} given: rules that match on ports were taken as not matching"
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
                false
            }
        }
    }

    fn in_set(&mut self, name: &str) -> bool {
        let dst = self.packet.dst;
        self.set_contains(name, dst)
    }

    fn set_contains(&mut self, name: &str, ip: IpAddr) -> bool {
        let Some(set) = self.plan.sets.iter().find(|s| s.name == name) else {
            return false;
        };
        match &set.networks {
            Resolved::Known(nets) if nets.iter().any(|n| n.contains(&ip)) => true,
            Resolved::Known(_) => {
                if set.learned_timeout.is_some() {
                    let note = format!(
                        "assumed {ip} is not among the addresses a resolver added to {name} for its domains (`ipset test {name} {ip}` tells)"
                    );
                    if !self.notes.contains(&note) {
                        self.notes.push(note);
                    }
                }
                false
            }
            Resolved::Unknown(what) => {
                let note = format!("assumed {ip} is not in {name} ({what})");
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
                false
            }
        }
    }

    /// Records why a rule that matched matters.
    fn note(&self, rule: &Rule, b: &mut Branch) {
        let line = match rule.origin {
            Origin::Policy(i) => self.policy_line(i),
            Origin::Pins(r, g) => self.pins_line(r, g),
            Origin::Connected => format!(
                "{} is on a connected network: the main table routes it",
                self.packet.dst
            ),
            Origin::Balance => {
                if !b.trail.iter().any(|l| l.starts_with("policy "))
                    && !self.plan.policies.is_empty()
                {
                    b.trail.push("no policy matches".into());
                }
                self.balance_line()
            }
            Origin::Forward(i) => {
                format!("port forward {} matches", self.config.port_forwards[i].name)
            }
            Origin::Plumbing => return,
        };
        if !b.trail.contains(&line) {
            b.trail.push(line);
        }
    }

    /// A set of pins matched: the first of its policies whose networks hold the address.
    fn pins_line(&self, r: usize, g: usize) -> String {
        let run = &self.plan.pins[r];
        let addr = match run.side {
            crate::plan::pins::Side::Source => self.packet.src,
            crate::plan::pins::Side::Destination => self.packet.dst,
        };
        let group = &run.groups[g];
        let first = group.policies.iter().copied().find(|i| {
            let m = &self.config.policies[*i].matcher;
            m.sources
                .iter()
                .chain(&m.destinations)
                .any(|n| n.contains(&addr))
        });
        match first {
            Some(i) => format!("{} (through set {})", self.policy_line(i), group.set),
            None => format!("set {} matches", group.set),
        }
    }

    fn policy_line(&self, i: usize) -> String {
        let p = &self.plan.policies[i];
        format!("policy {} matches: {}", p.name, p.decision)
    }

    fn balance_line(&self) -> String {
        match &self.plan.balance {
            Balance::Weighted { tier, members } => {
                let parts: Vec<String> = members
                    .iter()
                    .map(|m| {
                        format!(
                            "{} weight {} ({:.1} %)",
                            m.uplink,
                            crate::plan::render_weight(m.weight),
                            m.share * 100.0
                        )
                    })
                    .collect();
                let prefix = if self.plan.all_down {
                    "every uplink is down and when_all_down is balance_all: treated as up; "
                } else {
                    ""
                };
                format!("{prefix}balanced over tier {tier}: {}", parts.join(", "))
            }
            Balance::Unreachable => "every uplink is down and when_all_down is unreachable".into(),
        }
    }

    fn route_of(&self, b: &Branch) -> Route {
        if let Some(to) = &b.dnat {
            return Route::Backend(to.clone());
        }
        if b.dropped {
            return Route::Dropped;
        }
        let marks = self.config.marks;
        let field = b.mark & marks.mask;
        if field == marks.unreachable() {
            return Route::Unreachable;
        }
        match marks.id_of(field) {
            Some(id) => self
                .config
                .uplinks
                .iter()
                .find(|u| u.id == id)
                .map_or(Route::Main, |u| Route::Uplink(u.name.clone())),
            None => Route::Main,
        }
    }

    /// How the kernel routes a marked connection: rule, table, route.
    fn routing_line(&self, route: &Route) -> Option<String> {
        let Route::Uplink(name) = route else {
            return None;
        };
        let u = self.plan.uplink(name)?;
        let rule = self.plan.ip_rules.iter().find(|r| {
            r.fwmark.is_some_and(|(v, _)| v == u.mark)
                && matches!(r.action, RuleAction::Lookup { table, .. } if table == u.table)
        })?;
        let via = self.plan.routes.iter().find_map(|r| match &r.kind {
            RouteKind::Default { gateway, interface } if r.table == u.table => {
                Some(format!("default via {gateway} dev {interface}"))
            }
            _ => None,
        })?;
        Some(format!(
            "{name}: mark {:#x} -> ip rule {} -> table {}: {via}",
            u.mark, rule.priority, u.table
        ))
    }
}

/// Where a new connection from the internet to `dport` on an uplink goes: the backends of
/// the matching port forward with their shares, walked through the plan's nat rules.
pub fn explain_forward(
    config: &Config,
    plan: &Plan,
    uplink: &str,
    protocol: Protocol,
    dport: u16,
) -> Explanation {
    let Some(u) = config.uplink(uplink) else {
        return Explanation {
            verdict: format!("no uplink named {uplink}"),
            routes: Vec::new(),
            reasons: Vec::new(),
        };
    };
    let packet = Packet {
        src: Ipv4Addr::new(192, 0, 2, 1).into(),
        dst: plan
            .uplink(uplink)
            .and_then(|p| p.address.known().copied())
            .unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
        protocol,
        sport: None,
        dport: Some(dport),
        in_interface: u.interface.clone(),
    };
    let mut w = Walker {
        plan,
        table: &plan.nat,
        config,
        packet: &packet,
        notes: Vec::new(),
    };
    let mut shares: Vec<(String, f64)> = Vec::new();
    let mut reasons = Vec::new();
    for b in w.run(crate::plan::CHAIN_DNAT, Branch::start()) {
        for line in &b.trail {
            if !reasons.contains(line) {
                reasons.push(line.clone());
            }
        }
        if let Some(to) = b.dnat {
            match shares.iter_mut().find(|(t, _)| *t == to) {
                Some(s) => s.1 += b.probability,
                None => shares.push((to, b.probability)),
            }
        }
    }
    shares.sort_by(|a, b| a.0.cmp(&b.0));
    let verdict = if shares.is_empty() {
        format!(
            "not forwarded: no port forward for {} {dport} on {uplink} (the router itself receives it)",
            protocol.name()
        )
    } else {
        let parts: Vec<String> = shares
            .iter()
            .map(|(t, p)| format!("{t} {:.1} %", p * 100.0))
            .collect();
        format!("backends: {}", parts.join(", "))
    };
    for f in &plan.forwards {
        if f.all_down
            && reasons
                .iter()
                .any(|r| r == &format!("port forward {} matches", f.name))
        {
            reasons.push(format!(
                "every backend of {} is down: all are kept in rotation",
                f.name
            ));
        }
    }
    reasons.push(format!(
        "the reply leaves by {uplink}: the connection's CONNMARK is set on arrival"
    ));
    Explanation {
        verdict,
        routes: Vec::new(),
        reasons,
    }
}
