//! Reads the sets of ours from the kernel over netlink (what `ipset save` prints, without
//! starting it and parsing its text): each set's timeout, and its members, permanent or
//! learned with the seconds they have left. The daemon does this on every reconcile, with
//! up to tens of thousands of members.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::netlink::*;
use super::{Present, is_ours};
use crate::kernel::nfnetlink::{self, Socket, attributes};

/// Every set of ours, by name. Blocking: run it off the event loop.
pub fn save() -> io::Result<HashMap<String, Present>> {
    let socket = Socket::open()?;
    let mut body = Vec::new();
    nfnetlink::attr(&mut body, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    let kind = (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_SAVE;
    // The family of the request is not read by the kernel; ipset itself sends AF_INET.
    socket.send(&nfnetlink::message(
        kind,
        nfnetlink::DUMP_REQUEST,
        1,
        2,
        &body,
    ))?;
    let mut out = HashMap::new();
    nfnetlink::read_dump(&socket, |_, message| read_message(message, &mut out))?;
    Ok(out)
}

/// One message of the dump: a set's name, and its header (the first message of a set) or a
/// part of its members (as many messages as they need).
fn read_message(message: &[u8], out: &mut HashMap<String, Present>) {
    let Some(name) = attributes(message)
        .find(|(k, _)| *k == ATTR_SETNAME)
        .and_then(|(_, v)| name(v))
        .filter(|n| is_ours(n))
    else {
        return;
    };
    let set = out.entry(name).or_default();
    for (kind, value) in attributes(message) {
        match kind {
            ATTR_DATA => set.timeout = timeout(value),
            ATTR_ADT => {
                for (_, entry) in attributes(value).filter(|(k, _)| *k == ATTR_DATA) {
                    add_member(set, entry);
                }
            }
            _ => {}
        }
    }
}

/// A member of a set: learned when it has seconds left, else permanent. Members with a
/// port (`hash:net,port`) are not read, as `ipset save`'s were not.
fn add_member(set: &mut Present, entry: &[u8]) {
    let (mut ip, mut cidr, mut left) = (None, None, None);
    for (kind, value) in attributes(entry) {
        match kind {
            ATTR_IP => ip = address(value),
            ATTR_CIDR => cidr = value.first().copied(),
            ATTR_TIMEOUT => left = be32(value),
            ATTR_PORT => return,
            _ => {}
        }
    }
    let Some(ip) = ip else { return };
    let Ok(net) = IpNet::new(ip, cidr.unwrap_or(if ip.is_ipv4() { 32 } else { 128 })) else {
        return;
    };
    match left {
        Some(left) if left > 0 => {
            set.learned.insert(net, left);
        }
        _ => {
            set.permanent.insert(net);
        }
    }
}

fn name(value: &[u8]) -> Option<String> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok().map(str::to_string)
}

/// A set header's timeout (none: the set has no timeouts).
fn timeout(header: &[u8]) -> Option<u32> {
    attributes(header)
        .find(|(k, _)| *k == ATTR_TIMEOUT)
        .and_then(|(_, v)| be32(v))
}

fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// The address inside an `IPSET_ATTR_IP` nest.
fn address(nest: &[u8]) -> Option<IpAddr> {
    attributes(nest).find_map(|(kind, v)| match kind {
        ATTR_IPADDR_IPV4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(v.get(..4)?).ok()?,
        ))),
        ATTR_IPADDR_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(v.get(..16)?).ok()?,
        ))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nfnetlink::attr;

    const NESTED: u16 = 0x8000;
    const NET_ORDER: u16 = 0x4000;

    fn member(ip: &str, cidr: Option<u8>, left: Option<u32>, port: bool) -> Vec<u8> {
        let mut address = Vec::new();
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => attr(&mut address, ATTR_IPADDR_IPV4 | NET_ORDER, &a.octets()),
            IpAddr::V6(a) => attr(&mut address, ATTR_IPADDR_IPV6 | NET_ORDER, &a.octets()),
        }
        let mut e = Vec::new();
        attr(&mut e, ATTR_IP | NESTED, &address);
        if let Some(c) = cidr {
            attr(&mut e, ATTR_CIDR, &[c]);
        }
        if port {
            attr(&mut e, ATTR_PORT | NET_ORDER, &80u16.to_be_bytes());
        }
        if let Some(t) = left {
            attr(&mut e, ATTR_TIMEOUT | NET_ORDER, &t.to_be_bytes());
        }
        let mut data = Vec::new();
        attr(&mut data, ATTR_DATA | NESTED, &e);
        data
    }

    fn message(set: &str, header_timeout: Option<Option<u32>>, members: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        attr(&mut m, ATTR_PROTOCOL, &[7]);
        attr(&mut m, ATTR_SETNAME, format!("{set}\0").as_bytes());
        if let Some(t) = header_timeout {
            let mut header = Vec::new();
            attr(&mut header, 18 | NET_ORDER, &1024u32.to_be_bytes()); // hashsize
            if let Some(t) = t {
                attr(&mut header, ATTR_TIMEOUT | NET_ORDER, &t.to_be_bytes());
            }
            attr(&mut m, ATTR_DATA | NESTED, &header);
        }
        attr(&mut m, ATTR_ADT | NESTED, &members.concat());
        m
    }

    #[test]
    fn reads_headers_and_members_across_messages_and_skips_other_sets() {
        let mut out = HashMap::new();
        let pins = [
            member("10.1.0.1", Some(32), None, false),
            member("10.9.0.0", Some(16), None, false),
        ];
        read_message(&message("multiwan_r0.u1b", Some(None), &pins), &mut out);
        // The rest of the same set in a second message, without a header.
        let more = [member("2001:db8::", Some(32), None, false)];
        read_message(&message("multiwan_r0.u1b", None, &more), &mut out);
        let learned = [
            member("192.0.2.7", Some(32), Some(3599), false),
            member("203.0.113.0", Some(25), Some(0), false),
            member("198.51.100.0", Some(24), None, true),
        ];
        read_message(
            &message("multiwan_streaming", Some(Some(3600)), &learned),
            &mut out,
        );
        read_message(&message("someone_else", Some(None), &pins), &mut out);

        assert_eq!(out.len(), 2, "{out:?}");
        let pinned = &out["multiwan_r0.u1b"];
        assert_eq!(pinned.timeout, None);
        let nets: Vec<String> = pinned.permanent.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.1.0.1/32", "10.9.0.0/16", "2001:db8::/32"]);
        let streaming = &out["multiwan_streaming"];
        assert_eq!(streaming.timeout, Some(3600));
        assert_eq!(
            streaming
                .learned
                .iter()
                .map(|(n, l)| (n.to_string(), *l))
                .collect::<Vec<_>>(),
            [("192.0.2.7/32".to_string(), 3599)]
        );
        let permanent: Vec<String> = streaming.permanent.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            permanent,
            ["203.0.113.0/25"],
            "timeout 0 is permanent; a port is not read"
        );
    }

    #[test]
    fn garbage_is_skipped_not_trusted() {
        let mut out = HashMap::new();
        read_message(&[0xff; 33], &mut out);
        let mut bad_member = Vec::new();
        attr(&mut bad_member, ATTR_DATA | NESTED, &[1, 0, 0]);
        read_message(&message("multiwan_x", Some(None), &[bad_member]), &mut out);
        assert!(out["multiwan_x"].permanent.is_empty());
        assert_eq!(address(&[8, 0, 1, 0, 10, 0]), None);
    }
}
