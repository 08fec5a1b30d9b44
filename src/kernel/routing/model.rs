//! Pure side of the routing adapter: the kernel objects we care about as comparable keys,
//! what the plan wants as keys, the diff, and how kernel facts become [`Observed`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, Gateway};
use crate::plan::{self, Family, Observed, Plan, Resolved, RouteKind};

/// `rtm_protocol` on every rule and route multiwan adds: how cleanup tells ours from others
/// that share the priority range (`ip rule` shows it as `proto 109`).
pub const PROTO: u8 = 109;

/// An ip rule as far as multiwan distinguishes rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub priority: u32,
    pub from: Option<IpAddr>,
    pub fwmark: Option<(u32, u32)>,
    pub action: RuleAct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleAct {
    Lookup {
        table: u32,
        suppress_prefixlength: Option<u32>,
    },
    Unreachable,
}

/// A route in one of our tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub table: u32,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub unreachable: bool,
    pub metric: u32,
}

/// Is this priority inside multiwan's range?
pub fn owns_priority(config: &Config, priority: u32) -> bool {
    crate::owned::Ranges::of(config).owns_priority(priority)
}

/// Is this table one of multiwan's (table_base+1 ..= table_base+99)?
pub fn owns_table(config: &Config, table: u32) -> bool {
    crate::owned::Ranges::of(config).owns_table(table)
}

/// The rules the plan wants; rules whose address is not known yet are left out.
pub fn wanted_rules(plan: &Plan) -> Vec<RuleKey> {
    plan.ip_rules
        .iter()
        .filter_map(|r| {
            let from = match &r.from {
                None => None,
                Some(Resolved::Known(a)) => Some(*a),
                Some(Resolved::Unknown(_)) => return None,
            };
            let action = match r.action {
                plan::RuleAction::Lookup {
                    table,
                    suppress_prefixlength,
                } => RuleAct::Lookup {
                    table,
                    suppress_prefixlength: suppress_prefixlength.map(u32::from),
                },
                plan::RuleAction::Unreachable => RuleAct::Unreachable,
            };
            Some(RuleKey {
                priority: r.priority,
                from,
                fwmark: r.fwmark,
                action,
            })
        })
        .collect()
}

/// The routes the plan wants; a default route whose gateway is unknown, or whose link is
/// missing or down, is left out (the table still has its unreachable default, and the route
/// comes back with the link: the kernel deletes routes of a downed link silently).
pub fn wanted_routes(plan: &Plan, view: &KernelView) -> Vec<RouteKey> {
    plan.routes
        .iter()
        .filter_map(|r| match &r.kind {
            RouteKind::Default { interface, .. } if !view.usable.contains(interface) => None,
            RouteKind::Default { gateway, interface } => Some(RouteKey {
                table: r.table,
                gateway: match gateway.known()? {
                    plan::NextHop::Via(ip) => Some(*ip),
                    plan::NextHop::Device => None,
                },
                oif: Some(*view.links.get(interface)?),
                unreachable: false,
                metric: r.metric,
            }),
            RouteKind::Unreachable => Some(RouteKey {
                table: r.table,
                gateway: None,
                oif: None,
                unreachable: true,
                metric: r.metric,
            }),
        })
        .collect()
}

/// What to delete and what to add so that `have` becomes `want`.
pub fn diff<K: PartialEq + Clone>(have: &[K], want: &[K]) -> (Vec<K>, Vec<K>) {
    let delete = have.iter().filter(|k| !want.contains(k)).cloned().collect();
    let add = want.iter().filter(|k| !have.contains(k)).cloned().collect();
    (delete, add)
}

/// Facts read from the kernel.
#[derive(Debug, Clone, Default)]
pub struct KernelView {
    /// Interface name to index.
    pub links: HashMap<String, u32>,
    /// Names of links that are up and have carrier.
    pub usable: std::collections::HashSet<String>,
    /// Every address of this host (an HA node holds the shared ones while master).
    pub local: std::collections::HashSet<IpAddr>,
    pub v4: Facts,
    pub v6: Facts,
}

