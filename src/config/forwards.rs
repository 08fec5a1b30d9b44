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
            self.check_overlap(&out, &f, &p);
            out.push((p, f));
        }
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

    fn check_overlap(
        &mut self,
        earlier: &[(FieldPath, PortForward)],
        f: &PortForward,
        p: &FieldPath,
    ) {
        for (ep, e) in earlier {
            let ports_overlap = e.ports.first <= f.ports.last && f.ports.first <= e.ports.last;
            let shared: Vec<&String> = f.uplinks.iter().filter(|u| e.uplinks.contains(u)).collect();
            if e.protocol == f.protocol && ports_overlap && !shared.is_empty() {
                self.error(
                    &p.key("port"),
                    format!(
                        "{} {} on {} is already forwarded by `{}` ({ep})",
                        f.protocol.name(),
                        f.ports,
                        shared
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        e.name
                    ),
                );
            }
        }
    }
}
