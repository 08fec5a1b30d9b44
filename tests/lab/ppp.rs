//! Point-to-point uplinks for the lab: this kernel has no PPP and no WireGuard, but TUN
//! works, so socat carries a layer-3 device over UDP between the router and an ISP (a
//! "carrier" link under it). The device is created when a session starts and destroyed
//! when it ends, with a new interface index each time, as pppd's is. The ISP drops any
//! source but the session's address (BCP38), so a stale NAT binding fails as in the field.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::Lab;

/// A running session: the two socat processes.
pub struct Session {
    pids: [u32; 2],
    pub device: String,
    pub local: Ipv4Addr,
    isp: String,
    isp_device: String,
}

impl Lab {
    /// Replaces ISP `n`'s Ethernet link to the router by a carrier link for sessions.
    pub fn ppp_carrier(&self, n: usize) {
        self.ip("rt", &["link", "del", &format!("wan{n}")]);
        let carrier = format!("cr{n}");
        self.ip(
            "rt",
            &[
                "link",
                "add",
                &carrier,
                "type",
                "veth",
                "peer",
                "name",
                &carrier,
                "netns",
                &self.ns(&format!("isp{n}")),
            ],
        );
        self.ip(
            "rt",
            &[
                "addr",
                "add",
                &format!("192.168.{}.1/30", 250 + n),
                "dev",
                &carrier,
            ],
        );
        self.ip(
            &format!("isp{n}"),
            &[
                "addr",
                "add",
                &format!("192.168.{}.2/30", 250 + n),
                "dev",
                &carrier,
            ],
        );
        self.ip("rt", &["link", "set", &carrier, "up"]);
        self.ip(&format!("isp{n}"), &["link", "set", &carrier, "up"]);
        // The internet routes the sessions' addresses back through ISP n.
        self.ip(
            "inet",
            &[
                "route",
                "add",
                "10.9.0.0/16",
                "via",
                &format!("172.30.{n}.1"),
            ],
        );
    }

    /// Starts a session over ISP `n`'s carrier: the router's `device` with `local`, the
    /// ISP's end `peer` (both in one /30), and `default dev DEVICE` in the router's main
    /// table as pppd adds it.
    pub fn ppp_up(&mut self, n: usize, device: &str, local: Ipv4Addr, peer: Ipv4Addr) -> Session {
        let isp = format!("isp{n}");
        let isp_dev = format!("pppisp{n}");
        let port = 5000 + n;
        // Datagram sockets on both ends: each opens its device at once.
        let isp_pid = self.spawn(
            &isp,
            &[
                "socat",
                &format!(
                    "UDP-DATAGRAM:192.168.{0}.1:{port},bind=192.168.{0}.2:{port},reuseaddr",
                    250 + n
                ),
                &format!("TUN:{peer}/30,tun-name={isp_dev},iff-up,iff-no-pi,tun-type=tun"),
            ],
        );
        self.wait_for_device(&isp, &isp_dev);
        let rt_pid = self.spawn(
            "rt",
            &[
                "socat",
                &format!(
                    "UDP-DATAGRAM:192.168.{0}.2:{port},bind=192.168.{0}.1:{port},reuseaddr",
                    250 + n
                ),
                &format!("TUN:{local}/30,tun-name={device},iff-up,iff-no-pi,tun-type=tun"),
            ],
        );
        self.wait_for_device("rt", device);
        // Point-to-point as pppd configures it: the local address, the peer's.
        self.ip("rt", &["addr", "flush", "dev", device]);
        self.ip(
            "rt",
            &[
                "addr",
                "add",
                &local.to_string(),
                "peer",
                &peer.to_string(),
                "dev",
                device,
            ],
        );
        self.ip(
            "rt",
            &["route", "add", "default", "dev", device, "metric", "200"],
        );
        // BCP38 for this session only.
        let _ = self.exec(
            &isp,
            &["iptables", "-D", "FORWARD", "-i", &isp_dev, "-j", "BCP38"],
        );
        let _ = self.exec(&isp, &["iptables", "-F", "BCP38"]);
        let _ = self.exec(&isp, &["iptables", "-N", "BCP38"]);
        self.exec_ok(
            &isp,
            &[
                "iptables",
                "-A",
                "BCP38",
                "!",
                "-s",
                &local.to_string(),
                "-j",
                "DROP",
            ],
        );
        self.exec_ok(
            &isp,
            &["iptables", "-I", "FORWARD", "-i", &isp_dev, "-j", "BCP38"],
        );
        Session {
            pids: [isp_pid, rt_pid],
            device: device.to_string(),
            local,
            isp,
            isp_device: isp_dev,
        }
    }

    /// Ends a session: both ends exit and their devices vanish.
    pub fn ppp_down(&self, session: Session) {
        for pid in session.pids {
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        for (role, device) in [
            ("rt", &session.device),
            (session.isp.as_str(), &session.isp_device),
        ] {
            while self
                .exec(role, &["ip", "link", "show", device])
                .status
                .success()
            {
                assert!(start.elapsed() < Duration::from_secs(5), "{device} stayed");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn wait_for_device(&self, role: &str, device: &str) {
        let start = Instant::now();
        while !self
            .exec(role, &["ip", "link", "show", device])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{device} did not appear in {role}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
