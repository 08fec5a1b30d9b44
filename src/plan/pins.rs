//! Pins as data. A run of consecutive policies that each match only sources (or only
//! destinations) becomes set members rather than rules: one ipset per target (an uplink
//! with its fallback, or the main table), one rule per set. A new connection then costs a
//! few hash lookups however many hosts are pinned, and a failover rewrites those few rules,
//! never the members.
//!
//! First match wins, as with rules: the sets' rules are ordered so that wherever networks
//! of two targets overlap, the target of the earlier policy comes first. A policy that
//! cannot be placed that way (it would need its target's rule both before and after
//! another's) starts a new run.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use super::Family;
use crate::config::{Config, Fallback, Policy, PolicyAction, Protocol, SET_THRESHOLD};

/// Which address of a connection a run matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Destination,
}

/// What the members of one set get: an uplink (and what happens when it is down), or the
/// main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinTarget {
    Uplink { name: String, fallback: Fallback },
    Main,
}

/// One set of a run: its members all get the same target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinGroup {
    pub set: String,
    pub target: PinTarget,
    /// The policies whose networks it holds, by index, in order.
    pub policies: Vec<usize>,
    pub networks: Vec<IpNet>,
}

/// A run of consecutive pin policies kept as set data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinRun {
    pub side: Side,
    /// Its groups in rule order.
    pub groups: Vec<PinGroup>,
}

/// How the policies become rules, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Policy `index` has rules of its own (none when it cannot match this family).
    Rules(usize),
    /// A run of policies matched through sets (an index into the plan's runs).
    Run(usize),
}

/// The side a policy matches, if it matches nothing but sources or destinations.
fn pin_side(p: &Policy) -> Option<Side> {
    let m = &p.matcher;
    let plain = m.protocol == Protocol::All
        && m.source_ports.is_empty()
        && m.destination_ports.is_empty()
        && m.destination_set.is_none();
    match (plain, m.sources.is_empty(), m.destinations.is_empty()) {
        (true, false, true) => Some(Side::Source),
        (true, true, false) => Some(Side::Destination),
        _ => None,
    }
}

fn target_of(p: &Policy) -> PinTarget {
    match &p.action {
        PolicyAction::Pin { uplink, fallback } => PinTarget::Uplink {
            name: uplink.clone(),
            fallback: *fallback,
        },
        PolicyAction::Main => PinTarget::Main,
    }
}

fn networks_of(p: &Policy, side: Side) -> &[IpNet] {
    match side {
        Side::Source => &p.matcher.sources,
        Side::Destination => &p.matcher.destinations,
    }
}

/// The layout of the policies of one family's view of the config, and the runs it refers
/// to. A policy that cannot match this family is left out (it neither matches nor breaks a
/// run).
pub fn layout(config: &Config, family: Family) -> (Vec<Layout>, Vec<PinRun>) {
    let mut out = Vec::new();
    let mut runs = Vec::new();
    let mut current: Option<Builder> = None;
    for (i, p) in config.policies.iter().enumerate() {
        if p.matcher.never {
            continue;
        }
        let Some(side) = pin_side(p) else {
            finish(current.take(), config, &mut out, &mut runs);
            out.push(Layout::Rules(i));
            continue;
        };
        let target = target_of(p);
        let nets = networks_of(p, side);
        if let Some(b) = current.as_mut().filter(|b| b.side == side)
            && b.try_add(i, &target, nets)
        {
            continue;
        }
        finish(current.take(), config, &mut out, &mut runs);
        let mut b = Builder::new(family, side, i);
        b.try_add(i, &target, nets);
        current = Some(b);
    }
    finish(current, config, &mut out, &mut runs);
    (out, runs)
}

/// Ends a run: as sets when it holds more networks than rules would handle well, else as
/// each policy's own rules (a short run costs less as rules than as lookups).
fn finish(b: Option<Builder>, config: &Config, out: &mut Vec<Layout>, runs: &mut Vec<PinRun>) {
    let Some(b) = b else { return };
    if b.members <= SET_THRESHOLD {
        out.extend(b.policies.into_iter().map(Layout::Rules));
        return;
    }
    out.push(Layout::Run(runs.len()));
    runs.push(b.into_run(config));
}

