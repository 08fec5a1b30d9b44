//! NETLINK_NETFILTER sockets, the one way multiwan talks to netfilter without a tool:
//! requests (a ctnetlink dump, ipset additions) and nf_tables notifications (drift, and the
//! confirmation of the standing restore process's commits).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

const NETLINK_NETFILTER: i32 = 12;
/// The nf_tables multicast group.
const NFNLGRP_NFTABLES: u32 = 7;

/// A socket for requests and their answers. Blocking, with a 5 s receive timeout so that a
/// reply that never comes cannot hang the caller: use it off the event loop.
pub struct Socket(OwnedFd);

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let fd = open(0)?;
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of its size on our own descriptor.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket(fd))
    }

    /// Sends one or more netlink messages to the kernel.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sends our buffer with a sockaddr_nl of its size.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv(&self.0, buf)
    }
}

/// A non-blocking socket subscribed to every nf_tables change (anyone's), registered with
/// the runtime.
pub fn nftables_notifications() -> io::Result<AsyncFd<OwnedFd>> {
    let fd = open(libc::SOCK_NONBLOCK)?;
    // SAFETY: a zeroed sockaddr_nl of its size, with our group set.
    let rc = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = 1 << (NFNLGRP_NFTABLES - 1);
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the AsyncFd owns the descriptor: it stays open and the same for its whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Reads one datagram (on a non-blocking socket, `WouldBlock` when there is none).
pub fn recv(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads into our buffer, at most its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn open(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: a fresh socket, owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sizes of the netlink header and of nfnetlink's own header (`nfgenmsg`).
pub const HEADER: usize = 16;
pub const NFGENMSG: usize = 4;
/// `NLM_F_REQUEST | NLM_F_DUMP`.
pub const DUMP_REQUEST: u16 = 0x301;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Appends a netlink attribute, padded to 4 bytes.
pub fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend(((4 + value.len()) as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// One request: the netlink header, `nfgenmsg` for `family` (an AF_ number), then `body`.
pub fn message(kind: u16, flags: u16, seq: u32, family: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER + NFGENMSG + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend((len as u32).to_ne_bytes());
    m.extend(kind.to_ne_bytes());
    m.extend(flags.to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // port id: the kernel's
    m.extend([family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id
    m.extend(body);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Netlink attributes as (type without its flags, payload). Stops at the first one whose
/// length does not fit: what the kernel sent is read, garbage is not trusted.
pub fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & 0x3fff;
        let payload = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4).min(b.len())..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// Hands each message of one read of a dump to `each` as (type, attributes after the
/// `nfgenmsg`); true at the end of the dump. A kernel error is returned, a message that does
/// not fit is `InvalidData`.
pub fn dump_messages(mut b: &[u8], mut each: impl FnMut(u16, &[u8])) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink dump");
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
            _ => each(kind, msg.get(HEADER + NFGENMSG..).unwrap_or(&[])),
        }
        b = b.get(len.next_multiple_of(4).min(b.len())..).unwrap_or(&[]);
    }
    Ok(false)
}

/// Reads a dump requested on `socket` to its end, handing each message to `each`.
pub fn read_dump(socket: &Socket, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut buf)?;
        if dump_messages(&buf[..n], &mut each)? {
            return Ok(());
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A message as the kernel sends it (its own header, `nfgenmsg`, then `body`).
    pub fn reply(kind: u16, body: &[u8]) -> Vec<u8> {
        message(kind, 0, 0, 2, body)
    }

    pub fn done() -> Vec<u8> {
        reply(NLMSG_DONE, &[])
    }

    #[test]
    fn a_dump_is_read_until_done_and_errors_are_returned() {
        let mut a = Vec::new();
        attr(&mut a, 1 | 0x8000, &[9, 9]);
        let mut buf = reply(0x101, &a);
        buf.extend(reply(0x101, &[]));
        let mut seen = Vec::new();
        assert!(!dump_messages(&buf, |k, b| seen.push((k, b.to_vec()))).unwrap());
        assert_eq!(seen.len(), 2);
        let attrs: Vec<(u16, &[u8])> = attributes(&seen[0].1).collect();
        assert_eq!(attrs, vec![(1, &[9u8, 9][..])]);
        assert!(dump_messages(&done(), |_, _| panic!("no message")).unwrap());
        let mut error = message(NLMSG_ERROR, 0, 0, 0, &[0; 16]);
        error[HEADER..HEADER + 4].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(dump_messages(&error, |_, _| {}).is_err());
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let buf = reply(0x101, &[0; 40]);
        assert!(dump_messages(&buf[..buf.len() - 30], |_, _| {}).is_err());
        let mut lying = buf.clone();
        lying[0] = 3; // a length below the header
        assert!(dump_messages(&lying, |_, _| {}).is_err());
        assert_eq!(attributes(&[200, 0, 1, 0, 5]).count(), 0);
    }
}
