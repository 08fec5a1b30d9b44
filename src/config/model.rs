//! The validated configuration: every value checked, every default filled in. Code after
//! `config::parse` can rely on it without checking again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::values::PortRange;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub lan_interfaces: Vec<String>,
    pub uplinks: Vec<Uplink>,
    pub policies: Vec<Policy>,
    pub sets: Vec<DestinationSet>,
    pub masquerade: bool,
    pub when_all_down: WhenAllDown,
    pub marks: MarkLayout,
    pub table_base: u32,
    pub rule_priority_base: u32,
    pub sysctl: SysctlMode,
    pub initial_state: InitialState,
    pub control: Control,
    pub metrics: Option<SocketAddr>,
    pub hooks: Vec<PathBuf>,
    #[serde(with = "duration_ms")]
    pub hook_timeout: Duration,
    pub port_forwards: Vec<PortForward>,
    /// Set when this router is one node of a VRRP pair.
    pub ha: Option<Ha>,
    /// The LAN's IPv6 prefix, which `nat6: npt` maps onto each uplink's prefix.
    pub lan_prefix6: Option<Ipv6Net>,
    /// Which iptables backend holds multiwan's rules.
    pub backend: NetfilterBackend,
    /// The status page, when on.
    pub web: Option<Web>,
}

/// `web`: the read-only status page with history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Web {
    pub listen: SocketAddr,
    /// SHA-256 of the token a client must present (required off loopback).
    #[serde(skip)]
    pub token_sha256: Option<[u8; 32]>,
}

/// This node of a VRRP pair (keepalived) with conntrack sync (conntrackd).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ha {
    pub node: String,
    /// The other router's address on the sync link.
    pub peer: Ipv4Addr,
    pub sync_interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    #[serde(with = "duration_ms")]
    pub advert_interval: Duration,
    #[serde(with = "duration_ms")]
    pub preempt_delay: Duration,
    /// The gateway address of each LAN interface, in `lan_interfaces` order.
    pub lan_addresses: Vec<Ipv4Net>,
    /// The shared public address of each uplink that has one, by uplink name.
    pub uplink_addresses: std::collections::BTreeMap<String, Ipv4Net>,
    /// Where `ha render` writes keepalived.conf and conntrackd.conf.
    pub config_dir: PathBuf,
}

impl Ha {
    /// The rendered conntrackd config, which `ha notify` and `status` also use.
    pub fn conntrackd_config(&self) -> PathBuf {
        self.config_dir.join("conntrackd.conf")
    }

    pub fn keepalived_config(&self) -> PathBuf {
        self.config_dir.join("keepalived.conf")
    }
}

/// A LAN service published on uplinks: DNAT to one live backend per new connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortForward {
    pub name: String,
    pub protocol: Protocol,
    pub ports: PortRange,
    /// Names of the uplinks it is published on.
    pub uplinks: Vec<String>,
    pub backends: Vec<Backend>,
    pub balance: ForwardBalance,
    pub health: Option<BackendCheck>,
    pub hairpin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub address: Ipv4Addr,
    /// None: the public port (the same port, or each port of a range).
    pub port: Option<u16>,
    pub weight: u32,
}

impl Backend {
    /// `10.0.0.11` or `10.0.0.11:8443`, as DNAT and logs write it.
    pub fn target(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.address),
            None => self.address.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardBalance {
    /// Consecutive connections go to the backends in turn (weights are not used).
    #[default]
    RoundRobin,
    /// Each connection picks a backend at random, following the weights exactly.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Tcp,
    None,
}

/// How backends are checked: TCP connect from the router.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendCheck {
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
}

impl Config {
    pub fn uplink(&self, name: &str) -> Option<&Uplink> {
        self.uplinks.iter().find(|u| u.name == name)
    }

    /// The routing table of an uplink.
    pub fn table(&self, uplink: &Uplink) -> u32 {
        self.table_base + uplink.id
    }

    /// For a reload: uplinks without an explicit `id` keep the id (so the mark and table)
    /// they had before, when it is free; established connections then stay on their uplink
    /// even if the list was reordered. Others get the lowest free id.
    pub fn keep_ids_from(&mut self, old: &Config) {
        self.keep_ids(|u| old.uplink(&u.name).map(|o| o.id));
    }