/// What the kernel says of one address family.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The address of each interface index that multiwan may use as a source: IPv4's
    /// first; IPv6's first global one that is usable (not tentative or deprecated).
    pub addresses: HashMap<u32, IpAddr>,
    /// Every network on an interface, and every specific route of the main table.
    pub connected: Vec<IpNet>,
    /// Main-table default routes' next hops by output interface index (a device route,
    /// `default dev ppp0`, has none).
    pub default_gateways: HashMap<u32, plan::NextHop>,
    /// The peer address of each point-to-point interface index.
    pub peers: HashMap<u32, IpAddr>,
    /// Every network on each interface index.
    pub networks: HashMap<u32, Vec<IpNet>>,
}

impl KernelView {
    pub fn of(&self, family: Family) -> &Facts {
        match family {
            Family::Ipv4 => &self.v4,
            Family::Ipv6 => &self.v6,
        }
    }
}

/// Turns kernel facts into what the plan needs, with a warning for each missing piece.
/// IPv6 facts are read only for uplinks with an IPv6 side.
pub fn observe(config: &Config, view: &KernelView) -> (Observed, Vec<String>) {
    let mut warnings = Vec::new();
    let mut observed = observe_family(config, view, Family::Ipv4, &mut warnings);
    if plan::has_ipv6(config) {
        observed.v6 = Some(Box::new(observe_family(
            config,
            view,
            Family::Ipv6,
            &mut warnings,
        )));
    }
    (observed, warnings)
}

