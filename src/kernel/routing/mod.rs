//! The routing adapter: reads links, addresses and routes, and keeps multiwan's ip rules
//! and per-uplink tables as the plan wants them. rtnetlink only; never the `ip` command.
//!
//! Reconcile = dump what is ours, diff against the plan, delete then add. Ours means: rules
//! in our priority range carrying our protocol tag, and any route in our tables.

pub mod model;

use crate::owned::Ranges;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::config::Config;
use crate::plan::{Family, MAIN_TABLE, NextHop, Plan};
use model::RuleAct;
pub use model::{Facts, KernelView, PROTO, RouteKey, RuleKey};

const EEXIST: i32 = 17;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
/// The metric the kernel gives an IPv6 route added without one.
const IPV6_DEFAULT_METRIC: u32 = 1024;
/// The kernel has no IPv6 (`ipv6.disable=1`): nothing of ours can be there.
const EAFNOSUPPORT: i32 = 97;

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("{what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RoutingError {
    let what = what.into();
    move |source| RoutingError::Netlink { what, source }
}

/// The errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// What a reconcile changed, for logs and for the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutingChanges {
    pub rules_added: Vec<RuleKey>,
    pub rules_deleted: Vec<RuleKey>,
    pub routes_added: Vec<RouteKey>,
    pub routes_deleted: Vec<RouteKey>,
    /// Objects that could not be installed (one uplink's trouble must not stop the others).
    pub failed: Vec<String>,
}

impl RoutingChanges {
    pub fn is_empty(&self) -> bool {
        self.rules_added.is_empty()
            && self.rules_deleted.is_empty()
            && self.routes_added.is_empty()
            && self.routes_deleted.is_empty()
    }
}

/// A handle on the kernel's routing. Needs a tokio runtime with IO enabled.
#[derive(Clone)]
pub struct Routing {
    handle: Handle,
}