    /// For a restart: the same, from the ids the kernel's tables show per interface
    /// (see `Routing::installed_ids`).
    pub fn keep_installed_ids(&mut self, by_interface: &std::collections::HashMap<String, u32>) {
        self.keep_ids(|u| by_interface.get(&u.interface).copied());
    }

    fn keep_ids(&mut self, previous: impl Fn(&Uplink) -> Option<u32>) {
        let max = MAX_UPLINK_ID.min(self.marks.max_id());
        let mut taken: Vec<u32> = self
            .uplinks
            .iter()
            .filter(|u| u.id_explicit)
            .map(|u| u.id)
            .collect();
        let mut unplaced = Vec::new();
        for (i, u) in self
            .uplinks
            .iter_mut()
            .enumerate()
            .filter(|(_, u)| !u.id_explicit)
        {
            match previous(u) {
                Some(id) if (1..=max).contains(&id) && !taken.contains(&id) => {
                    u.id = id;
                    taken.push(id);
                }
                _ => unplaced.push(i),
            }
        }
        for i in unplaced {
            let id = (1..=max).find(|id| !taken.contains(id));
            if let Some(id) = id {
                self.uplinks[i].id = id;
                taken.push(id);
            }
        }
    }

    /// One line for `check`.
    pub fn summary(&self) -> String {
        let uplinks: Vec<String> = self
            .uplinks
            .iter()
            .map(|u| {
                format!(
                    "{} ({}, weight {}, tier {})",
                    u.name, u.interface, u.weight, u.tier
                )
            })
            .collect();
        format!(
            "{} uplink(s): {}; {} policy(ies); {} set(s); LAN {}",
            self.uplinks.len(),
            uplinks.join(", "),
            self.policies.len(),
            self.sets.len(),
            self.lan_interfaces.join(", ")
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Uplink {
    pub name: String,
    pub interface: String,
    /// The IPv4 gateway.
    pub gateway: Gateway,
    /// The uplink's IPv6 side; None: no IPv6 on this uplink.
    pub ipv6: Option<Ipv6Side>,
    pub weight: u32,
    pub tier: u8,
    pub id: u32,
    /// Whether `id` was written in the file (else it is the list position).
    #[serde(skip)]
    pub id_explicit: bool,
    pub probe: Probe,
    pub flush_on_down: bool,
    pub flush_on_recovery: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gateway {
    /// Learned from the kernel: the main table's default route on the uplink's interface
    /// (for IPv6 normally the router advertisement's, a link-local `fe80::` address; for a
    /// point-to-point device such as ppp0 or wg0 possibly no address: `default dev ppp0`).
    Auto,
    /// No gateway: packets are sent to the (point-to-point) device itself.
    Device,
    /// Of the side's family.
    Static(IpAddr),
}

/// An uplink's IPv6: its gateway and how the LAN's IPv6 traffic is translated on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ipv6Side {
    pub gateway: Gateway,
    pub nat: Nat6,
    /// The prefix the ISP routes to this router (`prefix6`), when given in the file; a
    /// DHCPv6-PD client may hand it over at run time instead.
    pub prefix: Option<Ipv6Net>,
}

/// How LAN IPv6 traffic leaving by an uplink is translated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nat6 {
    /// NAT66 to the uplink's address: works with any addressing.
    #[default]
    Masquerade,
    /// The LAN prefix (`lan_prefix6`) mapped onto the uplink's routed prefix, host bits kept:
    /// each host has a stable address per ISP.
    Npt,
    /// No translation: LAN hosts hold addresses of this ISP's prefix and their traffic from
    /// it leaves by this uplink (no balancing; the hosts' address selection fails over).
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Either family; a family without targets probes that family's gateway.
    pub targets: Vec<ProbeTarget>,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// The slower interval of an uplink that carries nothing (a metered backup), until it
    /// carries traffic or a better tier is no longer healthy.
    #[serde(with = "duration_ms_opt")]
    pub standby_interval: Option<Duration>,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    pub quorum: u32,
    pub down_after: u32,
    pub up_after: u32,
    pub degraded: Option<Degraded>,
}

/// What one probe asks of one host, through the uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeTarget {
    pub addr: IpAddr,
    pub method: ProbeMethod,
}

impl ProbeTarget {
    pub fn icmp(addr: IpAddr) -> Self {
        Self {
            addr,
            method: ProbeMethod::Icmp,
        }
    }
}

/// `1.1.1.1` (ICMP), `tcp 198.51.100.1:443`, `dns 1.1.1.1 example.com`,
/// `http http://198.51.100.1/generate_204`.
impl std::fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = std::net::SocketAddr::new(self.addr, self.method.port());
        match &self.method {
            ProbeMethod::Icmp => write!(f, "{}", self.addr),
            ProbeMethod::Tcp { .. } => write!(f, "tcp {at}"),
            ProbeMethod::Dns { query, .. } => write!(f, "dns {at} {query}"),
            ProbeMethod::Http { host, path, .. } => write!(f, "http http://{host}{path}"),
        }
    }
}

