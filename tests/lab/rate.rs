//! A connection generator: new TCP connections per second from the LAN through the router
//! to the internet, as many as the machine can make. Each client connects from its own LAN
//! address; both ends reset the connection at once (no TIME_WAIT on either side, so no port
//! runs out and no reused port meets an old connection). What is measured is the router's cost per new connection.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Lab, connect_bound, enter_netns};

/// The server's address (the lab's echo address) and its first port.
pub const RATE_SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 10), 9000);
/// How many ports the server listens on; clients go round them, so the same four-tuple
/// comes back only long after the router's conntrack entry of its last use (CLOSE, 10 s) is
/// gone: a reused tuple meeting an old entry would make a SYN go unanswered.
const PORTS: u16 = 64;
/// LAN addresses the clients use, one each (none of the lab's pinned hosts).
const CLIENTS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 0, 0, 10),
    Ipv4Addr::new(10, 0, 0, 11),
    Ipv4Addr::new(10, 0, 0, 12),
    Ipv4Addr::new(10, 0, 0, 13),
];

impl Lab {
    /// Starts the accept-and-drop server in the internet (once per lab).
    pub fn start_rate_server(&self) {
        for port in RATE_SERVER.1..RATE_SERVER.1 + PORTS {
            let path = format!("/var/run/netns/{}", self.ns("inet"));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                enter_netns(&path);
                let listener = TcpListener::bind(SocketAddr::from((RATE_SERVER.0, port)))
                    .expect("bind rate server");
                tx.send(()).unwrap();
                for s in listener.incoming() {
                    drop(s);
                }
            });
            rx.recv_timeout(Duration::from_secs(5))
                .expect("rate server did not start");
        }
    }

    /// Connections per second over `secs`, with one client per LAN address in `CLIENTS`.
    pub fn connection_rate(&self, secs: f64) -> f64 {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = CLIENTS
            .iter()
            .map(|src| {
                let path = format!("/var/run/netns/{}", self.ns("lan"));
                let (src, stop, done) = (*src, stop.clone(), done.clone());
                std::thread::spawn(move || {
                    enter_netns(&path);
                    let (dst, first) = RATE_SERVER;
                    let mut port = first;
                    while !stop.load(Ordering::Relaxed) {
                        port = if port + 1 >= first + PORTS {
                            first
                        } else {
                            port + 1
                        };
                        if let Some(s) = connect_bound(src, dst, port, Duration::from_secs(1)) {
                            reset_on_close(&s);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let n = done.load(Ordering::Relaxed);
        let took = start.elapsed().as_secs_f64();
        for c in clients {
            let _ = c.join();
        }
        n as f64 / took
    }
}

/// SO_LINGER 0: closing sends a reset and leaves no TIME_WAIT behind.
fn reset_on_close(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: sets an option on our own open socket; the value is a plain struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
