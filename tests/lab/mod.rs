//! A network-namespace lab: LAN host, router, one namespace per ISP and an "internet".
//! Shared by the integration tests and the benchmarks. Every lab has a unique name prefix,
//! never touches the host's namespace, and is removed on drop (also when a test panics).
//!
//! ```text
//!  lan (10.0.0.10-66)                router              ispN                inet
//!  lan0 ───────────────────────── lan0 10.0.0.1
//!  lan2 (10.0.2.10) lan0 ───────── lan1 10.0.2.1
//!                                 wanN 100.64.N.2 ── rt 100.64.N.1
//!                                                    upstream 172.30.N.1 ─ ispN 172.30.N.2
//!                                                                      lo 198.51.100.1-2 (probe targets)
//!                                                                         192.0.2.10 (echo server)
//!                                                                         203.0.113.10, .200
//! ```
//! Each ISP drops packets from the router whose source is not its customer's address, so a
//! connection that leaves by the wrong uplink fails instead of passing unnoticed.
#![allow(dead_code)]

mod delay;
pub mod dns;
pub mod firewall;
mod http;
mod ppp;
mod rate;

#[allow(unused_imports)]
pub use ppp::Session;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const ECHO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const ECHO_PORT: u16 = 8000;
pub const TARGETS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
];
pub const SET_MEMBER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const LAN_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// The dual-stack lab's IPv6 addresses (`Lab::dual`).
pub const ECHO6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 0x10);
pub const SET_MEMBER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 0x20);
pub const TARGETS6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 2),
];
pub const LAN_CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x10);

/// ISP `n`'s address of the router (what masquerade shows the internet).
pub fn uplink_addr6(n: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0xff00 + n as u16,
        0,
        0,
        0,
        0,
        2,
    ))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when this process may build namespaces. Without root a test is skipped, except
/// in CI (`CI` or `MULTIWAN_REQUIRE_NETNS` set), where a skip is a failure.
pub fn available() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let required = std::env::var_os("CI").is_some()
            || std::env::var_os("MULTIWAN_REQUIRE_NETNS").is_some();
        assert!(
            !required,
            "namespace tests need root, and CI requires them to run"
        );
        eprintln!("skipping: namespace tests need root");
    }
    root
}

pub fn uplink_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, n as u8, 2)
}

pub fn gateway_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, n as u8, 1)
}

/// A `policies:` section of `count` single-host pins (`host-N`, source 10.1.x.y), spread
/// round the uplinks isp1..=isp`uplinks`; empty when `count` is 0.
pub fn pin_policies(count: usize, uplinks: usize) -> String {
    if count == 0 {
        return String::new();
    }
    let mut s = String::from("policies:\n");
    for i in 0..count {
        s.push_str(&format!(
            "  - {{name: host-{i}, match: {{source: 10.1.{}.{}}}, uplink: isp{}}}\n",
            i / 250,
            i % 250 + 1,
            i % uplinks + 1
        ));
    }
    s
}

pub struct Lab {
    pub prefix: String,
    pub isps: usize,
    /// Dual-stack (see `scripts/lab.sh --ipv6`).
    pub ipv6: bool,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    /// Builds a lab with `isps` ISPs (1..=9).
    pub fn new(isps: usize) -> Lab {
        Self::build_lab(isps, false)
    }

    /// The same lab with IPv6 too.
    pub fn dual(isps: usize) -> Lab {
        Self::build_lab(isps, true)
    }