impl Routing {
    pub fn connect() -> Result<Self, RoutingError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(RoutingError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Reads links, addresses and main-table routes of both families.
    pub async fn view(&self) -> Result<KernelView, RoutingError> {
        let mut view = KernelView::default();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(nl("dump links"))? {
            for attr in &link.attributes {
                if let LinkAttribute::IfName(name) = attr {
                    view.links.insert(name.clone(), link.header.index);
                    if crate::kernel::events::link_usable(link.header.flags) {
                        view.usable.insert(name.clone());
                    }
                }
            }
        }
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await.map_err(nl("dump addresses"))? {
            let Some((ip, len)) = address_of(&msg) else {
                continue;
            };
            view.local.insert(ip);
            let facts = match ip {
                IpAddr::V4(_) => &mut view.v4,
                IpAddr::V6(_) => &mut view.v6,
            };
            if usable_source(&msg, ip) {
                facts.addresses.entry(msg.header.index).or_insert(ip);
            }
            if let Some(peer) = peer_of(&msg, ip) {
                facts.peers.entry(msg.header.index).or_insert(peer);
            }
            if let Ok(net) = IpNet::new(ip, len) {
                facts.connected.push(net.trunc());
                facts
                    .networks
                    .entry(msg.header.index)
                    .or_default()
                    .push(net.trunc());
            }
        }
        for family in Family::ALL {
            let routes = match self.routes(family).await {
                Err(e) if family == Family::Ipv6 && unsupported(&e) => continue,
                r => r?,
            };
            let facts = match family {
                Family::Ipv4 => &mut view.v4,
                Family::Ipv6 => &mut view.v6,
            };
            for route in routes {
                main_route(&route, facts);
            }
        }
        Ok(view)
    }

    /// Every route of a family, in every table: a dump ignores the table asked for, so
    /// callers filter by table.
    async fn routes(&self, family: Family) -> Result<Vec<RouteMessage>, RoutingError> {
        let message = match family {
            Family::Ipv4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            Family::Ipv6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let req = self.handle.route().get(message);
        req.execute().try_collect().await.map_err(nl("dump routes"))
    }

    async fn rules(&self, family: Family) -> Result<Vec<RuleMessage>, RoutingError> {
        let version = match family {
            Family::Ipv4 => IpVersion::V4,
            Family::Ipv6 => IpVersion::V6,
        };
        let req = self.handle.rule().get(version);
        req.execute().try_collect().await.map_err(nl("dump rules"))
    }

    /// Which uplink id each interface had when multiwan last installed its tables: the
    /// interface of the default route in table `table_base + id`. A restart keeps these ids
    /// (so the marks of established connections keep their meaning).
    pub async fn installed_ids(
        &self,
        config: &Config,
    ) -> Result<std::collections::HashMap<String, u32>, RoutingError> {
        let view = self.view().await?;
        let names: std::collections::HashMap<u32, &String> = view
            .links
            .iter()
            .map(|(name, index)| (*index, name))
            .collect();
        let mut out = std::collections::HashMap::new();
        for route in self.routes(Family::Ipv4).await? {
            let table = table_of(&route);
            if !model::owns_table(config, table) || route.header.destination_prefix_length != 0 {
                continue;
            }
            if let Some(name) = oif(&route).and_then(|i| names.get(&i)) {
                out.insert((*name).clone(), table - config.table_base);
            }
        }
        Ok(out)
    }

    /// Makes our rules and tables match the plan, family by family. A config without IPv6
    /// still removes IPv6 rules and routes of ours (IPv6 was taken out of it).
    pub async fn reconcile(
        &self,
        config: &Config,
        plan: &Plan,
        view: &KernelView,
    ) -> Result<RoutingChanges, RoutingError> {
        let mut changes = RoutingChanges::default();
        for family in Family::ALL {
            let wanted = plan.of(family);
            match self
                .reconcile_family(config, family, wanted, view, &mut changes)
                .await
            {
                Err(RoutingError::Netlink { source, .. })
                    if wanted.is_none() && errno(&source) == Some(EAFNOSUPPORT) => {}
                r => r?,
            }
        }
        Ok(changes)
    }

    async fn reconcile_family(
        &self,
        config: &Config,
        family: Family,
        plan: Option<&Plan>,
        view: &KernelView,
        changes: &mut RoutingChanges,
    ) -> Result<(), RoutingError> {
        let have: Vec<(RuleKey, RuleMessage)> = self
            .rules(family)
            .await?
            .into_iter()
            .filter(|m| is_our_rule(Ranges::of(config), m))
            .filter_map(|m| rule_key(&m).map(|k| (k, m)))
            .collect();
        let have_keys: Vec<RuleKey> = have.iter().map(|(k, _)| k.clone()).collect();
        let wanted = plan.map(model::wanted_rules).unwrap_or_default();
        let (delete, add) = model::diff(&have_keys, &wanted);
        for key in delete {
            let (_, msg) = have.iter().find(|(k, _)| *k == key).expect("from have");
            self.delete_rule(msg.clone(), &key).await?;
            changes.rules_deleted.push(key);
        }
        for key in add {
            match self.add_rule(family, &key).await {
                Ok(()) => changes.rules_added.push(key),
                Err(e) => changes.failed.push(e.to_string()),
            }
        }
        self.reconcile_routes(config, family, plan, view, changes)
            .await
    }

    async fn reconcile_routes(
        &self,
        config: &Config,
        family: Family,
        plan: Option<&Plan>,
        view: &KernelView,
        changes: &mut RoutingChanges,
    ) -> Result<(), RoutingError> {
        let have: Vec<(RouteKey, RouteMessage)> = self
            .routes(family)
            .await?
            .into_iter()
            .filter(|m| model::owns_table(config, table_of(m)))
            .map(|m| (route_key(&m), m))
            .collect();
        let have_keys: Vec<RouteKey> = have.iter().map(|(k, _)| k.clone()).collect();
        let mut wanted = plan
            .map(|p| model::wanted_routes(p, view))
            .unwrap_or_default();
        if family == Family::Ipv6 {
            // The kernel stores an IPv6 route of metric 0 with the user default, 1024.
            for key in &mut wanted {
                if key.metric == 0 {
                    key.metric = IPV6_DEFAULT_METRIC;
                }
            }
        }
        let (delete, add) = model::diff(&have_keys, &wanted);
        for key in delete {
            let (_, msg) = have.iter().find(|(k, _)| *k == key).expect("from have");
            match self.delete_route(msg.clone(), &key).await {
                Ok(()) => changes.routes_deleted.push(key),
                Err(e) => changes.failed.push(e.to_string()),
            }
        }
        for key in add {
            match self.add_route(family, &key).await {
                Ok(()) => changes.routes_added.push(key),
                Err(e) => changes.failed.push(e.to_string()),
            }
        }
        Ok(())
    }

    /// Removes every rule and route of ours in both families; keeps going after a failure.
    pub async fn cleanup(&self, ranges: Ranges) -> (RoutingChanges, Vec<RoutingError>) {
        let mut changes = RoutingChanges::default();
        let mut errors = Vec::new();
        for family in Family::ALL {
            match self.rules(family).await {
                Ok(rules) => {
                    for m in rules.into_iter().filter(|m| is_our_rule(ranges, m)) {
                        let Some(key) = rule_key(&m) else { continue };
                        match self.delete_rule(m, &key).await {
                            Ok(()) => changes.rules_deleted.push(key),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) if unsupported(&e) => continue,
                Err(e) => errors.push(e),
            }
            match self.routes(family).await {
                Ok(routes) => {
                    for m in routes
                        .into_iter()
                        .filter(|m| ranges.owns_table(table_of(m)))
                    {
                        let key = route_key(&m);
                        match self.delete_route(m, &key).await {
                            Ok(()) => changes.routes_deleted.push(key),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) if unsupported(&e) => {}
                Err(e) => errors.push(e),
            }
        }
        (changes, errors)
    }

    async fn add_rule(&self, family: Family, key: &RuleKey) -> Result<(), RoutingError> {
        let req = self.handle.rule().add().priority(key.priority);
        let mut req = match key.action {
            RuleAct::Lookup { table, .. } => req.table_id(table).action(RuleAction::ToTable),
            RuleAct::Unreachable => req.action(RuleAction::Unreachable),
        };
        req.message_mut().header.family = match family {
            Family::Ipv4 => AddressFamily::Inet,
            Family::Ipv6 => AddressFamily::Inet6,
        };
        if let Some(from) = key.from {
            let attrs = &mut req.message_mut();
            attrs.header.src_len = match from {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            };
            attrs.attributes.push(RuleAttribute::Source(from));
        }
        if let Some((mark, _)) = key.fwmark {
            req = req.fw_mark(mark);
        }
        let attrs = &mut req.message_mut().attributes;
        if let Some((_, mask)) = key.fwmark {
            attrs.push(RuleAttribute::FwMask(mask));
        }
        if let RuleAct::Lookup {
            suppress_prefixlength: Some(len),
            ..
        } = key.action
        {
            attrs.push(RuleAttribute::SuppressPrefixLen(len));
        }
        attrs.push(RuleAttribute::Protocol(RouteProtocol::Other(PROTO)));
        match req.execute().await {
            // Someone (a second apply racing us) added it already: that is what we want.
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            r => r.map_err(nl(format!("add ip rule {key:?}"))),
        }
    }

    async fn delete_rule(&self, msg: RuleMessage, key: &RuleKey) -> Result<(), RoutingError> {
        match self.handle.rule().del(msg).execute().await {
            // Already gone: the goal of a delete.
            Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH)) => Ok(()),
            r => r.map_err(nl(format!("delete ip rule {key:?}"))),
        }
    }

    async fn add_route(&self, family: Family, key: &RouteKey) -> Result<(), RoutingError> {
        let message = match family {
            Family::Ipv4 => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .table_id(key.table)
                    .priority(key.metric)
                    .protocol(RouteProtocol::Other(PROTO));
                if key.unreachable {
                    b = b.kind(RouteType::Unreachable);
                }
                if let Some(IpAddr::V4(gw)) = key.gateway {
                    b = b.gateway(gw);
                }
                if let Some(oif) = key.oif {
                    b = b.output_interface(oif);
                }
                b.build()
            }
            Family::Ipv6 => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .table_id(key.table)
                    .priority(key.metric)
                    .protocol(RouteProtocol::Other(PROTO));
                if key.unreachable {
                    b = b.kind(RouteType::Unreachable);
                }
                if let Some(IpAddr::V6(gw)) = key.gateway {
                    b = b.gateway(gw);
                }
                if let Some(oif) = key.oif {
                    b = b.output_interface(oif);
                }
                b.build()
            }
        };
        let req = self.handle.route().add(message).replace();
        req.execute()
            .await
            .map_err(nl(format!("add route {key:?}")))
    }

    async fn delete_route(&self, msg: RouteMessage, key: &RouteKey) -> Result<(), RoutingError> {
        match self.handle.route().del(msg).execute().await {
            Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH)) => Ok(()),
            r => r.map_err(nl(format!("delete route {key:?}"))),
        }
    }
}

