//! The conntrack adapter. Deletes the entries of one uplink (by its mark), so connections
//! that were using a dead uplink re-dial through a live one at once: only entries with that
//! exact mark under our mask go; other uplinks, unmarked sessions and other tools' marks
//! stay. Counts connections and bytes per mark from a netlink dump that is read in a fixed
//! buffer and never materialised, so a table of a million entries costs no memory.

use std::collections::HashMap;
use std::io;

use super::exec::{self, ToolError};
use crate::plan::Family;

/// Deletes entries of `family` whose mark matches `mark` under `mask` (and, given one,
/// whose reply goes to `reply_dst`: NATed to that address); returns how many went.
/// (`conntrack` without `-f` only sees IPv4.)
pub async fn delete_mark(
    family: Family,
    mark: u32,
    mask: u32,
    reply_dst: Option<std::net::IpAddr>,
) -> Result<u64, ToolError> {
    let spec = format!("{mark:#x}/{mask:#x}");
    let dst = reply_dst.map(|a| a.to_string());
    let mut argv = vec!["-D", "-f", family.name(), "--mark", &spec];
    if let Some(d) = &dst {
        argv.extend(["--reply-dst", d.as_str()]);
    }
    let ran = exec::run("conntrack", &argv, None).await?;
    let deleted = deleted_count(&ran.stderr);
    // conntrack exits 1 when nothing matched: not an error for us.
    if ran.success || deleted == Some(0) {
        return Ok(deleted.unwrap_or(0));
    }
    Err(ToolError::Failed {
        tool: format!("conntrack -D -f {family} --mark {spec}"),
        status: ran.status,
        stderr: ran.stderr,
    })
}

/// Reads "N flow entries have been deleted" from conntrack's summary line.
fn deleted_count(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("flow entries have been deleted"))?;
    line.split("):")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Connections and their bytes (both directions; needs `nf_conntrack_acct`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub connections: u64,
    pub bytes: u64,
}

/// Connections per mark value under `mask`, from one dump of the conntrack table. Blocking
/// (a netlink socket read to the end, 5 s at most per read): run it on the blocking pool.
pub fn count_by_mark(family: Family, mask: u32) -> io::Result<HashMap<u32, Tally>> {
    let socket = super::nfnetlink::Socket::open()?;
    dump::request_dump(&socket, family)?;
    let mut tallies = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut buf)?;
        if dump::parse(&buf[..n], |mark, bytes| {
            let t: &mut Tally = tallies.entry(mark & mask).or_default();
            t.connections += 1;
            t.bytes += bytes;
        })? {
            return Ok(tallies);
        }
    }
}

mod dump {
    //! Just enough of ctnetlink to dump the table and read each entry's mark and byte
    //! counters (linux/netfilter/nfnetlink_conntrack.h).

    use std::io;

    use crate::kernel::nfnetlink::Socket;
    use crate::plan::Family;

    /// `IPCTNL_MSG_CT_GET` in the `NFNL_SUBSYS_CTNETLINK` subsystem.
    const CT_GET: u16 = (1 << 8) | 1;
    /// `NLM_F_REQUEST | NLM_F_DUMP`.
    const DUMP_REQUEST: u16 = 0x301;
    /// Control messages that end a dump.
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    /// The entry's attributes we read (`CTA_MARK`, `CTA_COUNTERS_ORIG`, `_REPLY`), and the
    /// byte count inside the counters (`CTA_COUNTERS_BYTES`).
    const ATTRIBUTES: Attributes = Attributes {
        mark: 8,
        counters: [9, 10],
        bytes: 2,
    };
    /// Sizes of the netlink header and of ctnetlink's own header (`nfgenmsg`).
    const HEADER: usize = 16;
    const NFGENMSG: usize = 4;

    struct Attributes {
        mark: u16,
        counters: [u16; 2],
        bytes: u16,
    }

