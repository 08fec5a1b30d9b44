//! The desired kernel state for a config and the uplinks' current health: a plain value,
//! built without any I/O. Adapters install it; `explain` reads it.

mod balance;
mod build;
pub mod forward;
mod render;
pub mod routing;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Serialize, Serializer};

pub use balance::{Balance, Member, cascade};
pub use render::trim_float as render_weight;
pub use routing::{IpRule, RouteKind, RoutePlan, RuleAction};
pub use rules::{Chain, Jump, Match, Origin, Rule, TablePlan, Target};

use crate::config::{Config, InitialState, MarkLayout, Uplink};

pub const CHAIN_PREROUTING: &str = "MULTIWAN_PREROUTING";
pub const CHAIN_LAN: &str = "MULTIWAN_LAN";
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

/// An uplink's health as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Up,
    Degraded,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        })
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyPlan {
    pub name: String,
    pub decision: Decision,
}

/// A `hash:net` ipset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpSet {
    pub name: String,
    pub networks: Resolved<Vec<Ipv4Net>>,
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
        render::ipset_restore(&self.sets)
    }

    /// The whole plan for a person.
    pub fn human(&self) -> String {
        render::human(self)
    }
}