/// A run being built: its groups, and an index of its networks to find overlaps.
struct Builder {
    family: Family,
    side: Side,
    first: usize,
    policies: Vec<usize>,
    /// Few (one per uplink and fallback): found by a linear search, cheaper than hashing.
    groups: Vec<(PinTarget, Vec<usize>, Vec<IpNet>)>,
    /// Every network of the run by (first address, prefix length), and the group it is
    /// in: exact lookups, and the networks inside a given one as a range.
    nets: BTreeMap<(u128, u8), usize>,
    /// The prefix lengths in `nets`, in order: a network can only be inside one of these
    /// lengths (usually just /32 or /128), so only they are looked up.
    lengths: Vec<u8>,
    members: usize,
}

/// An address as a number (IPv4 in the low 32 bits), for ordering a run's networks.
fn number(ip: std::net::IpAddr) -> u128 {
    match ip {
        std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        std::net::IpAddr::V6(a) => u128::from(a),
    }
}

fn key(net: &IpNet) -> (u128, u8) {
    (number(net.network()), net.prefix_len())
}

impl Builder {
    fn new(family: Family, side: Side, first: usize) -> Self {
        Self {
            family,
            side,
            first,
            policies: Vec::new(),
            groups: Vec::new(),
            nets: BTreeMap::new(),
            lengths: Vec::new(),
            members: 0,
        }
    }

    /// Adds policy `index` unless first-match order cannot be kept: a network overlapping
    /// one of an earlier policy with another target needs that target's rule first.
    fn try_add(&mut self, index: usize, target: &PinTarget, nets: &[IpNet]) -> bool {
        let group = self.groups.iter().position(|g| g.0 == *target);
        if let Some(g) = group
            && nets.iter().any(|n| self.overlaps_after(n, g))
        {
            return false;
        }
        let g = group.unwrap_or_else(|| {
            self.groups.push((target.clone(), Vec::new(), Vec::new()));
            self.groups.len() - 1
        });
        self.policies.push(index);
        self.groups[g].1.push(index);
        for n in nets {
            // A network already in the run is decided by whoever had it first.
            let std::collections::btree_map::Entry::Vacant(slot) = self.nets.entry(key(n)) else {
                continue;
            };
            slot.insert(g);
            if let Err(at) = self.lengths.binary_search(&n.prefix_len()) {
                self.lengths.insert(at, n.prefix_len());
            }
            self.groups[g].2.push(*n);
            self.members += 1;
        }
        true
    }

    /// Whether a network of a group after `g` overlaps `net`: one containing it (at most
    /// one per prefix length), or one inside it.
    fn overlaps_after(&self, net: &IpNet, g: usize) -> bool {
        let len = net.prefix_len();
        let containing = self.lengths.iter().take_while(|&&l| l <= len).any(|&l| {
            IpNet::new(net.network(), l)
                .ok()
                .and_then(|wider| self.nets.get(&key(&wider.trunc())))
                .is_some_and(|&other| other > g)
        });
        if containing || len == net.max_prefix_len() {
            // A single address has no network inside it but itself, looked up above.
            return containing;
        }
        let (first, last) = (number(net.network()), number(net.broadcast()));
        self.nets
            .range((first, len)..=(last, net.max_prefix_len()))
            .any(|(_, &other)| other > g)
    }

    fn into_run(self, config: &Config) -> PinRun {
        let groups = self
            .groups
            .into_iter()
            .map(|(target, policies, networks)| PinGroup {
                set: set_name(config, self.family, self.first, &target),
                target,
                policies,
                networks,
            })
            .collect();
        PinRun {
            side: self.side,
            groups,
        }
    }
}

