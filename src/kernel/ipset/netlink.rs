//! ipset's netlink protocol (linux/netfilter/ipset/ip_set.h): every step of an update
//! ([`Op`]: create, add, swap, destroy) goes to the kernel as a request and is confirmed
//! before the next, and [`super::dump`] reads the sets. `ipset restore` would parse each
//! member with the C library's address parser (~20 ms for 10 000 pins) after starting a
//! process; the kernel's own part is a few milliseconds.

use std::io;

use ipnet::IpNet;

use super::Op;
use crate::family::Family;
use crate::kernel::nfnetlink::{self, Socket, attr, attributes};

/// nfnetlink subsystem of ipset, and its commands.
pub(super) const NFNL_SUBSYS_IPSET: u16 = 6;
const IPSET_CMD_CREATE: u16 = 2;
const IPSET_CMD_DESTROY: u16 = 3;
const IPSET_CMD_SWAP: u16 = 6;
pub(super) const IPSET_CMD_SAVE: u16 = 8;
const IPSET_CMD_ADD: u16 = 9;
const IPSET_CMD_TYPE: u16 = 13;
/// The protocol version the kernel speaks since Linux 3.x (ipset 7).
pub(super) const IPSET_PROTOCOL: u8 = 7;
// Command-level attributes.
pub(super) const ATTR_PROTOCOL: u16 = 1;
pub(super) const ATTR_SETNAME: u16 = 2;
/// Also the second set's name of a swap.
const ATTR_TYPENAME: u16 = 3;
const ATTR_REVISION: u16 = 4;
const ATTR_FAMILY: u16 = 5;
pub(super) const ATTR_DATA: u16 = 7;
pub(super) const ATTR_ADT: u16 = 8;
/// Required beside a list of entries (the line number an error refers to).
const ATTR_LINENO: u16 = 9;
const ATTR_REVISION_MIN: u16 = 10;
// Entry (and header) attributes.
pub(super) const ATTR_IP: u16 = 1;
pub(super) const ATTR_CIDR: u16 = 3;
pub(super) const ATTR_PORT: u16 = 4;
pub(super) const ATTR_TIMEOUT: u16 = 6;
const ATTR_HASHSIZE: u16 = 18;
pub(super) const ATTR_IPADDR_IPV4: u16 = 1;
pub(super) const ATTR_IPADDR_IPV6: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// A request the kernel acknowledges. Without `NLM_F_EXCL`, creating a set that exists
/// alike and adding a member that is there are not errors (ipset's `-exist`).
const REQUEST_ACK: u16 = 1 | 4;
const NLMSG_ERROR: u16 = 2;
/// Entries per message: the list is one attribute, whose length is 16 bits.
const PER_MESSAGE: usize = 1000;
/// The type and the revision multiwan creates: revision 6 of `hash:net` (Linux 4.3,
/// ipset 6.24) has every option multiwan uses, and every `ipset` tool since 2014 can
/// still list it; a newer kernel's newest revision might not be (the host's tool would
/// then fail on our sets).
const TYPE: &str = "hash:net";
const PREFERRED_REVISION: u8 = 6;
/// ipset's own error numbers (above the errno range).
const IPSET_ERR_PROTOCOL: i32 = 4097;
const IPSET_ERR_FIND_TYPE: i32 = 4098;
const IPSET_ERR_EXIST_SETNAME2: i32 = 4101;
const IPSET_ERR_TYPE_MISMATCH: i32 = 4102;
const IPSET_ERR_REFERENCED: i32 = 4108;
const IPSET_ERR_HASH_FULL: i32 = 4352;

