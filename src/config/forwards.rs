//! Checks `port_forwards`: addresses, ports, uplinks, weights, health checks, and that no
//! two forwards claim the same protocol and port on the same uplink.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_norway::Value;

use super::model::*;
use super::names::check_name;
use super::path::FieldPath;
use super::raw::{RawBackend, RawForward, RawHealthCheck};
use super::validate::Checker;
use super::values::PortRange;

impl Checker<'_> {
    pub(super) fn port_forwards(
        &mut self,
        top: &BTreeMap<String, Value>,
        uplinks: &[Uplink],
    ) -> Vec<PortForward> {
        let items = self.list::<RawForward>(top, "port_forwards");
        let mut names = HashSet::new();
        let mut out: Vec<(FieldPath, PortForward)> = Vec::new();
        for (p, raw, _) in items {
            let Some(raw) = raw else { continue };
            if let Err(e) = check_name(&raw.name, 15) {
                self.error(&p.key("name"), e);
            } else if !names.insert(raw.name.clone()) {
                self.error(
                    &p.key("name"),
                    format!("port forward name `{}` is used twice", raw.name),
                );
            }
            let protocol = match raw.protocol {
                Some(pr) if pr.has_ports() => pr,
                Some(pr) => {
                    self.error(
                        &p.key("protocol"),
                        format!("`{}`: a port forward is tcp or udp", pr.name()),
                    );
                    Protocol::Tcp
                }
                None => {
                    if !self.reported(&p.key("protocol")) {
                        self.error(&p, "missing `protocol` (tcp or udp)");
                    }
                    Protocol::Tcp
                }
            };
            let ports = raw.port.unwrap_or_else(|| {
                if !self.reported(&p.key("port")) {
                    self.error(&p, "missing `port` (a port or a range like 8000-8010)");
                }
                PortRange { first: 1, last: 1 }
            });
            let forward_uplinks = self.forward_uplinks(&raw, &p, uplinks);
            let backends = self.backends(&raw, ports, &p);
            let health = self.backend_check(raw.health_check, protocol, &p.key("health_check"));
            let f = PortForward {
                name: raw.name,
                protocol,
                ports,
                uplinks: forward_uplinks,
                backends,
                balance: raw.balance.unwrap_or_default(),
                health,
                hairpin: raw.hairpin.unwrap_or(true),
            };
            out.push((p, f));
        }
        self.forward_clashes(&out);
        out.into_iter().map(|(_, f)| f).collect()
    }

    fn forward_uplinks(
        &mut self,
        raw: &RawForward,
        p: &FieldPath,
        uplinks: &[Uplink],
    ) -> Vec<String> {
        let Some(names) = &raw.uplinks else {
            return uplinks.iter().map(|u| u.name.clone()).collect();
        };
        for (i, n) in names.0.iter().enumerate() {
            if !uplinks.iter().any(|u| &u.name == n) {
                let known: Vec<&str> = uplinks.iter().map(|u| u.name.as_str()).collect();
                self.error(
                    &p.key("uplinks").index(i),
                    format!(
                        "there is no uplink named `{n}` (uplinks: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        if names.0.is_empty() {
            self.error(
                &p.key("uplinks"),
                "list at least one uplink, or leave it out for every uplink",
            );
        }
        names.0.clone()
    }

    fn backends(&mut self, raw: &RawForward, public: PortRange, p: &FieldPath) -> Vec<Backend> {
        let to = p.key("to");
        let items = raw.to.as_ref().map(|t| t.0.clone()).unwrap_or_default();
        if items.is_empty() {
            self.error(&to, "give at least one backend address");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(b) = self.typed::<RawBackend>(item, &to.index(i)) else {
                continue;
            };
            if b.address.is_unspecified() || b.address.is_multicast() || b.address.is_broadcast() {
                self.error(
                    &to.index(i),
                    format!("{} is not a unicast address", b.address),
                );
            }
            let port = match b.port {
                Some(r) if r.first != r.last => {
                    self.error(
                        &to.index(i).key("port"),
                        "a backend port is one port, not a range",
                    );
                    None
                }
                Some(_) if public.first != public.last => {
                    self.error(&to.index(i).key("port"), "with a public port range, backends keep each connection's port: leave `port` out");
                    None
                }
                r => r.map(|r| r.first),
            };
            let weight = b.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                self.error(
                    &to.index(i).key("weight"),
                    format!("{weight} is out of range 1..=1000"),
                );
            }
            out.push(Backend {
                address: b.address,
                port,
                weight,
            });
        }
        out
    }

    fn backend_check(
        &mut self,
        raw: Option<RawHealthCheck>,
        protocol: Protocol,
        p: &FieldPath,
    ) -> Option<BackendCheck> {
        let default_kind = if protocol == Protocol::Tcp {
            CheckKind::Tcp
        } else {
            CheckKind::None
        };
        let given = raw.is_some();
        let raw = raw.unwrap_or_default();
        let kind = raw.kind.unwrap_or(default_kind);
        if kind == CheckKind::Tcp && protocol != Protocol::Tcp {
            self.error(
                &p.key("kind"),
                "a tcp check needs `protocol: tcp`; use `kind: none` for udp",
            );
        }
        let (interval, timeout) = self.timing(raw.interval, raw.timeout, Duration::from_secs(2), p);
        let down_after = self.count(raw.down_after, 2, &p.key("down_after"));
        let up_after = self.count(raw.up_after, 2, &p.key("up_after"));
        if kind == CheckKind::None && given && (raw.interval.is_some() || raw.timeout.is_some()) {
            self.error(p, "`kind: none` takes no interval or timeout");
        }
        (kind == CheckKind::Tcp).then_some(BackendCheck {
            interval,
            timeout,
            down_after,
            up_after,
        })
    }

    /// Two forwards may not claim the same protocol and port on the same uplink. Found by
    /// sorting each (protocol, uplink)'s port ranges and sweeping them once, O(n log n); one
    /// error per group of forwards that overlap, however many there are.
    fn forward_clashes(&mut self, forwards: &[(FieldPath, PortForward)]) {
        let mut lanes: BTreeMap<(Protocol, &str), Vec<(PortRange, usize)>> = BTreeMap::new();
        for (i, (p, f)) in forwards.iter().enumerate() {
            if self.reported(&p.key("port")) || self.reported(p) {
                continue;
            }
            for u in &f.uplinks {
                lanes.entry((f.protocol, u)).or_default().push((f.ports, i));
            }
        }
        // Each group of overlapping forwards, with the uplinks it clashes on.
        let mut groups: BTreeMap<Vec<usize>, Vec<&str>> = BTreeMap::new();
        for ((_, uplink), mut ranges) in lanes {
            ranges.sort();
            let mut group: Vec<usize> = Vec::new();
            let mut reach = 0u16;
            for (r, i) in ranges {
                if !group.is_empty() && r.first > reach {
                    if group.len() > 1 {
                        groups
                            .entry(std::mem::take(&mut group))
                            .or_default()
                            .push(uplink);
                    }
                    group.clear();
                }
                reach = if group.is_empty() {
                    r.last
                } else {
                    reach.max(r.last)
                };
                group.push(i);
            }
            if group.len() > 1 {
                groups.entry(group).or_default().push(uplink);
            }
        }
        for (mut members, uplinks) in groups {
            members.sort_unstable();
            let names: Vec<String> = members
                .iter()
                .take(3)
                .map(|i| format!("`{}` ({})", forwards[*i].1.name, forwards[*i].0))
                .collect();
            let more = members.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let (p, f) = &forwards[members[1]];
            self.error(
                &p.key("port"),
                format!(
                    "{} forwards claim overlapping {} ports on {}: {}{more}",
                    members.len(),
                    f.protocol.name(),
                    uplinks.join(", "),
                    names.join(", ")
                ),
            );
        }
    }
}
