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
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Serialize, Serializer};

pub use balance::{Balance, Member, cascade};
pub use family::Family;
pub use render::trim_float as render_weight;
pub use routing::{IpRule, MAIN_TABLE, RouteKind, RoutePlan, RuleAction};
pub use rules::{Chain, Jump, Match, Origin, Rule, TablePlan, Target};
pub use sets::{IpSet, ipset_restore, kernel_sets_of, learned_set};

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
/// Prefix of each port forward's chain (`MULTIWAN_FWD_<name>`, at most 28 characters).
pub const CHAIN_FORWARD_PREFIX: &str = "MULTIWAN_FWD_";
/// The uplinks' own addresses (hairpin: LAN clients using a public address). A `.` cannot
/// appear in config set names, so these cannot clash with them.
pub const WAN_ADDRESSES_SET: &str = "multiwan_wan.addrs";
/// The networks of the LAN interfaces (hairpin connections are masqueraded on the LAN).
pub const LAN_NETWORKS_SET: &str = "multiwan_lan.nets";
/// Every chain multiwan owns starts with this.
pub const CHAIN_PREFIX: &str = "MULTIWAN_";
/// Every ipset multiwan owns starts with this.
pub const SET_PREFIX: &str = "multiwan_";
/// The set of connected networks, which stay with the main table.
pub const CONNECTED_SET: &str = "multiwan_connected";
/// Sets multiwan keeps for its own rules, not named by the config.
pub const INTERNAL_SETS: [&str; 3] = [CONNECTED_SET, WAN_ADDRESSES_SET, LAN_NETWORKS_SET];

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

/// What is known about the world when planning: uplink health and what the kernel says.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Uplinks not listed have the config's `initial_state`.
    pub health: BTreeMap<String, Health>,
    /// The IPv4 address of each uplink, by uplink name.
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// Gateways learned for uplinks with `gateway: auto`, by uplink name.
    pub gateways: BTreeMap<String, Ipv4Addr>,
    /// Connected and local networks; None when planning offline.
    pub connected: Option<Vec<Ipv4Net>>,
    /// Networks on the LAN interfaces; None when planning offline.
    pub lan_networks: Option<Vec<Ipv4Net>>,
    /// Port-forward backends found down: (forward name, backend index).
    pub backends_down: std::collections::BTreeSet<(String, usize)>,
}

impl Observed {
    /// The uplink's gateway: the configured one, or the one learned from the kernel. The
    /// one place that decides it (the plan's routes and the probes' default target).
    pub fn gateway(&self, u: &Uplink) -> Option<Ipv4Addr> {
        match u.gateway {
            Gateway::Static(ip) => Some(ip),
            Gateway::Auto => self.gateways.get(&u.name).copied(),
        }
    }

    pub fn resolved_gateway(&self, u: &Uplink) -> Resolved<Ipv4Addr> {
        match self.gateway(u) {
            Some(ip) => Resolved::Known(ip),
            None => Resolved::Unknown(format!("gateway of {}", u.interface)),
        }
    }

    pub fn address(&self, u: &Uplink) -> Resolved<Ipv4Addr> {
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
    pub address: Resolved<Ipv4Addr>,
    pub gateway: Resolved<Ipv4Addr>,
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

/// Everything multiwan wants in the kernel for one config and one health state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
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

    /// Both tables as one `iptables-restore --noflush` input.
    pub fn iptables_restore(&self) -> String {
        self.tables()
            .iter()
            .filter(|t| !t.chains.is_empty())
            .map(|t| t.restore_text())
            .collect()
    }

    /// The iptables tables multiwan manages, in the order they are applied.
    pub fn tables(&self) -> [&TablePlan; 3] {
        [&self.mangle, &self.nat, &self.filter]
    }

    /// The sets as `ipset restore` input (placeholders become comments).
    pub fn ipset_restore(&self) -> String {
        sets::ipset_restore(&self.sets)
    }

    /// The whole plan for a person.
    pub fn human(&self) -> String {
        render::human(self)
    }

    /// New connections marked per uplink: the packet counters (by chain, in rule order) of
    /// the policy and balance rules that set each uplink's mark. Such a rule only sees a
    /// connection's first packet. A chain whose counters do not line up with its planned
    /// rules (it is being replaced) is left out.
    pub fn marked_by_uplink(&self, counters: &BTreeMap<String, Vec<u64>>) -> BTreeMap<String, u64> {
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
                .get(&chain.name)
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