fn address_of(msg: &AddressMessage) -> Option<(IpAddr, u8)> {
    let family_ok = matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    );
    if !family_ok {
        return None;
    }
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address).map(|ip| (ip, msg.header.prefix_len))
}

/// The far end of a point-to-point address (`inet 10.9.0.2 peer 10.9.0.1/32`): IFA_ADDRESS
/// differs from IFA_LOCAL there.
fn peer_of(msg: &AddressMessage, local: IpAddr) -> Option<IpAddr> {
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })?;
    let has_local = msg
        .attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Local(_)));
    (has_local && address != local).then_some(address)
}

/// An address multiwan may bind a probe to and NAT from: any IPv4 address; for IPv6 a
/// global one that has passed duplicate address detection and is not deprecated.
fn usable_source(msg: &AddressMessage, ip: IpAddr) -> bool {
    let IpAddr::V6(v6) = ip else {
        return true;
    };
    let flags = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits())));
    let unusable = AddressFlags::Tentative | AddressFlags::Deprecated | AddressFlags::Dadfailed;
    let special = v6.is_loopback() || v6.is_unicast_link_local() || v6.is_multicast();
    !(special || flags.intersects(unusable))
}

/// What a main-table route tells: a default route's gateway (also inside a multipath
/// route, as several router advertisements make), or a connected network.
fn main_route(route: &RouteMessage, facts: &mut Facts) {
    let (table, dst_len) = (table_of(route), route.header.destination_prefix_length);
    if table != MAIN_TABLE || route.header.kind != RouteType::Unicast {
        return;
    }
    if dst_len == 0 {
        if let Some(oif) = oif(route) {
            let hop = gateway(route).map_or(NextHop::Device, NextHop::Via);
            facts.default_gateways.entry(oif).or_insert(hop);
        }
        for hop in route.attributes.iter().flat_map(|a| match a {
            RouteAttribute::MultiPath(hops) => hops.as_slice(),
            _ => &[],
        }) {
            let via = hop.attributes.iter().find_map(gateway_attr);
            let next = via.map_or(NextHop::Device, NextHop::Via);
            facts
                .default_gateways
                .entry(hop.interface_index)
                .or_insert(next);
        }
        return;
    }
    if let Some(dst) = destination(route)
        && let Ok(net) = IpNet::new(dst, dst_len)
        && !net.network().is_multicast()
    {
        facts.connected.push(net.trunc());
    }
}

