//! Checks `ha`: this node of a VRRP pair. The shared addresses must belong to the LAN
//! interfaces and uplinks the file declares, and keepalived's own limits hold.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_norway::Value;

use super::model::{Config, Ha, Uplink};
use super::names::{check_interface, check_name};
use super::path::FieldPath;
use super::raw::RawHa;
use super::uplinks::is_unicast;
use super::validate::Checker;
use super::values::Span;

/// Where `ha render` writes unless `ha.config_dir` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/multiwan/ha";

impl Checker<'_> {
    pub(super) fn ha(
        &mut self,
        top: &BTreeMap<String, Value>,
        lan_interfaces: &[String],
        uplinks: &[Uplink],
    ) -> Option<Ha> {
        let value = top.get("ha")?;
        let p = FieldPath::root().key("ha");
        if value.is_null() {
            self.error(&p, "is empty: remove it, or describe this node (node, peer, sync_interface, virtual_router_id, lan_addresses)");
            return None;
        }
        let raw: RawHa = self.typed(value, &p)?;
        let node = self.required(raw.node, &p, "node", "this router's name, like r1");
        if let Some(n) = &node
            && let Err(e) = check_name(n, 15)
        {
            self.error(&p.key("node"), e);
        }
        let peer = self.required(
            raw.peer,
            &p,
            "peer",
            "the other router's address on the sync link",
        );
        if let Some(ip) = peer
            && !is_unicast(ip)
        {
            self.error(&p.key("peer"), format!("{ip} is not a unicast address"));
        }
        let sync = self.sync_interface(raw.sync_interface, &p, lan_interfaces, uplinks);
        let vrid = self.required(
            raw.virtual_router_id,
            &p,
            "virtual_router_id",
            "1 to 255, the same on both nodes",
        );
        if let Some(v) = vrid
            && !(1..=255).contains(&v)
        {
            self.error(
                &p.key("virtual_router_id"),
                format!("{v} is out of range 1..=255"),
            );
        }
        let priority = raw.priority.unwrap_or(100);
        if !(1..=254).contains(&priority) {
            self.error(
                &p.key("priority"),
                format!(
                    "{priority} is out of range 1..=254 (255 is reserved for an address owner)"
                ),
            );
        }
        let advert = self.advert_interval(raw.advert_interval, &p);
        let preempt = raw.preempt_delay.map_or(Duration::from_secs(30), |s| s.0);
        if preempt.subsec_nanos() != 0 {
            self.error(
                &p.key("preempt_delay"),
                format!("{} must be whole seconds, like 30s", Span(preempt)),
            );
        } else if preempt > Duration::from_secs(1000) {
            self.error(
                &p.key("preempt_delay"),
                format!(
                    "{} is too long: keepalived allows at most 1000s",
                    Span(preempt)
                ),
            );
        }
        let lan_addresses = self.lan_addresses(raw.lan_addresses.map(|l| l.0), &p, lan_interfaces);
        let uplink_addresses =
            self.uplink_addresses(raw.uplink_addresses.unwrap_or_default(), &p, uplinks);
        self.distinct_addresses(&lan_addresses, &uplink_addresses, &p);
        let config_dir = raw
            .config_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR));
        if !config_dir.is_absolute() {
            self.error(
                &p.key("config_dir"),
                format!("`{}` must be an absolute path", config_dir.display()),
            );
        }
        Some(Ha {
            node: node?,
            peer: peer?,
            sync_interface: sync?,
            virtual_router_id: u8::try_from(vrid?).ok()?,
            priority: u8::try_from(priority).ok()?,
            advert_interval: advert,
            preempt_delay: preempt,
            lan_addresses,
            uplink_addresses,
            config_dir,
        })
    }

    fn required<T>(&mut self, value: Option<T>, p: &FieldPath, key: &str, what: &str) -> Option<T> {
        if value.is_none() && !self.reported(&p.key(key)) {
            self.error(p, format!("missing `{key}`: {what}"));
        }
        value
    }

    fn sync_interface(
        &mut self,
        name: Option<String>,
        p: &FieldPath,
        lan_interfaces: &[String],
        uplinks: &[Uplink],
    ) -> Option<String> {
        let name = self.required(
            name,
            p,
            "sync_interface",
            "the dedicated link to the peer, for VRRP and conntrack sync",
        )?;
        let at = p.key("sync_interface");
        if let Err(e) = check_interface(&name) {
            self.error(&at, e);
        } else if lan_interfaces.contains(&name) {
            self.error(
                &at,
                format!("`{name}` is a LAN interface: the sync link must be a dedicated one"),
            );
        } else if let Some(u) = uplinks.iter().find(|u| u.interface == name) {
            self.error(
                &at,
                format!(
                    "`{name}` is the interface of uplink {}: the sync link must be a dedicated one",
                    u.name
                ),
            );
        }
        Some(name)
    }

    /// VRRPv3 counts in centiseconds; keepalived accepts 10 ms to 40.95 s.
    fn advert_interval(&mut self, value: Option<Span>, p: &FieldPath) -> Duration {
        let d = value.map_or(Duration::from_secs(1), |s| s.0);
        let ms = d.as_millis();
        if !(50..=40_950).contains(&ms) || !ms.is_multiple_of(10) {
            self.error(&p.key("advert_interval"), format!("{} is out of range: 50ms to 40.95s, in steps of 10ms (VRRPv3 counts centiseconds)", Span(d)));
        }
        d
    }

    fn lan_addresses(
        &mut self,
        list: Option<Vec<super::values::IfAddr>>,
        p: &FieldPath,
        lan_interfaces: &[String],
    ) -> Vec<Ipv4Net> {
        let at = p.key("lan_addresses");
        let Some(list) = list else {
            self.required::<()>(
                None,
                p,
                "lan_addresses",
                "the gateway address LAN hosts use, one per LAN interface, like [10.50.0.1/24]",
            );
            return Vec::new();
        };
        if list.len() != lan_interfaces.len() {
            self.error(
                &at,
                format!(
                    "{} addresses for {} LAN interfaces ({}): give one gateway address per LAN interface, in the same order",
                    list.len(),
                    lan_interfaces.len(),
                    lan_interfaces.join(", ")
                ),
            );
        }
        list.into_iter().map(|a| a.0).collect()
    }

    fn uplink_addresses(
        &mut self,
        map: BTreeMap<String, super::values::IfAddr>,
        p: &FieldPath,
        uplinks: &[Uplink],
    ) -> BTreeMap<String, Ipv4Net> {
        let at = p.key("uplink_addresses");
        let mut out = BTreeMap::new();
        for (name, addr) in map {
            if uplinks.iter().any(|u| u.name == name) {
                out.insert(name, addr.0);
            } else {
                let known: Vec<&str> = uplinks.iter().map(|u| u.name.as_str()).collect();
                self.error(
                    &at.key(&name),
                    format!("`{name}` is not an uplink (uplinks: {})", known.join(", ")),
                );
            }
        }
        out
    }

    fn distinct_addresses(
        &mut self,
        lan: &[Ipv4Net],
        uplinks: &BTreeMap<String, Ipv4Net>,
        p: &FieldPath,
    ) {
        let mut seen: HashSet<Ipv4Addr> = HashSet::new();
        for (i, a) in lan.iter().enumerate() {
            if !seen.insert(a.addr()) {
                self.error(
                    &p.key("lan_addresses").index(i),
                    format!("{} is listed twice", a.addr()),
                );
            }
        }
        for (name, a) in uplinks {
            if !seen.insert(a.addr()) {
                self.error(
                    &p.key("uplink_addresses").key(name),
                    format!("{} is already a shared address", a.addr()),
                );
            }
        }
    }
}

