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
    super::nfnetlink::read_dump(&socket, |_, entry| {
        let (mark, bytes) = dump::mark_and_bytes(entry);
        let t: &mut Tally = tallies.entry(mark & mask).or_default();
        t.connections += 1;
        t.bytes += bytes;
    })?;
    Ok(tallies)
}

mod dump {
    //! Just enough of ctnetlink to dump the table and read each entry's mark and byte
    //! counters (linux/netfilter/nfnetlink_conntrack.h).

    use std::io;

    use crate::kernel::nfnetlink::{self, Socket, attributes};
    use crate::plan::Family;

    /// `IPCTNL_MSG_CT_GET` in the `NFNL_SUBSYS_CTNETLINK` subsystem.
    const CT_GET: u16 = (1 << 8) | 1;
    /// The entry's attributes we read (`CTA_MARK`, `CTA_COUNTERS_ORIG`, `_REPLY`), and the
    /// byte count inside the counters (`CTA_COUNTERS_BYTES`).
    const ATTRIBUTES: Attributes = Attributes {
        mark: 8,
        counters: [9, 10],
        bytes: 2,
    };

    struct Attributes {
        mark: u16,
        counters: [u16; 2],
        bytes: u16,
    }

    /// Asks for a dump of `family`'s conntrack table.
    pub fn request_dump(socket: &Socket, family: Family) -> io::Result<()> {
        let msg = nfnetlink::message(CT_GET, nfnetlink::DUMP_REQUEST, 1, family.af(), &[]);
        socket.send(&msg)
    }

    fn bytes_of(counters: &[u8]) -> u64 {
        attributes(counters)
            .find(|(k, _)| *k == ATTRIBUTES.bytes)
            .and_then(|(_, v)| v.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// An entry's mark and bytes (both directions), from its attributes.
    pub fn mark_and_bytes(entry: &[u8]) -> (u32, u64) {
        let (mut mark, mut bytes) = (0, 0);
        for (k, v) in attributes(entry) {
            if k == ATTRIBUTES.mark {
                mark = v.try_into().map_or(0, u32::from_be_bytes);
            } else if ATTRIBUTES.counters.contains(&k) {
                bytes += bytes_of(v);
            }
        }
        (mark, bytes)
    }

    #[cfg(test)]
    pub mod tests {
        use super::*;

        pub fn entry(mark: u32, bytes: u64) -> Vec<u8> {
            let mut body = Vec::new();
            nfnetlink::attr(&mut body, 1, &[0; 8]); // a tuple we do not read
            nfnetlink::attr(&mut body, ATTRIBUTES.mark, &mark.to_be_bytes());
            let mut counters = Vec::new();
            nfnetlink::attr(&mut counters, ATTRIBUTES.bytes, &bytes.to_be_bytes());
            for kind in ATTRIBUTES.counters {
                nfnetlink::attr(&mut body, kind | 0x8000, &counters);
            }
            body
        }

        #[test]
        fn reads_the_mark_and_the_bytes_of_both_directions() {
            assert_eq!(mark_and_bytes(&entry(0x100, 10)), (0x100, 20));
            assert_eq!(mark_and_bytes(&[]), (0, 0));
            assert_eq!(mark_and_bytes(&[0xff; 7]), (0, 0));
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