/// Sends `ops` in order, each confirmed by the kernel before the next. Blocking: run it
/// off the event loop.
pub fn run(ops: &[Op]) -> io::Result<()> {
    let socket = Socket::open()?;
    let mut revisions = [None, None];
    for op in ops {
        let messages = match op {
            Op::Destroy(name) => vec![by_name(IPSET_CMD_DESTROY, name, None)],
            Op::Swap(from, to) => vec![by_name(IPSET_CMD_SWAP, from, Some(to))],
            Op::Create {
                name,
                family,
                hashsize,
                timeout,
            } => {
                let slot = usize::from(*family == Family::Ipv6);
                let revision = match revisions[slot] {
                    Some(r) => r,
                    None => *revisions[slot].insert(revision(&socket, *family)?),
                };
                vec![create_message(name, *family, revision, *hashsize, *timeout)]
            }
            Op::Add {
                name,
                family,
                members,
            } => members
                .chunks(PER_MESSAGE)
                .map(|chunk| add_message(name, *family, chunk))
                .collect(),
        };
        exchange(&socket, &messages).map_err(|code| error(op, code))?;
    }
    Ok(())
}

/// Sends `messages` and waits for each one's acknowledgement: the first error code, or
/// the socket's error as `EIO`-like codes from `io::Error`.
fn exchange(socket: &Socket, messages: &[Vec<u8>]) -> Result<(), i32> {
    let os = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    for m in messages {
        socket.send(m).map_err(os)?;
    }
    let mut acked = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while acked < messages.len() {
        let n = socket.recv(&mut buf).map_err(os)?;
        for code in acks(&buf[..n]) {
            if code != 0 {
                return Err(-code);
            }
            acked += 1;
        }
    }
    Ok(())
}

fn error(op: &Op, code: i32) -> io::Error {
    let what = match op {
        Op::Destroy(name) => format!("destroying set {name}"),
        Op::Swap(from, to) => format!("swapping set {from} into {to}"),
        Op::Create { name, .. } => format!("creating set {name}"),
        Op::Add { name, .. } => format!("adding members to set {name}"),
    };
    let why = match code {
        IPSET_ERR_HASH_FULL => "the set is full (maxelem)".to_string(),
        IPSET_ERR_PROTOCOL => "the kernel does not speak ipset protocol 7".to_string(),
        IPSET_ERR_FIND_TYPE => format!("the kernel has no {TYPE} set type"),
        IPSET_ERR_EXIST_SETNAME2 => "a set of that name exists with other options".to_string(),
        IPSET_ERR_TYPE_MISMATCH => "the two sets differ in type or family".to_string(),
        IPSET_ERR_REFERENCED => "a rule still uses it".to_string(),
        c if c < 4096 => io::Error::from_raw_os_error(c).to_string(),
        c => format!("ipset error {c}"),
    };
    io::Error::other(format!("{what}: {why}"))
}

