//! A minimal DNS client for the lab: one A query over UDP, the answer's addresses.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Asks `server` (from `src`) for the A records of `name`; None when nothing usable came
/// back within 3 s.
pub fn resolve_a(src: Ipv4Addr, server: SocketAddr, name: &str) -> Option<Vec<Ipv4Addr>> {
    let sock = UdpSocket::bind(SocketAddr::from((src, 0))).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    sock.send_to(&query(0x4d57, name), server).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    answers(&buf[..n], 0x4d57)
}

/// A recursive query for `name`, type A, class IN.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The A records of a response to query `id`.
fn answers(msg: &[u8], id: u16) -> Option<Vec<Ipv4Addr>> {
    let word =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?])) };
    if word(0)? != id || msg.get(3)? & 0x0f != 0 {
        return None;
    }
    let (questions, records) = (word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..records {
        at = skip_name(msg, at)?;
        let (kind, len) = (word(at)?, usize::from(word(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len)?;
        if kind == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(out)
}

/// The offset after a (possibly compressed) name.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}
