//! The desired kernel state for a config and the uplinks' current health: a plain value,
//! built without any I/O. Adapters install it; `explain` reads it.

mod balance;
mod build;
mod family;
pub mod flush;
pub mod forward;
mod mangle;
mod nat;
pub mod pins;
mod render;
pub mod resolver;
pub mod routing;
pub mod rules;
mod sets;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};
use serde::{Serialize, Serializer};

pub use balance::{Balance, Member, cascade};
pub use family::{Family, has_ipv6, view};
pub use render::trim_float as render_weight;
pub use routing::{IpRule, MAIN_TABLE, RouteKind, RoutePlan, RuleAction};
pub use rules::{Chain, Jump, Match, Origin, Rule, TablePlan, Target};
pub use sets::{IpSet, create_line, ipset_restore, kernel_sets_of, learned_set};

use crate::config::{Config, Gateway, InitialState, MarkLayout, Uplink};
use crate::health::Health;

pub const CHAIN_PREROUTING: &str = "MULTIWAN_PREROUTING";
pub const CHAIN_LAN: &str = "MULTIWAN_LAN";
/// Packets of connections already seen: the decision restored from the connection.
pub const CHAIN_RESTORE: &str = "MULTIWAN_RESTORE";
/// The router's own new connections (DNS, NTP, a VPN) are decided like the LAN's.
pub const CHAIN_OUTPUT: &str = "MULTIWAN_OUTPUT";
pub const CHAIN_POLICY: &str = "MULTIWAN_POLICY";
pub const CHAIN_BALANCE: &str = "MULTIWAN_BALANCE";
pub const CHAIN_POSTROUTING: &str = "MULTIWAN_POSTROUTING";
pub const CHAIN_DNAT: &str = "MULTIWAN_DNAT";
/// Refuses new connections when every uplink is down (`when_all_down: unreachable`).
pub const CHAIN_FORWARD: &str = "MULTIWAN_FORWARD";
/// Accepts, in filter INPUT, replies to the router's own connections on its uplinks (the
/// probes' among them), so a firewall reload that drops input for a moment (ufw flushes
/// its chains under an INPUT policy of DROP) does not fail the probes.
pub const CHAIN_INPUT: &str = "MULTIWAN_INPUT";
/// Prefix of each port forward's chain (`MULTIWAN_FWD_<name>`, at most 28 characters).
pub const CHAIN_FORWARD_PREFIX: &str = "MULTIWAN_FWD_";
/// The uplinks' own addresses (hairpin: LAN clients using a public address). A `.` cannot
/// appear in config set names, so these cannot clash with them.
pub const WAN_ADDRESSES_SET: &str = "multiwan_wan.addrs";
/// The networks of the LAN interfaces (hairpin connections are masqueraded on the LAN).
pub const LAN_NETWORKS_SET: &str = "multiwan_lan.nets";
/// Every chain multiwan owns starts with this.
pub const CHAIN_PREFIX: &str = "MULTIWAN_";
/// Every IPv4 ipset multiwan owns starts with this.
pub const SET_PREFIX: &str = Family::Ipv4.set_prefix();
/// Every IPv6 ipset multiwan owns starts with this.
pub const SET_PREFIX6: &str = Family::Ipv6.set_prefix();
/// The set of connected networks, which stay with the main table.
pub const CONNECTED_SET: &str = "multiwan_connected";
/// The IPv6 set of connected (and link-local and multicast) networks.
pub const CONNECTED_SET6: &str = "multiwan6_connected";
/// Sets multiwan keeps for its own rules, not named by the config.
pub const INTERNAL_SETS: [&str; 4] = [
    CONNECTED_SET,
    CONNECTED_SET6,
    WAN_ADDRESSES_SET,
    LAN_NETWORKS_SET,
];

/// Where an uplink's default route sends packets: to a gateway, or into a point-to-point
/// device (PPP, WireGuard, a raw-IP LTE modem) that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NextHop {
    Via(IpAddr),
    Device,
}

/// `100.64.1.1`, or `device` for a device route.
impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Via(ip) => ip.fmt(f),
            NextHop::Device => f.write_str("device"),
        }
    }
}

/// A value learned from the kernel, or a placeholder naming it when planning offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<T> {
    Known(T),
    Unknown(String),
}

impl<T> Resolved<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Resolved::Known(v) => Some(v),
            Resolved::Unknown(_) => None,
        }
    }
}

impl<T: fmt::Display> fmt::Display for Resolved<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::Known(v) => v.fmt(f),
            Resolved::Unknown(what) => write!(f, "<{what}>"),
        }
    }
}