fn observe_family(
    config: &Config,
    view: &KernelView,
    family: Family,
    warnings: &mut Vec<String>,
) -> Observed {
    let facts = view.of(family);
    let mut addresses = BTreeMap::new();
    let mut gateways = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for u in &config.uplinks {
        let spec = match family {
            Family::Ipv4 => u.gateway,
            Family::Ipv6 => match &u.ipv6 {
                Some(side) => side.gateway,
                None => continue,
            },
        };
        let Some(index) = view.links.get(&u.interface) else {
            if family == Family::Ipv4 {
                warnings.push(format!(
                    "uplink {}: interface {} does not exist (yet)",
                    u.name, u.interface
                ));
            }
            continue;
        };
        let kind = match family {
            Family::Ipv4 => "IPv4 address",
            Family::Ipv6 => "usable global IPv6 address",
        };
        if let Some(peer) = facts.peers.get(index) {
            peers.insert(u.name.clone(), *peer);
        }
        match facts.addresses.get(index) {
            Some(a) => {
                addresses.insert(u.name.clone(), *a);
            }
            None => warnings.push(format!(
                "uplink {}: {} has no {kind} (yet)",
                u.name, u.interface
            )),
        }
        if spec == Gateway::Auto {
            match facts.default_gateways.get(index) {
                Some(g) => {
                    gateways.insert(u.name.clone(), *g);
                }
                None => warnings.push(format!(
                    "uplink {}: {} is auto, but the main table has no {} default route via {} (yet)",
                    u.name,
                    match family {
                        Family::Ipv4 => "gateway",
                        Family::Ipv6 => "gateway6",
                    },
                    match family {
                        Family::Ipv4 => "IPv4",
                        Family::Ipv6 => "IPv6",
                    },
                    u.interface
                )),
            }
        }
    }
    let mut connected = facts.connected.clone();
    connected.sort();
    connected.dedup();
    let lan_networks = config
        .lan_interfaces
        .iter()
        .filter_map(|l| view.links.get(l))
        .flat_map(|i| facts.networks.get(i).cloned().unwrap_or_default())
        .collect();
    Observed {
        addresses,
        gateways,
        peers,
        connected: Some(connected),
        lan_networks: Some(lan_networks),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 100.64.1.1}
  - {name: b, interface: wan2, gateway: auto}
",
            "t.yaml",
        )
        .unwrap()
    }

    #[test]
    fn observe_fills_addresses_and_auto_gateways() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let view = KernelView {
            links: [("wan1".to_string(), 3), ("wan2".to_string(), 4)].into(),
            usable: ["wan1".to_string(), "wan2".to_string()].into(),
            v4: Facts {
                addresses: [(3, ip("100.64.1.2")), (4, ip("100.64.2.2"))].into(),
                connected: vec![
                    "100.64.2.0/24".parse().unwrap(),
                    "10.0.0.0/24".parse().unwrap(),
                ],
                default_gateways: [(4, plan::NextHop::Via(ip("100.64.2.1")))].into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let (o, warnings) = observe(&config(), &view);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(o.addresses["b"], ip("100.64.2.2"));
        assert_eq!(o.gateways["b"], plan::NextHop::Via(ip("100.64.2.1")));
        assert!(
            !o.gateways.contains_key("a"),
            "static gateways are not learned"
        );
        let plan = Plan::build(&config(), &o);
        let rules = wanted_rules(&plan);
        assert_eq!(rules.len(), 5);
        assert_eq!(wanted_routes(&plan, &view).len(), 4);
        let mut down = view.clone();
        down.usable.remove("wan2");
        assert_eq!(
            wanted_routes(&plan, &down).len(),
            3,
            "no default route via a link that is down"
        );
    }

    #[test]
    fn missing_interface_and_gateway_are_warned_and_left_out() {
        let view = KernelView {
            links: [("wan1".to_string(), 3)].into(),
            usable: ["wan1".to_string()].into(),
            v4: Facts {
                addresses: [(3, "100.64.1.2".parse().unwrap())].into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let (o, warnings) = observe(&config(), &view);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("wan2 does not exist"));
        let plan = Plan::build(&config(), &o);
        // No `from` rule for b (address unknown), no default route in b's table.
        assert_eq!(wanted_rules(&plan).len(), 4);
        let routes = wanted_routes(&plan, &view);
        assert_eq!(routes.iter().filter(|r| r.table == 102).count(), 1);
        assert!(routes.iter().any(|r| r.table == 102 && r.unreachable));
    }

    #[test]
    fn a_point_to_point_device_route_is_learned_and_installed_without_a_gateway() {
        let c = crate::config::parse(
            "lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 100.64.1.1}
  - {name: ppp, interface: ppp0, gateway: auto}
",
            "t.yaml",
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut view = KernelView {
            links: [("wan1".to_string(), 3), ("ppp0".to_string(), 9)].into(),
            usable: ["wan1".to_string(), "ppp0".to_string()].into(),
            v4: Facts {
                addresses: [(3, ip("100.64.1.2")), (9, ip("10.9.0.2"))].into(),
                default_gateways: [(9, plan::NextHop::Device)].into(),
                peers: [(9, ip("10.9.0.1"))].into(),
                connected: vec!["10.0.0.0/24".parse().unwrap()],
                ..Default::default()
            },
            ..Default::default()
        };
        let (o, warnings) = observe(&c, &view);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(o.gateways["ppp"], plan::NextHop::Device);
        assert_eq!(
            o.default_target(c.uplink("ppp").unwrap()),
            Some(ip("10.9.0.1"))
        );
        let plan = Plan::build(&c, &o);
        let device = wanted_routes(&plan, &view)
            .into_iter()
            .find(|r| r.table == 102 && !r.unreachable)
            .expect("a default route in ppp's table");
        assert_eq!((device.gateway, device.oif), (None, Some(9)));
        assert!(plan.uplink("ppp").unwrap().routable);
        assert_eq!(plan.balance.members().len(), 2);
        // The session drops: no address, no default route. Never balanced onto.
        view.v4.addresses.remove(&9);
        view.v4.default_gateways.remove(&9);
        let (o, _) = observe(&c, &view);
        let plan = Plan::build(&c, &o);
        assert!(!plan.uplink("ppp").unwrap().routable);
        let members: Vec<&str> = plan
            .balance
            .members()
            .iter()
            .map(|m| m.uplink.as_str())
            .collect();
        assert_eq!(members, ["a"], "whatever its probes say");
    }

    #[test]
    fn diff_deletes_then_adds() {
        let (d, a) = diff(&[1, 2, 3], &[2, 3, 4]);
        assert_eq!((d, a), (vec![1], vec![4]));
    }

    #[test]
    fn ownership_ranges() {
        let c = config();
        assert!(owns_priority(&c, 10000) && owns_priority(&c, 10999));
        assert!(!owns_priority(&c, 11000) && !owns_priority(&c, 9999));
        assert!(owns_table(&c, 101) && owns_table(&c, 199));
        assert!(!owns_table(&c, 100) && !owns_table(&c, 200) && !owns_table(&c, 254));
    }
}
