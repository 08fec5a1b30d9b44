//! A minimal HTTP server for the lab: answers every request with one fixed response (a 204
//! for a connectivity check, a 302 for a captive portal).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use super::{Lab, enter_netns};

impl Lab {
    /// Serves `response` (status line and headers, without the final blank line) on
    /// `addr:port` in `role`.
    pub fn serve_http(&self, role: &str, addr: impl Into<IpAddr>, port: u16, response: &str) {
        let path = format!("/var/run/netns/{}", self.ns(role));
        let addr = addr.into();
        let response = format!("{response}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter_netns(&path);
            let listener = TcpListener::bind(SocketAddr::new(addr, port)).expect("bind http");
            tx.send(()).unwrap();
            for mut s in listener.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(response.as_bytes());
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("http server did not start");
    }

    /// A DNS server (dnsmasq) in the lab's internet on `listen` (comma-separated
    /// addresses) that answers `check.example.net` with 192.0.2.10: the target of `dns`
    /// probes. Stopped when the lab drops.
    pub fn serve_dns(&mut self, listen: &str) {
        let conf = self.file("dns.conf", "");
        let pid = self.file("dns.pid", "");
        self.spawn(
            "inet",
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                &format!("--conf-file={}", conf.display()),
                &format!("--pid-file={}", pid.display()),
                &format!("--listen-address={listen}"),
                "--bind-interfaces",
                "--host-record=check.example.net,192.0.2.10",
            ],
        );
    }
}
