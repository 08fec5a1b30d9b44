//! ipset's netlink protocol, and the additions: the members of a set multiwan has just
//! created go straight to the kernel, in netlink batches. `ipset restore` parses each line
//! with the C library's address parser, which costs ~20 ms for 10 000 pins; the kernel's
//! part is a few. Additions (`IPSET_CMD_ADD` with a list of entries) and reading the sets
//! ([`super::dump`]) are done this way: creating, swapping and destroying sets stay with
//! `ipset restore`.

use std::io;

use ipnet::IpNet;

use crate::family::Family;
use crate::kernel::nfnetlink::{Socket, attr};

/// nfnetlink subsystem of ipset, and its commands.
pub(super) const NFNL_SUBSYS_IPSET: u16 = 6;
const IPSET_CMD_ADD: u16 = 9;
pub(super) const IPSET_CMD_SAVE: u16 = 8;
/// The protocol version the kernel speaks since Linux 3.x (ipset 7).
pub(super) const IPSET_PROTOCOL: u8 = 7;
// Command-level attributes.
pub(super) const ATTR_PROTOCOL: u16 = 1;
pub(super) const ATTR_SETNAME: u16 = 2;
pub(super) const ATTR_DATA: u16 = 7;
pub(super) const ATTR_ADT: u16 = 8;
/// Required beside a list of entries (the line number an error refers to).
const ATTR_LINENO: u16 = 9;
// Entry (and header) attributes.
pub(super) const ATTR_IP: u16 = 1;
pub(super) const ATTR_CIDR: u16 = 3;
pub(super) const ATTR_PORT: u16 = 4;
pub(super) const ATTR_TIMEOUT: u16 = 6;
pub(super) const ATTR_IPADDR_IPV4: u16 = 1;
pub(super) const ATTR_IPADDR_IPV6: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
/// Entries per message: the list is one attribute, whose length is 16 bits.
const PER_MESSAGE: usize = 1000;
/// ipset's own error numbers (above the errno range).
const IPSET_ERR_PROTOCOL: i32 = 4097;
const IPSET_ERR_HASH_FULL: i32 = 4352;

/// Adds `nets` to the existing set `set` (an entry already there is not an error). Blocking:
/// run it off the event loop.
pub fn add(set: &str, family: Family, nets: &[IpNet]) -> io::Result<()> {
    let socket = Socket::open()?;
    let messages: Vec<Vec<u8>> = nets
        .chunks(PER_MESSAGE)
        .enumerate()
        .map(|(i, chunk)| add_message(set, family, chunk, i as u32 + 1))
        .collect();
    for m in &messages {
        socket.send(m)?;
    }
    let mut acked = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while acked < messages.len() {
        let n = socket.recv(&mut buf)?;
        for code in acks(&buf[..n]) {
            if code != 0 {
                return Err(error(set, -code));
            }
            acked += 1;
        }
    }
    Ok(())
}

fn error(set: &str, code: i32) -> io::Error {
    let why = match code {
        IPSET_ERR_HASH_FULL => "the set is full (maxelem)".to_string(),
        IPSET_ERR_PROTOCOL => "the kernel does not speak ipset protocol 7".to_string(),
        c if c < 4096 => io::Error::from_raw_os_error(c).to_string(),
        c => format!("ipset error {c}"),
    };
    io::Error::other(format!("adding members to {set}: {why}"))
}

/// One `IPSET_CMD_ADD` request with `nets` as its list of entries.
fn add_message(set: &str, family: Family, nets: &[IpNet], seq: u32) -> Vec<u8> {
    let mut body = Vec::new();
    attr(&mut body, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    attr(&mut body, ATTR_SETNAME, &name);
    let mut list = Vec::with_capacity(nets.len() * 40);
    for net in nets {
        attr(&mut list, ATTR_DATA | NLA_F_NESTED, &entry(net));
    }
    attr(&mut body, ATTR_LINENO, &0u32.to_ne_bytes());
    attr(&mut body, ATTR_ADT | NLA_F_NESTED, &list);
    let kind = (NFNL_SUBSYS_IPSET << 8) | IPSET_CMD_ADD;
    crate::kernel::nfnetlink::message(kind, NLM_F_REQUEST | NLM_F_ACK, seq, family.af(), &body)
}

/// One entry: its address (network byte order, as the kernel requires) and prefix length.
fn entry(net: &IpNet) -> Vec<u8> {
    let mut address = Vec::new();
    match net {
        IpNet::V4(n) => attr(
            &mut address,
            ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            &n.network().octets(),
        ),
        IpNet::V6(n) => attr(
            &mut address,
            ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
            &n.network().octets(),
        ),
    }
    let mut out = Vec::new();
    attr(&mut out, ATTR_IP | NLA_F_NESTED, &address);
    attr(&mut out, ATTR_CIDR, &[net.prefix_len()]);
    out
}

/// The error codes (0: success) of the acknowledgements in a datagram.
fn acks(buf: &[u8]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            break;
        }
        if kind == NLMSG_ERROR && len >= 20 {
            out.push(i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]));
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn an_entry_is_its_address_in_network_order_and_its_prefix_length() {
        let e = entry(&"10.1.2.0/24".parse().unwrap());
        assert_eq!(
            e,
            [
                12, 0, 0x01, 0x80, // IP, nested
                8, 0, 0x01, 0x40, 10, 1, 2, 0, // IPADDR_IPV4, network byte order
                5, 0, 3, 0, 24, 0, 0, 0, // CIDR 24, padded
            ]
        );
        let e6 = entry(&"2001:db8::/32".parse().unwrap());
        assert_eq!(e6.len(), 4 + 20 + 8);
        assert_eq!(&e6[8..12], &[0x20, 0x01, 0x0d, 0xb8]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn a_request_names_the_set_and_lists_every_entry() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.1/32".parse().unwrap(),
            "10.9.0.0/16".parse().unwrap(),
        ];
        let m = add_message("multiwan_s", Family::Ipv4, &nets, 7);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x609);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(m[16], 2, "NFPROTO_IPV4");
        // protocol 7, then the name with its NUL.
        assert_eq!(&m[20..25], &[5, 0, 1, 0, 7]);
        assert_eq!(&m[28..32], &[15, 0, 2, 0]);
        assert_eq!(&m[32..43], b"multiwan_s\0");
        // The line number, then the list: two entries of 24 bytes with their 4-byte headers.
        assert_eq!(&m[44..48], &[8, 0, 9, 0]);
        let list = &m[52..];
        assert_eq!(u16::from_ne_bytes([list[0], list[1]]) as usize, 4 + 2 * 24);
        assert_eq!(
            u16::from_ne_bytes([list[2], list[3]]),
            ATTR_ADT | NLA_F_NESTED
        );
        assert_eq!(list.len(), 4 + 2 * 24);
    }

    #[test]
    fn acknowledgements_are_read_and_garbage_is_not_trusted() {
        let ack = |code: i32| {
            let mut m = Vec::new();
            m.extend(36u32.to_ne_bytes());
            m.extend(NLMSG_ERROR.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(code.to_ne_bytes());
            m.extend([0u8; 16]);
            m
        };
        let mut buf = ack(0);
        buf.extend(ack(-IPSET_ERR_HASH_FULL));
        assert_eq!(acks(&buf), vec![0, -IPSET_ERR_HASH_FULL]);
        assert_eq!(acks(&buf[..30]), Vec::<i32>::new());
        assert_eq!(acks(&[0xff; 40]), Vec::<i32>::new());
        assert!(
            error("multiwan_s", IPSET_ERR_HASH_FULL)
                .to_string()
                .contains("full")
        );
    }
}
