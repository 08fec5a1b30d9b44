//! Probe sockets: ICMP echo probes out of one uplink with surge-ping, the other methods
//! ([`methods`]: TCP, DNS, HTTP), and TCP checks of port-forward backends. An uplink's
//! sockets are bound to its interface **and** source address, and carry its mark
//! (SO_MARK): the fwmark rule sends them through the uplink's table, so a probe can only
//! be answered if that ISP really carries it (binding alone does not steer a probe: see
//! docs/architecture.md).

pub mod methods;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use crate::config::ProbeMethod;
use crate::family::Family;
use crate::health::ProbeRequest;

/// ICMP type of an echo reply. On raw sockets an ICMP error quoting our request is also
/// handed back as a "reply"; it must not count as the target answering.
const ECHO_REPLY: u8 = 0;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8] = b"multiwan probe";
/// How much longer than the probe's timeout its task waits (any method). The health machine judges
/// the deadline itself; this only ends the task. Were both the same, after the daemon was
/// not scheduled for a while the task's timer could fire before the reply already at the
/// host was read, and an answered probe would count as lost.
const TASK_GRACE: Duration = Duration::from_secs(1);
/// Log target of per-probe lines (debug level): `RUST_LOG=info,multiwan::probe=debug`
/// shows every probe sent and every reply with its RTT.
pub const LOG_TARGET: &str = "multiwan::probe";

/// What became of one probe of one family of an uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    Reply {
        uplink: String,
        family: Family,
        seq: u16,
        rtt: Duration,
    },
    Failed {
        uplink: String,
        family: Family,
        seq: u16,
        why: String,
    },
    /// A port-forward backend check: did a TCP connect succeed in time?
    Backend {
        forward: String,
        index: usize,
        ok: bool,
        why: String,
    },
}

/// Checks a backend with a TCP connect from the router, in its own task.
pub fn check_backend(
    forward: &str,
    index: usize,
    addr: std::net::SocketAddrV4,
    timeout: Duration,
    events: UnboundedSender<ProbeEvent>,
) {
    let forward = forward.to_string();
    tokio::spawn(async move {
        let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
        let (ok, why) = match result {
            Ok(Ok(_)) => (true, String::new()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, format!("no answer in {} ms", timeout.as_millis())),
        };
        let _ = events.send(ProbeEvent::Backend {
            forward,
            index,
            ok,
            why,
        });
    });
}

/// The probe sockets of one family of one uplink: a standing ICMP socket, and sockets of
/// the other methods made per probe.
pub struct Prober {
    client: Client,
    ident: u16,
    /// The interface's index: the scope of a link-local target (an IPv6 gateway), and what
    /// tells a re-created interface of the same name (a PPP reconnect) from the old one.
    pub index: u32,
    pub interface: String,
    pub source: IpAddr,
    pub mark: u32,
}

impl Prober {
    /// A socket of `source`'s family, bound to the interface and that address. `mark` is
    /// the uplink's fwmark (our bits only): the fwmark rule sends every probe through the
    /// uplink's table, and the OUTPUT chain leaves a marked packet alone.
    pub fn new(
        interface: &str,
        index: u32,
        source: IpAddr,
        ident: u16,
        mark: u32,
    ) -> std::io::Result<Self> {
        let kind = match source {
            IpAddr::V4(_) => ICMP::V4,
            IpAddr::V6(_) => ICMP::V6,
        };
        let config = Config::builder()
            .kind(kind)
            .interface(interface)
            .bind(SocketAddr::new(source, 0))
            .build();
        let client = Client::new(&config)?;
        set_mark(client.get_socket().get_native_sock(), mark)?;
        Ok(Self {
            client,
            ident,
            index,
            interface: interface.to_string(),
            source,
            mark,
        })
    }

    /// Sends one probe in its own task; the outcome arrives on `events`.
    pub fn send(&self, uplink: &str, req: ProbeRequest, events: UnboundedSender<ProbeEvent>) {
        let client = self.client.clone();
        let ident = PingIdentifier(self.ident);
        let uplink = uplink.to_string();
        let family = Family::of_addr(&self.source);
        let scope = self.index;
        let path = methods::Path {
            interface: self.interface.clone(),
            source: self.source,
            mark: self.mark,
        };
        tokio::spawn(async move {
            let target = &req.target;
            debug!(target: LOG_TARGET, %uplink, %family, seq = req.seq, target = %target, "probe sent");
            let to = SocketAddr::new(target.addr, target.method.port());
            let wait = req.timeout + TASK_GRACE;
            let outcome = match &target.method {
                ProbeMethod::Icmp => {
                    let mut pinger = client.pinger(target.addr, ident).await;
                    pinger.timeout(wait);
                    if matches!(target.addr, IpAddr::V6(t) if t.is_unicast_link_local()) {
                        pinger.scope_id(scope);
                    }
                    match pinger.ping(PingSequence(req.seq), PAYLOAD).await {
                        Ok((packet, rtt)) => answer(&packet).map(|()| rtt),
                        Err(SurgeError::Timeout { .. }) => Err("timeout".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                ProbeMethod::Tcp { .. } => methods::tcp(&path, to, wait).await,
                ProbeMethod::Dns { query, .. } => {
                    methods::dns(&path, to, query, req.seq, wait).await
                }
                ProbeMethod::Http {
                    host,
                    path: uri,
                    expect,
                    ..
                } => methods::http(&path, to, host, uri, *expect, wait).await,
            };
            let event = match outcome {
                Ok(rtt) => {
                    debug!(target: LOG_TARGET, %uplink, %family, seq = req.seq, rtt_us = rtt.as_micros() as u64, "probe reply");
                    ProbeEvent::Reply {
                        uplink,
                        family,
                        seq: req.seq,
                        rtt,
                    }
                }
                Err(why) => ProbeEvent::Failed {
                    uplink,
                    family,
                    seq: req.seq,
                    why,
                },
            };
            let _ = events.send(event);
        });
    }
}

/// Ok when the packet handed back is an echo reply (not an error quoting our request).
fn answer(packet: &IcmpPacket) -> Result<(), String> {
    let (kind, reply, source): (u8, u8, IpAddr) = match packet {
        IcmpPacket::V4(p) => (p.get_icmp_type().0, ECHO_REPLY, p.get_source().into()),
        IcmpPacket::V6(p) => (p.get_icmpv6_type().0, ECHO_REPLY_V6, p.get_source().into()),
    };
    if kind == reply {
        Ok(())
    } else {
        Err(format!(
            "ICMP type {kind} from {source} instead of an echo reply"
        ))
    }
}

/// SO_MARK on the probe socket (needs CAP_NET_ADMIN, which the daemon has anyway).
fn set_mark(fd: std::os::fd::RawFd, mark: u32) -> std::io::Result<()> {
    // SAFETY: fd is the client's open socket; the option value is a plain u32.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