fn unsupported(e: &RoutingError) -> bool {
    matches!(e, RoutingError::Netlink { source, .. } if errno(source) == Some(EAFNOSUPPORT))
}

/// Tables above 255 only appear in the attribute; the header then says 252.
fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn destination(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })
}

fn gateway(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(gateway_attr)
}

fn gateway_attr(a: &RouteAttribute) -> Option<IpAddr> {
    match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn oif(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn route_key(route: &RouteMessage) -> RouteKey {
    let metric = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0);
    let unreachable = route.header.kind == RouteType::Unreachable;
    RouteKey {
        table: table_of(route),
        gateway: gateway(route),
        // The kernel shows an IPv6 unreachable route on `lo`; it has no interface of ours.
        oif: oif(route).filter(|_| !unreachable),
        unreachable,
        metric,
    }
}

fn is_our_rule(ranges: Ranges, msg: &RuleMessage) -> bool {
    let ours = msg
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == PROTO));
    let priority = msg.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    ours && priority.is_some_and(|p| ranges.owns_priority(p))
}

fn rule_key(msg: &RuleMessage) -> Option<RuleKey> {
    let mut key = RuleKey {
        priority: 0,
        from: None,
        fwmark: None,
        action: RuleAct::Unreachable,
    };
    let mut table = u32::from(msg.header.table);
    let mut mark = None;
    let mut mask = 0xffff_ffff;
    let mut suppress = None;
    for a in &msg.attributes {
        match a {
            RuleAttribute::Priority(p) => key.priority = *p,
            RuleAttribute::Source(ip @ IpAddr::V4(_)) if msg.header.src_len == 32 => {
                key.from = Some(*ip)
            }
            RuleAttribute::Source(ip @ IpAddr::V6(_)) if msg.header.src_len == 128 => {
                key.from = Some(*ip)
            }
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = *m,
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::SuppressPrefixLen(l) if *l != u32::MAX => suppress = Some(*l),
            _ => {}
        }
    }
    key.fwmark = mark
        .filter(|m| *m != 0 || mask != 0xffff_ffff)
        .map(|m| (m, mask));
    key.action = match msg.header.action {
        RuleAction::ToTable => RuleAct::Lookup {
            table,
            suppress_prefixlength: suppress,
        },
        RuleAction::Unreachable => RuleAct::Unreachable,
        _ => return None,
    };
    Some(key)
}