/// Known values serialize as themselves, placeholders as `"<what>"`.
impl<T: Serialize> Serialize for Resolved<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Resolved::Known(v) => v.serialize(s),
            Resolved::Unknown(what) => s.serialize_str(&format!("<{what}>")),
        }
    }
}

/// What the agent knows that the kernel cannot tell it: each family's health of each
/// uplink, the port-forward backends found down, and the IPv6 prefixes DHCPv6-PD clients
/// handed over. The kernel actor plans with it on top of what it reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    pub health: BTreeMap<crate::health::Track, Health>,
    pub backends_down: std::collections::BTreeSet<(String, usize)>,
    pub prefixes: BTreeMap<String, Ipv6Net>,
}

/// What is known about the world when planning: uplink health and what the kernel says.
/// The top level is IPv4; `v6` holds the same for IPv6.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Uplinks not listed have the config's `initial_state`.
    pub health: BTreeMap<String, Health>,
    /// The address of each uplink, by uplink name (IPv6: its global address).
    pub addresses: BTreeMap<String, IpAddr>,
    /// Next hops learned for uplinks with `gateway: auto`, by uplink name.
    pub gateways: BTreeMap<String, NextHop>,
    /// The peer address of a point-to-point uplink (PPP), by uplink name: what is probed
    /// when nothing else is given.
    pub peers: BTreeMap<String, IpAddr>,
    /// Connected and local networks; None when planning offline.
    pub connected: Option<Vec<IpNet>>,
    /// Networks on the LAN interfaces; None when planning offline.
    pub lan_networks: Option<Vec<IpNet>>,
    /// Port-forward backends found down: (forward name, backend index).
    pub backends_down: std::collections::BTreeSet<(String, usize)>,
    /// IPv6: the prefixes a DHCPv6-PD client handed over (`multiwan ipv6 prefix`), by
    /// uplink name; they override `prefix6`.
    pub prefixes: BTreeMap<String, Ipv6Net>,
    /// The same facts for IPv6 (None: nothing known; planning treats it as empty).
    pub v6: Option<Box<Observed>>,
}

impl Observed {
    /// The uplink's gateway: the configured one, or the one learned from the kernel. The
    /// one place that decides it (the plan's routes and the probes' default target). In a
    /// family's view of the config, `u.gateway` is that family's.
    pub fn gateway(&self, u: &Uplink) -> Option<NextHop> {
        match u.gateway {
            Gateway::Static(ip) => Some(NextHop::Via(ip)),
            Gateway::Device => Some(NextHop::Device),
            Gateway::Auto => self.gateways.get(&u.name).copied(),
        }
    }

    /// Whether the kernel can route through the uplink: its address and next hop are known
    /// (an uplink that cannot be routed must never be balanced onto). Planning offline,
    /// everything is assumed present.
    pub fn routable(&self, u: &Uplink) -> bool {
        self.connected.is_none()
            || (self.addresses.contains_key(&u.name) && self.gateway(u).is_some())
    }

    /// [`Observed::routable`] for one family of an uplink, asked of the top level facts.
    pub fn family_routable(&self, u: &Uplink, family: Family) -> bool {
        let seen = self.of(family);
        seen.connected.is_none()
            || (seen.addresses.contains_key(&u.name) && self.family_gateway(u, family).is_some())
    }

    /// What to probe when a family of an uplink lists no targets: its gateway, or the peer
    /// of a point-to-point device.
    pub fn default_target(&self, u: &Uplink) -> Option<IpAddr> {
        match self.gateway(u)? {
            NextHop::Via(ip) => Some(ip),
            NextHop::Device => self.peers.get(&u.name).copied(),
        }
    }

    /// The gateway of one family of an uplink, asked of the top level (IPv4) facts: the
    /// config's for that family, or the one learned in that family.
    pub fn family_gateway(&self, u: &Uplink, family: Family) -> Option<NextHop> {
        let spec = match family {
            Family::Ipv4 => u.gateway,
            Family::Ipv6 => u.ipv6.as_ref()?.gateway,
        };
        match spec {
            Gateway::Static(ip) => Some(NextHop::Via(ip)),
            Gateway::Device => Some(NextHop::Device),
            Gateway::Auto => self.of(family).gateways.get(&u.name).copied(),
        }
    }

    pub fn resolved_gateway(&self, u: &Uplink) -> Resolved<NextHop> {
        match self.gateway(u) {
            Some(ip) => Resolved::Known(ip),
            None => Resolved::Unknown(format!("gateway of {}", u.interface)),
        }
    }