/// The body every request starts with: the protocol version, then the set's name.
fn request_body(set: &str) -> Vec<u8> {
    let mut body = Vec::new();
    attr(&mut body, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    attr(&mut body, ATTR_SETNAME, &nul_terminated(set));
    body
}

fn nul_terminated(name: &str) -> Vec<u8> {
    let mut out = name.as_bytes().to_vec();
    out.push(0);
    out
}

fn message(command: u16, family: Family, body: &[u8]) -> Vec<u8> {
    let kind = (NFNL_SUBSYS_IPSET << 8) | command;
    nfnetlink::message(kind, REQUEST_ACK, 0, family.af(), body)
}

/// A destroy (`other`: None) or a swap of `set` with `other`.
fn by_name(command: u16, set: &str, other: Option<&str>) -> Vec<u8> {
    let mut body = request_body(set);
    if let Some(other) = other {
        attr(&mut body, ATTR_TYPENAME, &nul_terminated(other));
    }
    message(command, Family::Ipv4, &body)
}

fn create_message(
    set: &str,
    family: Family,
    revision: u8,
    hashsize: Option<usize>,
    timeout: Option<u32>,
) -> Vec<u8> {
    let mut body = request_body(set);
    attr(&mut body, ATTR_TYPENAME, &nul_terminated(TYPE));
    attr(&mut body, ATTR_REVISION, &[revision]);
    attr(&mut body, ATTR_FAMILY, &[family.af()]);
    let mut data = Vec::new();
    if let Some(h) = hashsize {
        let h = u32::try_from(h).unwrap_or(u32::MAX);
        attr(
            &mut data,
            ATTR_HASHSIZE | NLA_F_NET_BYTEORDER,
            &h.to_be_bytes(),
        );
    }
    if let Some(t) = timeout {
        attr(
            &mut data,
            ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            &t.to_be_bytes(),
        );
    }
    attr(&mut body, ATTR_DATA | NLA_F_NESTED, &data);
    message(IPSET_CMD_CREATE, family, &body)
}

/// The revision of `hash:net` to create in `family`: the preferred one, within what the
/// kernel supports.
fn revision(socket: &Socket, family: Family) -> io::Result<u8> {
    let mut body = Vec::new();
    attr(&mut body, ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
    attr(&mut body, ATTR_TYPENAME, &nul_terminated(TYPE));
    attr(&mut body, ATTR_FAMILY, &[family.af()]);
    socket.send(&message(IPSET_CMD_TYPE, family, &body))?;
    let mut range = None;
    let mut buf = vec![0u8; 4096];
    // The reply, then its acknowledgement (read too, so that it is not taken for the next
    // request's).
    loop {
        let n = socket.recv(&mut buf)?;
        nfnetlink::dump_messages(&buf[..n], |_, reply| range = range.or(revisions(reply)))
            .map_err(|e| io::Error::other(format!("asking for the {TYPE} set type: {e}")))?;
        if !acks(&buf[..n]).is_empty() {
            break;
        }
    }
    let (min, max) = range.ok_or_else(|| {
        io::Error::other(format!(
            "the kernel did not say which {TYPE} revisions it has"
        ))
    })?;
    Ok(PREFERRED_REVISION.clamp(min, max.max(min)))
}

/// (oldest, newest) revision from a type reply.
fn revisions(reply: &[u8]) -> Option<(u8, u8)> {
    let get = |kind| {
        attributes(reply)
            .find(|(k, _)| *k == kind)
            .and_then(|(_, v)| v.first().copied())
    };
    Some((get(ATTR_REVISION_MIN).unwrap_or(0), get(ATTR_REVISION)?))
}

/// One `IPSET_CMD_ADD` request with `members` as its list of entries.
fn add_message(set: &str, family: Family, members: &[(IpNet, Option<u32>)]) -> Vec<u8> {
    let mut body = request_body(set);
    let mut list = Vec::with_capacity(members.len() * 48);
    for (net, timeout) in members {
        attr(&mut list, ATTR_DATA | NLA_F_NESTED, &entry(net, *timeout));
    }
    attr(&mut body, ATTR_LINENO, &0u32.to_ne_bytes());
    attr(&mut body, ATTR_ADT | NLA_F_NESTED, &list);
    message(IPSET_CMD_ADD, family, &body)
}

/// One entry: its address (network byte order, as the kernel requires), its prefix length
/// and the seconds it has left (None: the set's default).
fn entry(net: &IpNet, timeout: Option<u32>) -> Vec<u8> {
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
    if let Some(t) = timeout {
        attr(
            &mut out,
            ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            &t.to_be_bytes(),
        );
    }
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
        let e = entry(&"10.1.2.0/24".parse().unwrap(), None);
        assert_eq!(
            e,
            [
                12, 0, 0x01, 0x80, // IP, nested
                8, 0, 0x01, 0x40, 10, 1, 2, 0, // IPADDR_IPV4, network byte order
                5, 0, 3, 0, 24, 0, 0, 0, // CIDR 24, padded
            ]
        );
        let e6 = entry(&"2001:db8::/32".parse().unwrap(), None);
        assert_eq!(e6.len(), 4 + 20 + 8);
        assert_eq!(&e6[8..12], &[0x20, 0x01, 0x0d, 0xb8]);
        // A learned member carries the seconds it has left, in network byte order.
        let timed = entry(&"10.1.2.0/24".parse().unwrap(), Some(600));
        assert_eq!(&timed[20..], &[8, 0, 6, 0x40, 0, 0, 2, 88]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn a_request_names_the_set_and_lists_every_entry() {
        let members: Vec<(IpNet, Option<u32>)> = vec![
            ("10.0.0.1/32".parse().unwrap(), None),
            ("10.9.0.0/16".parse().unwrap(), None),
        ];
        let m = add_message("multiwan_s", Family::Ipv4, &members);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x609);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), REQUEST_ACK);
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

    /// The attributes after the headers, as (kind without flags, payload).
    fn body(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
        attributes(&m[20..]).map(|(k, v)| (k, v.to_vec())).collect()
    }

    #[test]
    fn a_create_names_type_revision_family_and_options() {
        let m = create_message("multiwan6_s", Family::Ipv6, 6, Some(8192), Some(600));
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x602);
        let attrs = body(&m);
        assert_eq!(attrs[1], (ATTR_SETNAME, b"multiwan6_s\0".to_vec()));
        assert_eq!(attrs[2], (ATTR_TYPENAME, b"hash:net\0".to_vec()));
        assert_eq!(attrs[3], (ATTR_REVISION, vec![6]));
        assert_eq!(attrs[4], (ATTR_FAMILY, vec![10]));
        assert_eq!(attrs[5].0, ATTR_DATA);
        let data: Vec<(u16, Vec<u8>)> = attributes(&attrs[5].1)
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(
            data,
            vec![
                (ATTR_HASHSIZE, 8192u32.to_be_bytes().to_vec()),
                (ATTR_TIMEOUT, 600u32.to_be_bytes().to_vec()),
            ]
        );
        // Without options the data is there, empty.
        let plain = body(&create_message("multiwan_s", Family::Ipv4, 6, None, None));
        assert_eq!(plain[5], (ATTR_DATA, vec![]));
    }

    #[test]
    fn a_swap_names_both_sets_and_a_destroy_one() {
        let swap = body(&by_name(
            IPSET_CMD_SWAP,
            "multiwan_.new",
            Some("multiwan_s"),
        ));
        assert_eq!(swap[1], (ATTR_SETNAME, b"multiwan_.new\0".to_vec()));
        assert_eq!(swap[2], (ATTR_TYPENAME, b"multiwan_s\0".to_vec()));
        let destroy = by_name(IPSET_CMD_DESTROY, "multiwan_s", None);
        assert_eq!(u16::from_ne_bytes([destroy[4], destroy[5]]), 0x603);
        // Never a destroy without a name: that would destroy every set.
        assert_eq!(body(&destroy)[1], (ATTR_SETNAME, b"multiwan_s\0".to_vec()));
    }

    #[test]
    fn the_preferred_revision_is_kept_within_what_the_kernel_has() {
        let reply = |min: Option<u8>, max: u8| {
            let mut b = Vec::new();
            attr(&mut b, ATTR_REVISION, &[max]);
            if let Some(min) = min {
                attr(&mut b, ATTR_REVISION_MIN, &[min]);
            }
            b
        };
        assert_eq!(revisions(&reply(Some(0), 7)), Some((0, 7)));
        assert_eq!(revisions(&reply(None, 4)), Some((0, 4)));
        assert_eq!(revisions(&[]), None);
        let clamp = |(min, max): (u8, u8)| PREFERRED_REVISION.clamp(min, max.max(min));
        assert_eq!(clamp((0, 7)), 6);
        assert_eq!(clamp((0, 4)), 4);
        assert_eq!(clamp((7, 9)), 7);
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
        let add = Op::Add {
            name: "multiwan_s".into(),
            family: Family::Ipv4,
            members: Vec::new(),
        };
        let e = error(&add, IPSET_ERR_HASH_FULL).to_string();
        assert!(e.contains("multiwan_s") && e.contains("full"), "{e}");
        let e = error(&Op::Destroy("multiwan_s".into()), IPSET_ERR_REFERENCED).to_string();
        assert!(e.contains("a rule still uses it"), "{e}");
    }
}