/// `multiwan_r<first policy>.<target>`: `u<id>b`/`u<id>d` (an uplink, fallback balance or
/// drop) or `m` (main). A `.` cannot appear in config set names, so these cannot clash.
fn set_name(config: &Config, family: Family, first: usize, target: &PinTarget) -> String {
    let what = match target {
        PinTarget::Main => "m".to_string(),
        PinTarget::Uplink { name, fallback } => {
            let id = config.uplink(name).map_or(0, |u| u.id);
            let f = match fallback {
                Fallback::Balance => 'b',
                Fallback::Drop => 'd',
            };
            format!("u{id}{f}")
        }
    };
    format!("{}r{first}.{what}", family.set_prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policies: &str) -> Config {
        crate::config::parse(
            &format!(
                "lan_interfaces: [lan0]\nuplinks:\n  - {{name: a, interface: wan1}}\n  - {{name: b, interface: wan2}}\npolicies:\n{policies}"
            ),
            "t.yaml",
        )
        .unwrap()
    }

    fn pins(n: usize, uplink: impl Fn(usize) -> &'static str) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "  - {{name: h{i}, match: {{source: 10.1.{}.{}}}, uplink: {}}}\n",
                    i / 250,
                    i % 250 + 1,
                    uplink(i)
                )
            })
            .collect()
    }

    #[test]
    fn many_single_host_pins_become_one_set_per_uplink() {
        let c = config(&pins(1000, |i| if i % 2 == 0 { "a" } else { "b" }));
        let (placed, runs) = super::layout(&c, Family::Ipv4);
        assert_eq!(placed, vec![Layout::Run(0)]);
        let names: Vec<&str> = runs[0].groups.iter().map(|g| g.set.as_str()).collect();
        assert_eq!(names, ["multiwan_r0.u1b", "multiwan_r0.u2b"]);
        assert_eq!(runs[0].groups[0].networks.len(), 500);
    }

    #[test]
    fn a_short_run_and_other_policies_stay_rules() {
        let c = config(
            "  - {name: one, match: {source: 10.0.0.50}, uplink: a}\n  - {name: web, match: {protocol: tcp, destination_ports: 443}, uplink: b}\n",
        );
        assert_eq!(
            super::layout(&c, Family::Ipv4).0,
            vec![Layout::Rules(0), Layout::Rules(1)]
        );
    }

    #[test]
    fn first_match_order_is_kept_across_targets() {
        // The subnet (to a) comes first, then a host inside it (to b): a's rule first.
        let mut text = pins(4, |_| "b");
        text.insert_str(
            0,
            "  - {name: net, match: {source: 10.1.0.0/24}, uplink: a}\n",
        );
        let (placed, runs) = super::layout(&config(&text), Family::Ipv4);
        assert_eq!(placed, vec![Layout::Run(0)]);
        assert_eq!(
            runs[0].groups[0].target,
            PinTarget::Uplink {
                name: "a".into(),
                fallback: Fallback::Balance
            }
        );
        // Then a host pinned to a *after* the b hosts of the same subnet: a's rule would
        // have to come both before b's (for the subnet) and after it: a new run starts.
        let mut text = pins(5, |_| "b");
        text.insert_str(
            0,
            "  - {name: net, match: {source: 10.1.0.0/24}, uplink: a}\n",
        );
        text.push_str("  - {name: late, match: {source: 10.1.0.3}, uplink: a}\n");
        text.push_str("  - {name: x, match: {source: 10.9.0.0/16}, uplink: b}\n");
        let (placed, runs) = super::layout(&config(&text), Family::Ipv4);
        assert_eq!(
            placed,
            vec![Layout::Run(0), Layout::Rules(6), Layout::Rules(7)],
            "the late policy starts a run of two, which stays rules"
        );
        assert_eq!(runs[0].groups.len(), 2);
    }

    #[test]
    fn source_and_destination_runs_are_apart_and_fallbacks_have_their_own_sets() {
        let mut text = pins(5, |_| "a");
        text.push_str("  - {name: d1, match: {source: 10.2.0.1}, uplink: a, fallback: drop}\n");
        text.push_str("  - {name: dst, match: {destination: [192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4, 192.0.2.5]}, action: main}\n");
        let (placed, runs) = super::layout(&config(&text), Family::Ipv4);
        assert_eq!(placed, vec![Layout::Run(0), Layout::Run(1)]);
        let names: Vec<&str> = runs[0].groups.iter().map(|g| g.set.as_str()).collect();
        assert_eq!(names, ["multiwan_r0.u1b", "multiwan_r0.u1d"]);
        assert_eq!(runs[1].side, Side::Destination);
        assert_eq!(runs[1].groups[0].set, "multiwan_r6.m");
    }
}