    pub fn address(&self, u: &Uplink) -> Resolved<IpAddr> {
        match self.addresses.get(&u.name) {
            Some(a) => Resolved::Known(*a),
            None => Resolved::Unknown(format!("address of {}", u.interface)),
        }
    }

    pub fn health_of(&self, config: &Config, uplink: &Uplink) -> Health {
        self.health
            .get(&uplink.name)
            .copied()
            .unwrap_or(match config.initial_state {
                InitialState::Up => Health::Up,
                InitialState::Down => Health::Down,
            })
    }

    /// The facts of one family (IPv6 may be unknown: then empty).
    pub fn of(&self, family: Family) -> std::borrow::Cow<'_, Observed> {
        match (family, &self.v6) {
            (Family::Ipv4, _) => std::borrow::Cow::Borrowed(self),
            (Family::Ipv6, Some(v6)) => std::borrow::Cow::Borrowed(v6),
            (Family::Ipv6, None) => std::borrow::Cow::Owned(Observed::default()),
        }
    }

    /// Takes what the agent judged (see [`Judged`]).
    pub fn adopt(&mut self, judged: &Judged) {
        self.set_health(&judged.health);
        self.backends_down = judged.backends_down.clone();
        if !judged.prefixes.is_empty() || self.v6.is_some() {
            self.v6_mut().prefixes = judged.prefixes.clone();
        }
    }

    /// Sets the health of every family from one map (IPv6 entries go into `v6`).
    pub fn set_health(&mut self, health: &BTreeMap<crate::health::Track, Health>) {
        let of = |f: Family| -> BTreeMap<String, Health> {
            health
                .iter()
                .filter(|(t, _)| t.family == f)
                .map(|(t, h)| (t.uplink.clone(), *h))
                .collect()
        };
        self.health = of(Family::Ipv4);
        let v6 = of(Family::Ipv6);
        if !v6.is_empty() || self.v6.is_some() {
            self.v6_mut().health = v6;
        }
    }

    /// The IPv6 facts, created empty when missing (for the agent and the kernel reader).
    pub fn v6_mut(&mut self) -> &mut Observed {
        self.v6.get_or_insert_with(Box::default)
    }

    /// The routed prefix of an uplink's IPv6 side: handed over at run time, else the
    /// config's `prefix6`.
    pub fn prefix6(&self, u: &Uplink) -> Option<Ipv6Net> {
        self.prefixes
            .get(&u.name)
            .copied()
            .or_else(|| u.ipv6.as_ref().and_then(|s| s.prefix))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UplinkPlan {
    pub name: String,
    pub interface: String,
    pub id: u32,
    pub mark: u32,
    pub table: u32,
    pub tier: u8,
    /// The health observed.
    pub health: Health,
    pub weight: u32,
    /// Weight after tiers, degradation and failover (0 when it carries no balanced traffic).
    pub effective_weight: f64,
    /// Fraction of balanced new connections it receives.
    pub share: f64,
    pub address: Resolved<IpAddr>,
    pub gateway: Resolved<NextHop>,
    /// The kernel can route through it (interface, address and next hop present); when
    /// not, it carries nothing whatever its probes say.
    pub routable: bool,
}

/// What a policy does under the current health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Pinned to its uplink, which is usable.
    Pinned { uplink: String },
    /// Its uplink is down: matching connections are balanced instead.
    FallbackBalance { uplink: String },
    /// Its uplink is down: matching connections are dropped.
    FallbackDrop { uplink: String },
    /// Bypasses multiwan: the main routing table decides.
    Main,
}

/// The one text form of a decision, for `plan`, `explain` and `status`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Pinned { uplink } => write!(f, "pinned to {uplink}"),
            Decision::FallbackBalance { uplink } => write!(f, "{uplink} is down: balanced instead"),
            Decision::FallbackDrop { uplink } => write!(f, "{uplink} is down: dropped"),
            Decision::Main => f.write_str("bypasses multiwan (main table)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyPlan {
    pub name: String,
    pub decision: Decision,
}

/// Everything multiwan wants in the kernel for one config and one health state. The top
/// level is IPv4; `v6` is the IPv6 plan when the config has IPv6 (same builders, same
/// marks, rule priorities and table numbers, in the other family's tables).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub family: Family,
    pub marks: MarkLayout,
    /// True when no uplink is up and `when_all_down` decided what happens.
    pub all_down: bool,
    pub uplinks: Vec<UplinkPlan>,
    pub balance: Balance,
    pub policies: Vec<PolicyPlan>,
    pub mangle: TablePlan,
    pub nat: TablePlan,
    /// Empty unless `when_all_down: unreachable`.
    pub filter: TablePlan,
    pub jumps: Vec<Jump>,
    pub ip_rules: Vec<IpRule>,
    pub routes: Vec<RoutePlan>,
    pub sets: Vec<IpSet>,
    pub forwards: Vec<ForwardPlan>,
    /// Runs of pins matched through sets (see [`pins`]).
    pub pins: Vec<pins::PinRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v6: Option<Box<Plan>>,
}