    /// Asks for a dump of `family`'s conntrack table.
    pub fn request_dump(socket: &Socket, family: Family) -> io::Result<()> {
        let mut msg = Vec::with_capacity(HEADER + NFGENMSG);
        msg.extend_from_slice(&((HEADER + NFGENMSG) as u32).to_ne_bytes());
        msg.extend_from_slice(&CT_GET.to_ne_bytes());
        msg.extend_from_slice(&DUMP_REQUEST.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        msg.extend_from_slice(&[family.af(), 0, 0, 0]); // nfgenmsg: family, v0, res_id
        socket.send(&msg)
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn align(n: usize) -> usize {
        (n + 3) & !3
    }

    /// Netlink attributes as (type without flags, payload).
    fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        std::iter::from_fn(move || {
            let len = usize::from(u16_at(b, 0)?);
            let kind = u16_at(b, 2)? & 0x3fff;
            let payload = b.get(4..len)?;
            b = b.get(align(len).min(b.len())..).unwrap_or(&[]);
            Some((kind, payload))
        })
    }

    fn bytes_of(counters: &[u8]) -> u64 {
        attributes(counters)
            .find(|(k, _)| *k == ATTRIBUTES.bytes)
            .and_then(|(_, v)| v.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// Hands each entry's (mark, bytes) in one read of the dump to `each`; true at the end
    /// of the dump.
    pub fn parse(mut b: &[u8], mut each: impl FnMut(u32, u64)) -> io::Result<bool> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed conntrack dump");
        while b.len() >= HEADER {
            let len = u32_at(b, 0).ok_or_else(bad)? as usize;
            let kind = u16_at(b, 4).ok_or_else(bad)?;
            let msg = b.get(..len).filter(|_| len >= HEADER).ok_or_else(bad)?;
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let code = u32_at(msg, HEADER).ok_or_else(bad)? as i32;
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                }
                _ => {
                    let (mut mark, mut bytes) = (0, 0);
                    for (k, v) in attributes(msg.get(HEADER + NFGENMSG..).unwrap_or(&[])) {
                        if k == ATTRIBUTES.mark {
                            mark = v.try_into().map_or(0, u32::from_be_bytes);
                        } else if ATTRIBUTES.counters.contains(&k) {
                            bytes += bytes_of(v);
                        }
                    }
                    each(mark, bytes);
                }
            }
            b = b.get(align(len).min(b.len())..).unwrap_or(&[]);
        }
        Ok(false)
    }

    #[cfg(test)]
    pub mod tests {
        use super::*;

        fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
            let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(&kind.to_ne_bytes());
            a.extend_from_slice(payload);
            a.resize(align(a.len()), 0);
            a
        }

        fn message(kind: u16, body: &[u8]) -> Vec<u8> {
            let mut m = ((HEADER + body.len()) as u32).to_ne_bytes().to_vec();
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(body);
            m
        }

        pub fn entry(mark: u32, bytes: u64) -> Vec<u8> {
            let mut body = vec![2, 0, 0, 0];
            body.extend(attr(1, &[0; 8])); // a tuple we do not read
            body.extend(attr(ATTRIBUTES.mark, &mark.to_be_bytes()));
            let counters = attr(ATTRIBUTES.bytes, &bytes.to_be_bytes());
            for kind in ATTRIBUTES.counters {
                body.extend(attr(kind | 0x8000, &counters));
            }
            message(0x101, &body)
        }

        #[test]
        fn reads_marks_and_bytes_until_done() {
            let mut buf = entry(0x100, 10);
            buf.extend(entry(0x1ff, 5));
            let mut seen = Vec::new();
            assert!(!parse(&buf, |m, b| seen.push((m, b))).unwrap());
            assert_eq!(seen, vec![(0x100, 20), (0x1ff, 10)]);
            let done = message(NLMSG_DONE, &[0; 4]);
            assert!(parse(&done, |_, _| panic!("no entry")).unwrap());
            let mut error = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
            error.extend_from_slice(&[0; 16]);
            assert!(parse(&error, |_, _| {}).is_err());
        }

        #[test]
        fn a_truncated_message_is_an_error_not_a_panic() {
            let buf = entry(0x100, 10);
            assert!(parse(&buf[..buf.len() - 30], |_, _| {}).is_err());
            let mut lying = entry(0x100, 10);
            lying[0] = 3; // a length below the header
            assert!(parse(&lying, |_, _| {}).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        assert_eq!(
            deleted_count(
                "conntrack v1.4.7 (conntrack-tools): 250 flow entries have been deleted."
            ),
            Some(250)
        );
        assert_eq!(
            deleted_count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted."),
            Some(0)
        );
        assert_eq!(deleted_count("conntrack: something else"), None);
    }
}