impl Config {
    /// Things that are allowed but that an admin should know: printed by `check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(addr) = self.metrics.filter(|a| !a.ip().is_loopback()) {
            out.push(format!(
                "metrics: {addr} is not a loopback address: anyone who can reach it reads the \
                 router's uplinks, addresses and traffic counts over plain HTTP (bind to \
                 127.0.0.1 and scrape through a tunnel or a reverse proxy with TLS)"
            ));
        }
        if let Some(web) = self.web.as_ref().filter(|w| !w.listen.ip().is_loopback()) {
            out.push(format!(
                "web: the page on {} is plain HTTP: its token and everything it shows cross the \
                 network in clear (reach it through a VPN or an SSH tunnel, or put a reverse \
                 proxy with TLS in front)",
                web.listen
            ));
        }
        out.extend(self.ha_warnings());
        out
    }

    fn ha_warnings(&self) -> Vec<String> {
        let Some(ha) = &self.ha else {
            return Vec::new();
        };
        self.uplinks
            .iter()
            .filter(|u| !ha.uplink_addresses.contains_key(&u.name))
            .map(|u| {
                format!(
                    "ha.uplink_addresses: uplink {} has no shared address, so its connections are \
                     masqueraded to each router's own address and do not survive a router failover \
                     (a DHCP or PPPoE line with a single public address cannot be shared)",
                    u.name
                )
            })
            .collect()
    }
}