/// Which backends of a port forward receive new connections now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardPlan {
    pub name: String,
    /// Indexes (into the config's backends) of the backends in rotation.
    pub live: Vec<usize>,
    /// Every backend is down: all are kept (a dead service beats a black-holed one).
    pub all_down: bool,
}

impl Plan {
    pub fn build(config: &Config, observed: &Observed) -> Plan {
        build::build(config, observed)
    }

    pub fn uplink(&self, name: &str) -> Option<&UplinkPlan> {
        self.uplinks.iter().find(|u| u.name == name)
    }

    /// The plan of each family: this one (IPv4), then IPv6 when there is one.
    pub fn families(&self) -> Vec<&Plan> {
        std::iter::once(self).chain(self.v6.as_deref()).collect()
    }

    /// The plan of one family, if planned.
    pub fn of(&self, family: Family) -> Option<&Plan> {
        self.families().into_iter().find(|p| p.family == family)
    }

    /// This family's tables as one `iptables-restore --noflush` input.
    pub fn iptables_restore(&self) -> String {
        self.tables()
            .iter()
            .filter(|t| !t.chains.is_empty())
            .map(|t| t.restore_text())
            .collect()
    }

    /// This family's iptables tables, in the order they are applied.
    pub fn tables(&self) -> [&TablePlan; 3] {
        [&self.mangle, &self.nat, &self.filter]
    }

    /// Every family's sets as `ipset restore` input (placeholders become comments).
    pub fn ipset_restore(&self) -> String {
        self.families()
            .iter()
            .map(|p| sets::ipset_restore(&p.sets))
            .collect()
    }

    /// Every family's sets.
    pub fn all_sets(&self) -> Vec<&IpSet> {
        self.families().iter().flat_map(|p| &p.sets).collect()
    }

    /// The whole plan for a person.
    pub fn human(&self) -> String {
        render::human(self)
    }

    /// New connections marked per uplink: the packet counters (by chain, in rule order) of
    /// the policy and balance rules that set each uplink's mark. Such a rule only sees a
    /// connection's first packet. A chain whose counters do not line up with its planned
    /// rules (it is being replaced) is left out.
    /// New connections each policy matched, by policy index, from the counters of the
    /// rules it owns in this family's policy chain (a policy kept as set members, a pin,
    /// has none of its own: it is absent).
    pub fn hits_by_policy(
        &self,
        counters: &BTreeMap<(Family, String), Vec<u64>>,
    ) -> BTreeMap<usize, u64> {
        let mut out = BTreeMap::new();
        let Some(chain) = self.mangle.chains.iter().find(|c| c.name == CHAIN_POLICY) else {
            return out;
        };
        let Some(packets) = counters
            .get(&(self.family, chain.name.clone()))
            .filter(|p| p.len() == chain.rules.len())
        else {
            return out;
        };
        for (rule, n) in chain.rules.iter().zip(packets) {
            let decides = !matches!(rule.target, Target::Jump(_) | Target::Return);
            if let (Origin::Policy(i), true) = (rule.origin, decides) {
                *out.entry(i).or_default() += n;
            }
        }
        out
    }

    pub fn marked_by_uplink(
        &self,
        counters: &BTreeMap<(Family, String), Vec<u64>>,
    ) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> =
            self.uplinks.iter().map(|u| (u.name.clone(), 0)).collect();
        let marking = [CHAIN_POLICY, CHAIN_BALANCE];
        for chain in self
            .mangle
            .chains
            .iter()
            .filter(|c| marking.contains(&c.name.as_str()))
        {
            let Some(packets) = counters
                .get(&(self.family, chain.name.clone()))
                .filter(|p| p.len() == chain.rules.len())
            else {
                continue;
            };
            for (rule, n) in chain.rules.iter().zip(packets) {
                let Target::SetMark { value, .. } = rule.target else {
                    continue;
                };
                if let Some(u) = self.uplinks.iter().find(|u| u.mark == value) {
                    *out.entry(u.name.clone()).or_default() += n;
                }
            }
        }
        out
    }
}
