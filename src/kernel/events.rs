//! Kernel events multiwan reacts to: a link's carrier or admin state; any address, route
//! or ip rule change (DHCP renewals, PPP reconnects, a downed link silently deleting routes,
//! another tool deleting rules); and any nf_tables change (a firewall reload, `nft flush
//! ruleset`, `iptables -F` with the nft backend), so that what others remove of multiwan's
//! is put back at once rather than at the next periodic reconcile.

use std::os::fd::OwnedFd;

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::NetlinkPayload;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A link's usable state: administratively up and with carrier.
    Link { name: String, up: bool },
    /// An address, route or rule changed somewhere: re-read what the plan depends on.
    Changed,
    /// An ip rule was deleted: its priority and protocol tag (ours, if in our range with
    /// our tag: the probes lost their way until it is back).
    RuleDeleted { priority: u32, protocol: u8 },
    /// A route was deleted from this table.
    RouteDeleted { table: u32 },
    /// Something changed in nf_tables (any table, anyone's).
    Netfilter,
    /// Events were lost: resynchronise everything.
    Overrun,
}

/// A link is usable when it is up and has carrier (`lo` and some tunnels report an
/// unknown operational state, so the flags are used rather than the oper state).
pub fn link_usable(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp)
}

fn link_event(msg: &LinkMessage, deleted: bool) -> Option<KernelEvent> {
    let name = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(KernelEvent::Link {
        name,
        up: !deleted && link_usable(msg.header.flags),
    })
}

fn rule_deleted(msg: &RuleMessage) -> KernelEvent {
    let mut event = (0, 0);
    for a in &msg.attributes {
        match a {
            RuleAttribute::Priority(p) => event.0 = *p,
            RuleAttribute::Protocol(p) => event.1 = u8::from(*p),
            _ => {}
        }
    }
    KernelEvent::RuleDeleted {
        priority: event.0,
        protocol: event.1,
    }
}

fn route_deleted(msg: &RouteMessage) -> KernelEvent {
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    KernelEvent::RouteDeleted { table }
}

fn event_of(payload: NetlinkPayload<RouteNetlinkMessage>) -> Option<KernelEvent> {
    match payload {
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::NewLink(l) => link_event(&l, false),
            RouteNetlinkMessage::DelLink(l) => link_event(&l, true),
            RouteNetlinkMessage::DelRule(r) => Some(rule_deleted(&r)),
            RouteNetlinkMessage::DelRoute(r) => Some(route_deleted(&r)),
            RouteNetlinkMessage::NewAddress(_)
            | RouteNetlinkMessage::DelAddress(_)
            | RouteNetlinkMessage::NewRoute(_)
            | RouteNetlinkMessage::NewRule(_) => Some(KernelEvent::Changed),
            _ => None,
        },
        NetlinkPayload::Overrun(_) => Some(KernelEvent::Overrun),
        _ => None,
    }
}

/// Subscribes to link events, address, route and rule events of both families, and to
/// nf_tables changes. Needs a tokio runtime.
pub fn subscribe() -> std::io::Result<UnboundedReceiver<KernelEvent>> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv6Rule,
    ];
    let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(connection);
    let (tx, rx) = unbounded_channel();
    let nft = tx.clone();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            if let Some(e) = event_of(msg.payload)
                && tx.send(e).is_err()
            {
                return;
            }
        }
    });
    match super::nfnetlink::nftables_notifications() {
        Ok(socket) => {
            tokio::spawn(forward_nftables(socket, nft));
        }
        // Without it drift is still repaired, by the periodic reconcile.
        Err(e) => tracing::warn!(error = %e, "cannot listen to nf_tables changes"),
    }
    Ok(rx)
}

/// Every batch of nf_tables notifications becomes one event; its content does not matter
/// (the reconcile compares everything). A lost notification (ENOBUFS) is a change too.
async fn forward_nftables(socket: AsyncFd<OwnedFd>, tx: UnboundedSender<KernelEvent>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut ready) = socket.readable().await else {
            return;
        };
        let mut any = false;
        loop {
            let n = super::nfnetlink::recv(socket.get_ref(), &mut buf);
            let e = match n {
                Ok(_) => {
                    any = true;
                    continue;
                }
                Err(e) => e,
            };
            if e.kind() == std::io::ErrorKind::WouldBlock {
                ready.clear_ready();
                break;
            }
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                tracing::warn!(error = %e, "nf_tables notifications stopped");
                return;
            }
            any = true; // notifications were lost: something changed
        }
        if any && tx.send(KernelEvent::Netfilter).is_err() {
            return;
        }
    }
}