/// How a target is asked. Every method runs through the uplink (its interface, address
/// and mark) under the same deadline and quorum rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum ProbeMethod {
    /// An echo request; answered by an echo reply.
    Icmp,
    /// A TCP connection that is accepted (for ISPs and mobile networks that drop ICMP).
    Tcp { port: u16 },
    /// A DNS query answered (NOERROR or NXDOMAIN).
    Dns { port: u16, query: String },
    /// An HTTP GET answered with `expect` (any 2xx when None). A redirect or a login page
    /// fails it: a captive portal or an exhausted data plan answers ping but carries
    /// nothing.
    Http {
        port: u16,
        /// The Host header (`198.51.100.1` or `[2001:db8::1]`, with `:port` when not 80).
        host: String,
        /// Path and query, starting with `/`.
        path: String,
        expect: Option<u16>,
    },
}

impl ProbeMethod {
    pub fn port(&self) -> u16 {
        match self {
            ProbeMethod::Icmp => 0,
            ProbeMethod::Tcp { port }
            | ProbeMethod::Dns { port, .. }
            | ProbeMethod::Http { port, .. } => *port,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ProbeMethod::Icmp => "icmp",
            ProbeMethod::Tcp { .. } => "tcp",
            ProbeMethod::Dns { .. } => "dns",
            ProbeMethod::Http { .. } => "http",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Degraded {
    /// Loss ratio (0..=1) above which the uplink is degraded.
    pub loss: Option<f64>,
    pub latency: Option<Duration>,
    pub weight_factor: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub name: String,
    pub matcher: Match,
    pub action: PolicyAction,
}

/// A policy with more than this many sources (or destinations) keeps them in an ipset:
/// one rule and a hash lookup instead of one rule per network.
pub const SET_THRESHOLD: usize = 4;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Match {
    pub sources: Vec<IpNet>,
    pub destinations: Vec<IpNet>,
    pub protocol: Protocol,
    pub source_ports: Vec<PortRange>,
    pub destination_ports: Vec<PortRange>,
    pub destination_set: Option<String>,
    /// Set in one address family's view of the config when the policy names networks (or
    /// a set) only of the other family: it matches nothing there.
    #[serde(skip)]
    pub never: bool,
}

impl Match {
    /// How many iptables rules the match expands to: one per source, destination and
    /// multiport part of each port list, multiplied (a list longer than [`SET_THRESHOLD`]
    /// matches through an ipset: one).
    pub fn rule_count(&self) -> usize {
        let listed = |n: usize| if n > SET_THRESHOLD { 1 } else { n.max(1) };
        let ports = |p: &[PortRange]| PortRange::chunks(p).len().max(1);
        listed(self.sources.len())
            .saturating_mul(listed(self.destinations.len()))
            .saturating_mul(ports(&self.source_ports))
            .saturating_mul(ports(&self.destination_ports))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    #[default]
    All,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    Pin {
        uplink: String,
        fallback: Fallback,
    },
    /// Bypass multiwan: the main routing table decides.
    Main,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    Balance,
    Drop,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationSet {
    pub name: String,
    /// Static members (either family): always in the set.
    pub networks: Vec<IpNet>,
    /// Domains whose addresses a resolver adds to the set (with their subdomains).
    pub domains: Vec<String>,
    /// How long an address the resolver added stays (set when `domains` are given).
    #[serde(with = "duration_ms_opt")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllDown {
    /// Treat every uplink as up and balance over all of them (pfSense's "plan B").
    #[default]
    BalanceAll,
    /// New connections get ICMP unreachable.
    Unreachable,
}

/// `netfilter.backend`: the iptables backend multiwan's rules go into. Rules in the other
/// backend are invisible to it, and both run: the firewall's and multiwan's must share one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetfilterBackend {
    /// The backend the host's other rules are in; with none, where multiwan's own rules
    /// are, else what `iptables` itself is.
    #[default]
    Auto,
    /// nf_tables (`iptables-nft`), Debian's default since 10.
    Nft,
    /// The legacy x_tables (`iptables-legacy`), older distributions and some OpenWrt builds.
    Legacy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SysctlMode {
    #[default]
    Warn,
    Manage,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialState {
    #[default]
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub socket: PathBuf,
    pub group: Option<String>,
}

/// Which fwmark bits are ours and how uplink ids map into them. Two values of the field are
/// reserved: all ones means "main table" (bypass), all ones minus one means "unreachable".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarkLayout {
    pub mask: u32,
    pub shift: u32,
}

impl MarkLayout {
    pub fn new(mask: u32) -> Self {
        Self {
            mask,
            shift: mask.trailing_zeros(),
        }
    }

    fn field_max(&self) -> u32 {
        self.mask >> self.shift
    }

    /// The highest uplink id whose mark fits (ids stop two short of the reserved values).
    pub fn max_id(&self) -> u32 {
        self.field_max().saturating_sub(2)
    }

    pub fn uplink(&self, id: u32) -> u32 {
        id << self.shift
    }

    /// Connections decided for the main table (connected networks, `action: main`).
    pub fn main(&self) -> u32 {
        self.mask
    }

    /// Connections refused because every uplink is down (`when_all_down: unreachable`).
    pub fn unreachable(&self) -> u32 {
        (self.field_max() - 1) << self.shift
    }

    /// The uplink id a mark value stands for, if any.
    pub fn id_of(&self, mark: u32) -> Option<u32> {
        let field = (mark & self.mask) >> self.shift;
        (field >= 1 && field <= self.max_id()).then_some(field)
    }
}

/// Highest uplink id: uplink rules use priority offsets 100+id and 200+id inside our range.
pub const MAX_UPLINK_ID: u32 = 99;

pub(crate) mod duration_ms_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }
}

pub(crate) mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_layout_reserves_main_and_unreachable() {
        let m = MarkLayout::new(0xff00);
        assert_eq!(m.shift, 8);
        assert_eq!(m.uplink(1), 0x100);
        assert_eq!(m.main(), 0xff00);
        assert_eq!(m.unreachable(), 0xfe00);
        assert_eq!(m.max_id(), 253);
        assert_eq!(m.id_of(0x0300 | 0x1), Some(3));
        assert_eq!(m.id_of(0xff00), None);
        assert_eq!(m.id_of(0), None);
    }
}

#[cfg(test)]
mod reload_tests {
    #[test]
    fn reload_keeps_implicit_ids_by_name() {
        let old = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1}\n  - {name: b, interface: wan2}\n",
            "old.yaml",
        )
        .unwrap();
        let mut new = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: c, interface: wan3}\n  - {name: b, interface: wan2}\n  - {name: a, interface: wan1}\n",
            "new.yaml",
        )
        .unwrap();
        new.keep_ids_from(&old);
        let ids: Vec<(&str, u32)> = new
            .uplinks
            .iter()
            .map(|u| (u.name.as_str(), u.id))
            .collect();
        assert_eq!(ids, vec![("c", 3), ("b", 2), ("a", 1)]);
    }

    #[test]
    fn restart_keeps_the_installed_ids_by_interface() {
        let mut c = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: b, interface: wan2}\n  - {name: a, interface: wan1}\n  - {name: x, interface: wan9, id: 7}\n  - {name: n, interface: wan4}\n",
            "c.yaml",
        )
        .unwrap();
        // wan2 had id 7, now taken by an explicit id; wan1 had 1; 500 cannot be an id.
        let installed = [("wan1", 1), ("wan2", 7), ("wan4", 500)]
            .into_iter()
            .map(|(i, id)| (i.to_string(), id))
            .collect();
        c.keep_installed_ids(&installed);
        let ids: Vec<(&str, u32)> = c.uplinks.iter().map(|u| (u.name.as_str(), u.id)).collect();
        assert_eq!(ids, vec![("b", 2), ("a", 1), ("x", 7), ("n", 3)]);
    }
}