    fn build_lab(isps: usize, ipv6: bool) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("mwt{}x{n}", std::process::id() % 1_000_000);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix,
            isps,
            ipv6,
            children: Vec::new(),
            dir,
        };
        lab.build();
        lab
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// The topology is defined once, in `scripts/lab.sh`; tests run their own servers.
    fn build(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh");
        let isps = self.isps.to_string();
        let mut argv = vec![
            script,
            "up",
            "--prefix",
            &self.prefix,
            "--isps",
            &isps,
            "--no-servers",
        ];
        if self.ipv6 {
            argv.push("--ipv6");
        }
        run(&argv);
        seed_backend(&self.ns("rt"));
    }

    fn roles(&self) -> Vec<String> {
        let mut roles = vec![
            "lan".to_string(),
            "lan2".to_string(),
            "rt".to_string(),
            "inet".to_string(),
        ];
        roles.extend((1..=self.isps).map(|n| format!("isp{n}")));
        roles
    }

    pub fn ip(&self, role: &str, args: &[&str]) {
        let ns = self.ns(role);
        let mut argv = vec!["ip", "-n", ns.as_str()];
        argv.extend_from_slice(args);
        run(&argv);
    }

    pub fn sysctl(&self, role: &str, key: &str, value: &str) {
        self.exec_ok(role, &["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Runs a command inside a namespace (iptables commands in the backend under test).
    pub fn exec(&self, role: &str, argv: &[&str]) -> Output {
        let argv: Vec<String> = argv
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == 0 {
                    iptables_command(a)
                } else {
                    a.to_string()
                }
            })
            .collect();
        Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(&argv)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs a command inside a namespace and panics with its stderr if it fails.
    pub fn exec_ok(&self, role: &str, argv: &[&str]) -> String {
        let out = self.exec(role, argv);
        assert!(
            out.status.success(),
            "{role}: {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running command inside a namespace; it is killed when the lab drops.
    pub fn spawn(&mut self, role: &str, argv: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Writes a file in the lab's own temporary folder.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the real multiwan binary in the router namespace.
    pub fn multiwan(&self, args: &[&str]) -> Output {
        let mut argv = vec![env!("CARGO_BIN_EXE_multiwan")];
        argv.extend_from_slice(args);
        self.exec("rt", &argv)
    }

    pub fn multiwan_ok(&self, args: &[&str]) -> String {
        let out = self.multiwan(args);
        assert!(
            out.status.success(),
            "multiwan {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that has entered the namespace: its sockets live there.
    pub fn in_ns<R: Send + 'static>(
        &self,
        role: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        let path = format!("/var/run/netns/{}", self.ns(role));
        std::thread::spawn(move || {
            enter_netns(&path);
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// A TCP server in `role` that answers every connection with the peer address it saw.
    pub fn start_echo(&self, role: &str, addr: impl Into<IpAddr>, port: u16) {
        serve_echo(&self.ns(role), addr, port);
    }

    /// A TCP server in `role` that answers every connection with its own address: a
    /// port-forward backend that tells the client which backend served it.
    pub fn start_identity(&self, role: &str, addr: Ipv4Addr, port: u16) {
        let path = format!("/var/run/netns/{}", self.ns(role));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter_netns(&path);
            let listener =
                TcpListener::bind(SocketAddr::from((addr, port))).expect("bind identity");
            tx.send(()).unwrap();
            for mut s in listener.incoming().flatten() {
                let _ = s.write_all(format!("{addr}\n").as_bytes());
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("identity server did not start");
    }

    /// The standard internet echo servers (IPv6 ones too in a dual-stack lab).
    pub fn start_internet_echo(&self) {
        self.start_echo("inet", ECHO, ECHO_PORT);
        self.start_echo("inet", SET_MEMBER, ECHO_PORT);
        if self.ipv6 {
            self.start_echo("inet", ECHO6, ECHO_PORT);
            self.start_echo("inet", SET_MEMBER6, ECHO_PORT);
        }
    }

    /// Opens `count` TCP connections of either family from the LAN; the address the
    /// server saw for each (None for a failed connection).
    pub fn connect_many_ip(
        &self,
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        port: u16,
        count: usize,
    ) -> Vec<Option<IpAddr>> {
        let (src, dst) = (src.into(), dst.into());
        self.in_ns("lan", move || {
            (0..count).map(|_| ask_peer_ip(src, dst, port)).collect()
        })
    }

    /// How `n` new IPv6 connections from the LAN client to the echo server were seen.
    pub fn seen6(&self, n: usize) -> HashMap<IpAddr, usize> {
        let mut out = HashMap::new();
        for s in self.connect_many_ip(LAN_CLIENT6, ECHO6, ECHO_PORT, n) {
            *out.entry(s.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
                .or_insert(0) += 1;
        }
        out
    }

    /// Opens `count` TCP connections from the LAN and returns the address the server saw
    /// for each (None for a failed connection).
    pub fn connect_many(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        port: u16,
        count: usize,
    ) -> Vec<Option<Ipv4Addr>> {
        self.in_ns("lan", move || {
            (0..count).map(|_| ask_peer(src, dst, port)).collect()
        })
    }

    /// Every iptables table, ip rule and route of a namespace, for before/after comparisons.
    pub fn snapshot(&self, role: &str) -> String {
        let mut out = String::new();
        out.push_str(&strip_empty_tables(&strip_counters(
            &self.exec_ok(role, &["iptables-save"]),
        )));
        out.push_str(&self.exec_ok(role, &["ip", "-4", "rule", "show"]));
        out.push_str(&self.exec_ok(role, &["ip", "-4", "route", "show", "table", "all"]));
        if self.ipv6 {
            out.push_str(&strip_empty_tables(&strip_counters(
                &self.exec_ok(role, &["ip6tables-save"]),
            )));
            out.push_str(&self.exec_ok(role, &["ip", "-6", "rule", "show"]));
            out.push_str(&self.exec_ok(role, &["ip", "-6", "route", "show", "table", "all"]));
        }
        // Set members in a stable order; the hash seed changes with every swap.
        let mut sets: Vec<String> = self
            .exec_ok(role, &["ipset", "save"])
            .lines()
            .map(|l| l.split(" initval ").next().unwrap_or(l).to_string())
            .collect();
        sets.sort();
        out.push_str(&sets.join("\n"));
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh");
        let _ = Command::new(script)
            .args(["down", "--prefix", &self.prefix])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `multiwan run` in the router namespace, its log in a file. Killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; returns how long that took.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> Option<Duration> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.log_text().contains(needle) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the log contains `needle`; panics with the whole log if it never does.
    pub fn expect(&self, needle: &str, limit: Duration) {
        assert!(
            self.wait_for(needle, limit).is_some(),
            "{needle:?} not logged within {limit:?}:\n{}",
            self.log_text()
        );
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// kill -9, as a crash would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        // A failed test shows what the daemon saw and did, whatever its message printed.
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- daemon log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Lab {
    /// The control socket of this lab's daemons. Namespaces share the file system, so each
    /// lab keeps its own instead of the default under /run.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Starts `multiwan run -c config` in the router and waits until it has installed its
    /// rules. A config without a `control:` section gets this lab's socket.
    pub fn daemon(&self, config: &std::path::Path) -> Daemon {
        self.daemon_logging(config, "info")
    }

    /// [`Lab::daemon`] with a `RUST_LOG` filter of the caller's choice.
    pub fn daemon_logging(&self, config: &std::path::Path, filter: &str) -> Daemon {
        let d = self.spawn_daemon(config, filter);
        assert!(
            d.wait_for("started: rules installed", Duration::from_secs(10))
                .is_some(),
            "daemon did not start:\n{}",
            d.log_text()
        );
        d
    }

    /// Starts `multiwan run -c config` in the router without waiting for anything.
    pub fn spawn_daemon(&self, config: &std::path::Path, filter: &str) -> Daemon {
        self.spawn_daemon_env(config, filter, &[])
    }

    /// [`Lab::spawn_daemon`] with extra environment (what systemd would pass).
    pub fn spawn_daemon_env(
        &self,
        config: &std::path::Path,
        filter: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        self.spawn_daemon_in(config, filter, env, &[])
    }

    /// [`Lab::spawn_daemon_env`] run through `wrapper` (for example `unshare` for a
    /// container's namespaces).
    pub fn spawn_daemon_in(
        &self,
        config: &std::path::Path,
        filter: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        let text = std::fs::read_to_string(config).unwrap();
        if !text.contains("\ncontrol:") {
            let socket = self.socket();
            std::fs::write(
                config,
                format!("{text}control: {{socket: {}}}\n", socket.display()),
            )
            .unwrap();
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let log = self
            .dir
            .join(format!("daemon{}.log", N.fetch_add(1, Ordering::SeqCst)));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("rt")])
            .args(wrapper)
            .args([env!("CARGO_BIN_EXE_multiwan"), "run", "-c"])
            .arg(config)
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn multiwan run");
        Daemon { child, log }
    }

    /// A default route via ISP `n` in the router's main table, of lower priority than the
    /// lab's default via ISP 1: what a DHCP client on that uplink installs.
    pub fn dhcp_default(&self, n: usize, gateway: &str) {
        self.ip(
            "rt",
            &[
                "route",
                "replace",
                "default",
                "via",
                gateway,
                "dev",
                &format!("wan{n}"),
                "metric",
                "200",
            ],
        );
    }

    /// Makes an ISP drop everything it forwards (its links stay up).
    pub fn blackhole(&self, isp: usize, on: bool) {
        self.blackhole_with("iptables", isp, on);
    }

    /// The same for the ISP's IPv6 only (its IPv4 keeps working).
    pub fn blackhole6(&self, isp: usize, on: bool) {
        self.blackhole_with("ip6tables", isp, on);
    }

    fn blackhole_with(&self, tool: &str, isp: usize, on: bool) {
        let op = if on { "-I" } else { "-D" };
        self.exec_ok(
            &format!("isp{isp}"),
            &[
                tool,
                op,
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "blackhole",
                "-j",
                "DROP",
            ],
        );
    }

    /// Which uplink address the echo server sees for each of `n` new connections.
    pub fn seen(&self, n: usize) -> HashMap<Ipv4Addr, usize> {
        let mut out = HashMap::new();
        for s in self.connect_many(LAN_CLIENT, ECHO, ECHO_PORT, n) {
            *out.entry(s.unwrap_or(Ipv4Addr::UNSPECIFIED)).or_insert(0) += 1;
        }
        out
    }
}

/// A UDP server in `role` that answers every datagram with the sender address it saw.
impl Lab {
    pub fn start_udp_echo(&self, role: &str, addr: Ipv4Addr, port: u16) {
        let path = format!("/var/run/netns/{}", self.ns(role));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter_netns(&path);
            let sock = UdpSocket::bind(SocketAddr::from((addr, port))).expect("bind udp echo");
            tx.send(()).unwrap();
            let mut buf = [0u8; 512];
            while let Ok((_, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(peer.ip().to_string().as_bytes(), peer);
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("udp echo did not start");
    }

    /// Sends one datagram per source port from the LAN; returns the address the server saw.
    pub fn udp_many(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        port: u16,
        count: usize,
    ) -> Vec<Option<Ipv4Addr>> {
        self.in_ns("lan", move || {
            (0..count).map(|_| udp_ask(src, dst, port)).collect()
        })
    }
}

pub fn udp_ask(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind(SocketAddr::from((src, 0))).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(b"who", SocketAddr::from((dst, port))).ok()?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n]).trim().parse().ok()
}

/// Connects from `src` and returns the address the echo server saw.
pub fn ask_peer(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
    let mut s = connect_from(src, dst, port)?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    read_line(&mut s)?.parse().ok()
}

/// The same for either family.
pub fn ask_peer_ip(src: IpAddr, dst: IpAddr, port: u16) -> Option<IpAddr> {
    let mut s = connect_bound(src, dst, port, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    read_line(&mut s)?.parse().ok()
}

/// Reads up to the end of a line (the read timeout set on the stream applies).
pub fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut line = String::new();
    let mut buf = [0u8; 1];
    while !line.ends_with('\n') {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(_) => line.push(buf[0] as char),
        }
    }
    Some(line.trim().to_string())
}

/// A TCP connection bound to a source address, with a short connect timeout.
pub fn connect_from(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Option<TcpStream> {
    connect_bound(src, dst, port, Duration::from_secs(2))
}

/// std has no bind-before-connect: a socket of the destination's family, bound to `src`,
/// then connected with a deadline.
pub fn connect_bound(
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    port: u16,
    timeout: Duration,
) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let (src, dst) = (src.into(), dst.into());
    let to = SocketAddr::new(dst, port);
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None).ok()?;
    s.set_reuse_address(true).ok()?;
    s.bind(&SocketAddr::new(src, 0).into()).ok()?;
    s.connect_timeout(&to.into(), timeout).ok()?;
    Some(s.into())
}

/// A TCP server in namespace `netns` that first sends the peer address it saw, then echoes
/// what it receives, for as long as the client keeps the connection.
pub fn serve_echo(netns: &str, addr: impl Into<IpAddr>, port: u16) {
    let addr: IpAddr = addr.into();
    let path = format!("/var/run/netns/{netns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter_netns(&path);
        let listener = TcpListener::bind(SocketAddr::from((addr, port))).expect("bind echo");
        tx.send(()).unwrap();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                if let Ok(peer) = s.peer_addr() {
                    let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes());
                }
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("echo server did not start");
}

/// The headless browser the status page is tested and measured with, if installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The iptables backend the suite runs on: `MULTIWAN_TEST_BACKEND=legacy` runs every
/// namespace test with iptables-legacy (CI runs the suite once per backend); nf_tables
/// otherwise.
pub fn legacy() -> bool {
    std::env::var("MULTIWAN_TEST_BACKEND").is_ok_and(|b| b == "legacy")
}

/// `iptables-save` → `iptables-legacy-save` when the suite runs on legacy.
pub fn iptables_command(program: &str) -> String {
    let known = [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ];
    match (legacy(), known.contains(&program)) {
        (true, true) => {
            let (base, tail) = program
                .split_once('-')
                .map_or((program, ""), |(b, t)| (b, t));
            if tail.is_empty() {
                format!("{base}-legacy")
            } else {
                format!("{base}-legacy-{tail}")
            }
        }
        _ => program.to_string(),
    }
}

/// On legacy, a router namespace starts with one rule of "another tool" in legacy (accept
/// loopback input), as a host whose firewall uses iptables-legacy: multiwan's
/// `netfilter.backend: auto` must then choose legacy.
pub fn seed_backend(netns: &str) {
    if legacy() {
        run(&[
            "ip",
            "netns",
            "exec",
            netns,
            "iptables-legacy",
            "-A",
            "INPUT",
            "-i",
            "lo",
            "-j",
            "ACCEPT",
        ]);
    }
}

pub fn enter_netns(path: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}");
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect(argv[0]);
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops tables that hold nothing (only built-in chains, policy ACCEPT, no rule):
/// iptables-nft creates a table on first use, and an empty one filters nothing.
pub fn strip_empty_tables(save: &str) -> String {
    let mut out = String::new();
    for block in save.split_inclusive("COMMIT\n") {
        let empty = block.lines().filter(|l| !l.trim().is_empty()).all(|l| {
            l.starts_with('*') || l == "COMMIT" || (l.starts_with(':') && l.ends_with(" ACCEPT"))
        });
        if !empty {
            out.push_str(block);
        }
    }
    out
}

/// iptables-save with its comment header and packet counters removed.
pub fn strip_counters(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            Some(rest) => format!(":{}", rest.split(" [").next().unwrap_or(rest)),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A connection from the LAN that stays open; `ping` proves it still works.
pub struct Held {
    pub stream: TcpStream,
    pub seen: Ipv4Addr,
}

impl Held {
    pub fn open(lab: &Lab, src: Ipv4Addr) -> Held {
        let path = format!("/var/run/netns/{}", lab.ns("lan"));
        std::thread::spawn(move || {
            enter_netns(&path);
            let mut stream = connect_from(src, ECHO, ECHO_PORT).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf).unwrap();
            let seen = String::from_utf8_lossy(&buf[..n]).trim().parse().unwrap();
            Held { stream, seen }
        })
        .join()
        .unwrap()
    }

    /// Opens connections until `want` of them went through the uplink whose
    /// address is `via` (the others are closed), so a test about "connections
    /// through isp1" never depends on the luck of a weighted draw.
    pub fn open_via(lab: &Lab, src: Ipv4Addr, via: Ipv4Addr, want: usize) -> Vec<Held> {
        let mut held = Vec::new();
        for _ in 0..want * 30 {
            let h = Held::open(lab, src);
            if h.seen == via {
                held.push(h);
                if held.len() == want {
                    break;
                }
            }
        }
        assert_eq!(held.len(), want, "no {want} connections through {via}");
        held
    }

    pub fn ping(&mut self) -> bool {
        let mut buf = [0u8; 4];
        self.stream.write_all(b"ping").is_ok()
            && self.stream.read_exact(&mut buf).is_ok()
            && &buf == b"ping"
    }
}
