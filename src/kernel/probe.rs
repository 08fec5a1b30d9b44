//! Probe sockets: ICMP echo probes out of one uplink with surge-ping, and TCP checks of
//! port-forward backends. An uplink's socket is bound to its interface **and** source
//! address, and carries its mark (SO_MARK): the fwmark rule sends it through the uplink's
//! table, so a probe can only be answered if that ISP really carries it (binding alone
//! does not steer a probe: see docs/architecture.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use crate::health::ProbeRequest;

/// ICMP type of an echo reply. On raw sockets an ICMP error quoting our request is also
/// handed back as a "reply"; it must not count as the target answering.
const ECHO_REPLY: u8 = 0;
const PAYLOAD: &[u8] = b"multiwan probe";
/// Log target of per-probe lines (debug level): `RUST_LOG=info,multiwan::probe=debug`
/// shows every probe sent and every reply with its RTT.
pub const LOG_TARGET: &str = "multiwan::probe";

/// What became of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    Reply {
        uplink: String,
        seq: u16,
        rtt: Duration,
    },
    Failed {
        uplink: String,
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

/// The probe socket of one uplink.
pub struct Prober {
    client: Client,
    ident: u16,
    pub interface: String,
    pub source: Ipv4Addr,
    pub mark: u32,
}

impl Prober {
    /// `mark` is the uplink's fwmark (our bits only): the fwmark rule sends every probe
    /// through the uplink's table, and the OUTPUT chain leaves a marked packet alone.
    pub fn new(interface: &str, source: Ipv4Addr, ident: u16, mark: u32) -> std::io::Result<Self> {
        let config = Config::builder()
            .kind(ICMP::V4)
            .interface(interface)
            .bind(SocketAddr::new(IpAddr::V4(source), 0))
            .build();
        let client = Client::new(&config)?;
        set_mark(client.get_socket().get_native_sock(), mark)?;
        Ok(Self {
            client,
            ident,
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
        tokio::spawn(async move {
            let mut pinger = client.pinger(IpAddr::V4(req.target), ident).await;
            pinger.timeout(req.timeout);
            debug!(target: LOG_TARGET, %uplink, seq = req.seq, target = %req.target, "probe sent");
            let event = match pinger.ping(PingSequence(req.seq), PAYLOAD).await {
                Ok((IcmpPacket::V4(p), rtt)) if p.get_icmp_type().0 == ECHO_REPLY => {
                    debug!(target: LOG_TARGET, %uplink, seq = req.seq, rtt_us = rtt.as_micros() as u64, "probe reply");
                    ProbeEvent::Reply {
                        uplink,
                        seq: req.seq,
                        rtt,
                    }
                }
                Ok((IcmpPacket::V4(p), _)) => ProbeEvent::Failed {
                    uplink,
                    seq: req.seq,
                    why: format!(
                        "ICMP type {} from {} instead of an echo reply",
                        p.get_icmp_type().0,
                        p.get_source()
                    ),
                },
                Ok(_) => ProbeEvent::Failed {
                    uplink,
                    seq: req.seq,
                    why: "not an ICMPv4 packet".into(),
                },
                Err(SurgeError::Timeout { .. }) => ProbeEvent::Failed {
                    uplink,
                    seq: req.seq,
                    why: "timeout".into(),
                },
                Err(e) => ProbeEvent::Failed {
                    uplink,
                    seq: req.seq,
                    why: e.to_string(),
                },
            };
            let _ = events.send(event);
        });
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
