//! Probe targets with a real round-trip time. The kernel here has no netem, so the lab's
//! paths answer in tens of microseconds; an ISP answers in milliseconds. This responder
//! owns a TUN device in the internet namespace, takes over the probe targets' addresses
//! and answers every ICMP echo request after a fixed delay, from userspace.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Lab, TARGETS, enter_netns};

const TUN_NAME: &str = "dly0";

impl Lab {
    /// From now on the probe targets answer pings after `delay` (for as long as the lab
    /// lives): their addresses move from `lo` to a TUN device served by a thread.
    pub fn delay_targets(&self, delay: Duration) {
        let path = format!("/var/run/netns/{}", self.ns("inet"));
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            enter_netns(&path);
            let tun = open_tun(TUN_NAME);
            ready_tx.send(()).unwrap();
            serve(tun, delay);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the delay responder did not start");
        for t in TARGETS {
            self.ip("inet", &["addr", "del", &format!("{t}/32"), "dev", "lo"]);
        }
        // The targets are no longer local: the internet now forwards to them.
        self.sysctl("inet", "net.ipv4.ip_forward", "1");
        self.ip("inet", &["link", "set", TUN_NAME, "up"]);
        for t in TARGETS {
            self.ip(
                "inet",
                &["route", "add", &format!("{t}/32"), "dev", TUN_NAME],
            );
        }
    }
}

fn open_tun(name: &str) -> std::fs::File {
    // SAFETY: plain open and ioctl on a fresh descriptor; `ifreq` is zeroed and then
    // holds a NUL-terminated name of at most 15 bytes.
    unsafe {
        let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        assert!(fd >= 0, "open /dev/net/tun");
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        assert_eq!(libc::ioctl(fd, TUNSETIFF, &req), 0, "TUNSETIFF");
        std::fs::File::from_raw_fd(fd)
    }
}

/// Reads echo requests, and writes each reply back when its delay has passed.
fn serve(tun: std::fs::File, delay: Duration) {
    let mut writer = tun.try_clone().expect("clone tun");
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (due, reply) in rx {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = writer.write_all(&reply);
        }
    });
    let mut reader = tun;
    let mut buf = [0u8; 2048];
    while let Ok(n) = reader.read(&mut buf) {
        if let Some(reply) = echo_reply(&buf[..n]) {
            let _ = tx.send((Instant::now() + delay, reply));
        }
    }
}

/// The echo reply to an IPv4 ICMP echo request: addresses swapped, type 8 becomes 0.
fn echo_reply(packet: &[u8]) -> Option<Vec<u8>> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let is_echo = packet.first()? >> 4 == 4 && packet.get(9) == Some(&1);
    if !is_echo || packet.get(ihl) != Some(&8) {
        return None;
    }
    let mut p = packet.to_vec();
    let (src, dst) = (p[12..16].to_vec(), p[16..20].to_vec());
    p[12..16].copy_from_slice(&dst);
    p[16..20].copy_from_slice(&src);
    p[ihl] = 0;
    // Type 8 -> 0 lowers the ICMP sum by 0x0800: add it to the checksum (RFC 1624).
    let sum = u32::from(u16::from_be_bytes([p[ihl + 2], p[ihl + 3]])) + 0x0800;
    let folded = ((sum & 0xffff) + (sum >> 16)) as u16;
    p[ihl + 2..ihl + 4].copy_from_slice(&folded.to_be_bytes());
    Some(p)
}
