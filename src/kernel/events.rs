//! Kernel events multiwan reacts to: a link's carrier or admin state, and any address or
//! route change (DHCP renewals, PPP reconnects, a downed link silently deleting routes).

use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::NetlinkPayload;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A link's usable state: administratively up and with carrier.
    Link { name: String, up: bool },
    /// An address or route changed somewhere: re-read what the plan depends on.
    Changed,
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

/// Subscribes to link, IPv4 address and IPv4 route events. Needs a tokio runtime.
pub fn subscribe() -> std::io::Result<UnboundedReceiver<KernelEvent>> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
    ];
    let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(connection);
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let event = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    link_event(&l, false)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    link_event(&l, true)
                }
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(_)
                    | RouteNetlinkMessage::DelAddress(_)
                    | RouteNetlinkMessage::NewRoute(_)
                    | RouteNetlinkMessage::DelRoute(_),
                ) => Some(KernelEvent::Changed),
                NetlinkPayload::Overrun(_) => Some(KernelEvent::Overrun),
                _ => None,
            };
            if let Some(e) = event
                && tx.send(e).is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}
