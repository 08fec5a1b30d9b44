//! Checks `uplinks`: names, interfaces, gateways, weights, tiers, ids, and each uplink's
//! probe settings; ids, names and interfaces must be unique.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_norway::Value;

use super::model::*;
use super::names::{check_interface, check_name};
use super::path::FieldPath;
use super::raw::*;
use super::validate::Checker;
use super::values::Span;

impl Checker<'_> {
    /// Returns the valid uplinks and the names of every uplink written in the file, valid or
    /// not (so a policy naming a broken uplink is not reported a second time).
    pub(super) fn uplinks(
        &mut self,
        top: &BTreeMap<String, Value>,
        marks: &MarkLayout,
    ) -> (Vec<Uplink>, HashSet<String>) {
        let path = FieldPath::root().key("uplinks");
        let items = self.list::<RawUplink>(top, "uplinks");
        if items.is_empty() {
            let msg = if top.contains_key("uplinks") {
                "the list is empty: multiwan needs at least one uplink"
            } else {
                "missing: list the uplinks (name, interface, gateway)"
            };
            self.error(&path, msg);
        }
        let mut declared = HashSet::new();
        let mut out: Vec<(FieldPath, Uplink)> = Vec::new();
        for (i, (p, raw, name)) in items.into_iter().enumerate() {
            if let Some(raw) = raw {
                let u = self.uplink(raw, i, &p, marks);
                out.push((p, u));
            }
            declared.extend(name);
        }
        self.uplink_uniqueness(&out);
        (out.into_iter().map(|(_, u)| u).collect(), declared)
    }

    /// Checks one uplink. The model is returned even when a field is wrong (the config is
    /// refused anyway), so that checks across uplinks still see it.
    pub(super) fn uplink(
        &mut self,
        raw: RawUplink,
        index: usize,
        p: &FieldPath,
        marks: &MarkLayout,
    ) -> Uplink {
        if let Err(e) = check_name(&raw.name, 15) {
            self.error(&p.key("name"), e);
        }
        if let Err(e) = check_interface(&raw.interface) {
            self.error(&p.key("interface"), e);
        }
        let gateway = match raw.gateway.as_deref() {
            None | Some("auto") => Gateway::Auto,
            Some("device") => Gateway::Device,
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) if is_unicast(ip) => Gateway::Static(ip.into()),
                _ => {
                    self.error(
                        &p.key("gateway"),
                        format!("`{text}` is not an IPv4 unicast address, `auto` or `device`"),
                    );
                    Gateway::Auto
                }
            },
        };
        let ipv6 = self.ipv6_side(&raw, p);
        let weight = raw.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            self.error(
                &p.key("weight"),
                format!("{weight} is out of range 1..=1000"),
            );
        }
        let tier = raw.tier.unwrap_or(1);
        if !(1..=16).contains(&tier) {
            self.error(&p.key("tier"), format!("{tier} is out of range 1..=16"));
        }
        let id = raw.id.unwrap_or(index as u32 + 1);
        let max_id = MAX_UPLINK_ID.min(marks.max_id());
        if id == 0 || id > max_id {
            let at = if raw.id.is_some() {
                p.key("id")
            } else {
                p.clone()
            };
            self.error(
                &at,
                format!(
                    "id {id} does not fit: ids go from 1 to {max_id} (mark {:#x} must fit mark_mask {:#x}, and multiwan has 99 rule slots)",
                    marks.uplink(id),
                    marks.mask
                ),
            );
        }
        let probe = self.probe(
            raw.probe.unwrap_or_default(),
            &p.key("probe"),
            ipv6.is_some(),
        );
        self.device_targets(gateway, ipv6.as_ref(), &probe, p);
        Uplink {
            name: raw.name,
            interface: raw.interface,
            gateway,
            ipv6,
            weight,
            tier: tier as u8,
            id,
            id_explicit: raw.id.is_some(),
            probe,
            flush_on_down: raw.flush_on_down.unwrap_or(true),
            flush_on_recovery: raw.flush_on_recovery.unwrap_or(false),
        }
    }

    /// A device uplink has no gateway to probe by default: each family sent to the device
    /// needs probe targets of its own.
    fn device_targets(
        &mut self,
        gateway: Gateway,
        ipv6: Option<&Ipv6Side>,
        probe: &Probe,
        p: &FieldPath,
    ) {
        let sides = [
            (gateway, false, "gateway"),
            (ipv6.map_or(Gateway::Auto, |s| s.gateway), true, "gateway6"),
        ];
        for (g, v6, key) in sides {
            if g == Gateway::Device && !probe.targets.iter().any(|t| t.addr.is_ipv6() == v6) {
                self.error(
                    &p.key(key),
                    format!(
                        "{key}: device has no gateway to probe: list probe targets of the {} family",
                        if v6 { "IPv6" } else { "IPv4" }
                    ),
                );
            }
        }
    }

    pub(super) fn uplink_uniqueness(&mut self, uplinks: &[(FieldPath, Uplink)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut interfaces: HashMap<&str, usize> = HashMap::new();
        let mut ids: HashMap<u32, usize> = HashMap::new();
        for (i, (p, u)) in uplinks.iter().enumerate() {
            if let Some(first) = names.insert(&u.name, i) {
                self.error(
                    &p.key("name"),
                    format!(
                        "uplink name `{}` is already used by {}",
                        u.name, uplinks[first].0
                    ),
                );
            }
            if let Some(first) = interfaces.insert(&u.interface, i) {
                let other = &uplinks[first].1.name;
                self.error(
                    &p.key("interface"),
                    format!(
                        "interface `{}` is already used by uplink {other}",
                        u.interface
                    ),
                );
            }
            if let Some(first) = ids.insert(u.id, i) {
                let other = &uplinks[first].1.name;
                self.error(
                    &p.key("id"),
                    format!("id {} is already used by uplink {other} (ids default to the list position)", u.id),
                );
            }
        }
    }

    /// `gateway6`, `nat6` and `prefix6`: the uplink's IPv6 side, present when `gateway6` is.
    fn ipv6_side(&mut self, raw: &RawUplink, p: &FieldPath) -> Option<Ipv6Side> {
        let Some(text) = raw.gateway6.as_deref() else {
            for (key, given) in [
                ("nat6", raw.nat6.is_some()),
                ("prefix6", raw.prefix6.is_some()),
            ] {
                if given {
                    self.error(
                        &p.key(key),
                        "needs `gateway6` (auto or an address): without it the uplink has no IPv6",
                    );
                }
            }
            return None;
        };
        let gateway = match text {
            "auto" => Gateway::Auto,
            "device" => Gateway::Device,
            t => match t.parse::<std::net::Ipv6Addr>() {
                Ok(ip) if !(ip.is_unspecified() || ip.is_multicast()) => Gateway::Static(ip.into()),
                _ => {
                    self.error(
                        &p.key("gateway6"),
                        format!("`{t}` is not an IPv6 unicast address (fe80::1 is fine), `auto` or `device`"),
                    );
                    Gateway::Auto
                }
            },
        };
        let prefix = raw
            .prefix6
            .as_deref()
            .and_then(|t| match t.parse::<ipnet::Ipv6Net>() {
                Ok(n) if (1..=64).contains(&n.prefix_len()) => Some(n.trunc()),
                _ => {
                    self.error(
                        &p.key("prefix6"),
                        format!("`{t}` is not an IPv6 prefix of /1 to /64, like 2001:db8:1::/56"),
                    );
                    None
                }
            });
        Some(Ipv6Side {
            gateway,
            nat: raw.nat6.unwrap_or_default(),
            prefix,
        })
    }

    pub(super) fn probe(&mut self, raw: RawProbe, p: &FieldPath, ipv6: bool) -> Probe {
        let raw_targets = raw.targets.map(|t| t.0).unwrap_or_default();
        let mut targets = Vec::new();
        for (i, t) in raw_targets.into_iter().enumerate() {
            let at = p.key("targets").index(i);
            if let Some(target) = self.target(t, &at) {
                targets.push(target);
            }
        }
        for (i, t) in targets.iter().map(|t| t.addr).enumerate() {
            if !is_unicast_ip(t) {
                self.error(
                    &p.key("targets").index(i),
                    format!("{t} is not a unicast address"),
                );
            } else if t.is_ipv6() && !ipv6 {
                self.error(
                    &p.key("targets").index(i),
                    format!("{t} is an IPv6 target, but the uplink has no IPv6: give `gateway6`"),
                );
            }
        }
        let (interval, timeout) =
            self.timing(raw.interval, raw.timeout, Duration::from_millis(500), p);
        let standby_interval = raw.standby_interval.map(|s| s.0);
        if let Some(s) = standby_interval
            && (s < interval || s > Duration::from_secs(600))
        {
            self.error(
                &p.key("standby_interval"),
                format!(
                    "{} is out of range: at least `interval` ({}) and at most 10m",
                    Span(s),
                    Span(interval)
                ),
            );
        }
        let quorum = raw.quorum.unwrap_or(1);
        // Each family is judged on its own targets (its gateway when it has none).
        let of = |v6: bool| {
            targets
                .iter()
                .filter(|t| t.addr.is_ipv6() == v6)
                .count()
                .max(1) as u32
        };
        let available = if ipv6 {
            of(false).min(of(true))
        } else {
            of(false)
        };
        if quorum == 0 || quorum > available {
            self.error(
                &p.key("quorum"),
                format!("{quorum} is out of range: at least 1 and at most the number of targets of each family ({available})"),
            );
        }
        let down_after = self.count(raw.down_after, 3, &p.key("down_after"));
        let up_after = self.count(raw.up_after, 5, &p.key("up_after"));
        let degraded = raw.degraded.map(|d| self.degraded(d, &p.key("degraded")));
        Probe {
            targets,
            interval,
            standby_interval,
            timeout,
            quorum,
            down_after,
            up_after,
            degraded,
        }
    }

    /// A check's `interval` (at least 100 ms) and `timeout` (more than 0, at most 60 s).
    pub(super) fn timing(
        &mut self,
        interval: Option<Span>,
        timeout: Option<Span>,
        default_interval: Duration,
        p: &FieldPath,
    ) -> (Duration, Duration) {
        let interval = interval.map_or(default_interval, |s| s.0);
        if interval < Duration::from_millis(100) {
            self.error(
                &p.key("interval"),
                format!("{} is too short: the minimum is 100ms", Span(interval)),
            );
        }
        let timeout = timeout.map_or(Duration::from_secs(1), |s| s.0);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            self.error(
                &p.key("timeout"),
                format!(
                    "{} is out of range: more than 0 and at most 60s",
                    Span(timeout)
                ),
            );
        }
        (interval, timeout)
    }

    pub(super) fn count(&mut self, value: Option<u32>, default: u32, p: &FieldPath) -> u32 {
        let v = value.unwrap_or(default);
        if !(1..=100).contains(&v) {
            self.error(p, format!("{v} is out of range 1..=100"));
        }
        v
    }

    pub(super) fn degraded(&mut self, raw: RawDegraded, p: &FieldPath) -> Degraded {
        if raw.loss.is_none() && raw.latency.is_none() {
            self.error(
                p,
                "give `loss`, `latency` or both: the thresholds above which the uplink is degraded",
            );
        }
        let weight_factor = raw.weight_factor.unwrap_or(0.25);
        if !(weight_factor > 0.0 && weight_factor <= 1.0) {
            self.error(
                &p.key("weight_factor"),
                format!("{weight_factor} is out of range: more than 0 and at most 1"),
            );
        }
        Degraded {
            loss: raw.loss.map(|l| l.0),
            latency: raw.latency.map(|l| l.0),
            weight_factor,
        }
    }
}

pub(super) fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
}

pub(super) fn is_unicast_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => is_unicast(v4),
        std::net::IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}
