//! A two-router HA lab (scripts/ha-lab.sh): both routers run multiwan, conntrackd and
//! keepalived from `multiwan ha render`. Used by tests/ha.rs and benches/ha.rs. Removed on
//! drop, processes included, also when a test panics.
//!
//! ```text
//!                     r1 (lan0 .2, wanN 100.70.N.2) ─┐
//!  lan (br0, 10.50.0.10-29) ── shared 10.50.0.1      ├── sync0 10.60.0.1/.2
//!                     r2 (lan0 .3, wanN 100.70.N.3) ─┘
//!  ispN (br0 100.70.N.254, both routers' wanN; shared 100.70.N.1) ── inet 192.0.2.10:8000
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::lab;

pub const ECHO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const ECHO_PORT: u16 = 8000;
pub const LAN_GATEWAY: &str = "10.50.0.1";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The public address a connection leaving by ISP `n` has on the pair.
pub fn shared_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 70, n, 1)
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Run conntrackd (the pair without it shows what sync is for).
    pub sync: bool,
    pub preempt_delay: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: true,
            preempt_delay: "3s",
        }
    }
}

pub struct HaLab {
    pub prefix: String,
    pub dir: PathBuf,
    options: Options,
    /// (router, process) of everything started in a router namespace.
    procs: Vec<(u8, Child)>,
}

impl HaLab {
    pub fn new(options: Options) -> HaLab {
        for tool in ["keepalived", "conntrackd", "conntrack"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is not installed (scripts/test.sh installs it)"
            );
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("mwh{}x{n}", std::process::id() % 1_000_000);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = HaLab {
            prefix,
            dir,
            options,
            procs: Vec::new(),
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha-lab.sh");
        let out = Command::new(script)
            .args(["up", "--prefix", &lab.prefix])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ha-lab.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab::serve_echo(&lab.ns("inet"), ECHO, ECHO_PORT);
        for k in [1, 2] {
            lab::seed_backend(&lab.router(k));
        }
        lab
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn router(&self, k: u8) -> String {
        self.ns(&format!("r{k}"))
    }

    pub fn config_path(&self, k: u8) -> PathBuf {
        self.dir.join(format!("r{k}.yaml"))
    }

    pub fn socket(&self, k: u8) -> PathBuf {
        self.dir.join(format!("r{k}.sock"))
    }

    pub fn log(&self, k: u8, what: &str) -> PathBuf {
        self.dir.join(format!("r{k}-{what}.log"))
    }

    /// Node k's config: r1 is preferred (priority 150). Each has a hook that appends the
    /// role events it receives to `r{k}-hook.log`, and a metrics endpoint in its namespace.
    pub fn write_config(&self, k: u8) {
        let peer = if k == 1 { "10.60.0.2" } else { "10.60.0.1" };
        let priority = if k == 1 { 150 } else { 100 };
        let hook = self.dir.join(format!("r{k}-hook.sh"));
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\n[ \"$MULTIWAN_EVENT\" = ha_role ] && echo \"$MULTIWAN_HA_PREVIOUS_ROLE->$MULTIWAN_HA_ROLE\" >> {}\nexit 0\n",
                self.log(k, "hook").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, id: 1, gateway: 100.70.1.254, probe: {{targets: [198.51.100.1, 198.51.100.2], interval: 200ms}}}}
  - {{name: isp2, interface: wan2, id: 2, gateway: 100.70.2.254, probe: {{targets: [198.51.100.1, 198.51.100.2], interval: 200ms}}}}
control: {{socket: {socket}}}
metrics: 127.0.0.1:9273
hooks: [{hook}]
ha:
  node: r{k}
  peer: {peer}
  sync_interface: sync0
  virtual_router_id: 51
  priority: {priority}
  advert_interval: 200ms
  preempt_delay: {preempt}
  lan_addresses: [10.50.0.1/24]
  uplink_addresses: {{isp1: 100.70.1.1/24, isp2: 100.70.2.1/24}}
  config_dir: {dir}
",
            socket = self.socket(k).display(),
            hook = hook.display(),
            preempt = self.options.preempt_delay,
            dir = self.dir.join(format!("r{k}")).display(),
        );
        std::fs::write(self.config_path(k), text).unwrap();
    }

    /// Runs a command in router k's namespace and returns its stdout; panics on failure.
    pub fn exec(&self, k: u8, argv: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.router(k)])
            .args(argv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "r{k}: {argv:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn multiwan(&self, k: u8, args: &[&str]) -> String {
        let mut argv = vec![env!("CARGO_BIN_EXE_multiwan")];
        argv.extend_from_slice(args);
        self.exec(k, &argv)
    }

    fn spawn(&mut self, k: u8, what: &str, argv: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(k, what))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router(k)])
            .args(argv)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((k, child));
    }

    /// Starts node k as a router boots: conntrackd, the agent, then keepalived.
    /// Where `ha render` writes router `k`'s keepalived and conntrackd configs.
    pub fn ha_dir(&self, k: u8) -> PathBuf {
        self.dir.join(format!("r{k}"))
    }

    pub fn start(&mut self, k: u8) {
        self.write_config(k);
        let config = self.config_path(k);
        let config = config.to_str().unwrap();
        self.multiwan(k, &["ha", "render", "-c", config]);
        let ha_dir = self.ha_dir(k);
        if self.options.sync {
            let conf = ha_dir.join("conntrackd.conf");
            self.spawn(
                k,
                "conntrackd",
                &["conntrackd", "-C", conf.to_str().unwrap()],
            );
        }
        let mw = env!("CARGO_BIN_EXE_multiwan");
        // The log outlives a restart: look only at what this run writes.
        let seen = self.log_text(k, "multiwan").len();
        self.spawn(k, "multiwan", &[mw, "run", "-c", config]);
        self.wait_until(Duration::from_secs(10), || {
            self.log_text(k, "multiwan")
                .get(seen..)
                .is_some_and(|t| t.contains("started: rules installed"))
        })
        .unwrap_or_else(|| {
            panic!(
                "r{k}: multiwan did not start:\n{}",
                self.log_text(k, "multiwan")
            )
        });
        let keepalived = ha_dir.join("keepalived.conf");
        let pid = |name: &str| self.dir.join(format!("r{k}-{name}.pid"));
        let (main, vrrp, checkers) = (pid("keepalived"), pid("vrrp"), pid("checkers"));
        self.spawn(
            k,
            "keepalived",
            &[
                "keepalived",
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "-f",
                keepalived.to_str().unwrap(),
                "-p",
                main.to_str().unwrap(),
                "-r",
                vrrp.to_str().unwrap(),
                "-c",
                checkers.to_str().unwrap(),
            ],
        );
    }

    pub fn log_text(&self, k: u8, what: &str) -> String {
        std::fs::read_to_string(self.log(k, what)).unwrap_or_default()
    }

    /// Every log of the lab, for a failing assertion's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for k in [1, 2] {
            for what in ["multiwan", "keepalived", "conntrackd", "hook"] {
                let text = self.log_text(k, what);
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                out.push_str(&format!("---- r{k} {what}\n{}\n", tail.join("\n")));
            }
        }
        out
    }

    pub fn wait_until(&self, limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if f() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Whether router k holds the LAN gateway address.
    pub fn holds_gateway(&self, k: u8) -> bool {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.router(k),
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                "lan0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {LAN_GATEWAY}/"))
    }

    /// Waits until router k is master as multiwan sees it (keepalived said so and the agent
    /// took it), holding the addresses; returns how long that took.
    pub fn wait_master(&self, k: u8, limit: Duration) -> Option<Duration> {
        self.wait_until(limit, || {
            self.holds_gateway(k) && self.role(k).as_deref() == Some("master")
        })
    }

    /// The role in `multiwan status --json`.
    pub fn role(&self, k: u8) -> Option<String> {
        let status = self.status(k)?;
        status["ha"]["role"].as_str().map(str::to_string)
    }

    pub fn status(&self, k: u8) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router(k),
                env!("CARGO_BIN_EXE_multiwan"),
            ])
            .args(["status", "--json", "-c"])
            .arg(self.config_path(k))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The hard way: every link down, then every process of the router SIGKILLed. The
    /// dying node sees its links go (and must not act on it in a way the peer inherits).
    pub fn kill_hard(&mut self, k: u8) {
        self.links_down(k);
        self.kill_all(k);
    }

    /// A power cut: every process dies first (keepalived cannot say goodbye with a
    /// priority-0 advert), then the links go dark. The backup takes over on advert timeout.
    pub fn power_cut(&mut self, k: u8) {
        self.kill_all(k);
        self.links_down(k);
    }

    fn links_down(&self, k: u8) {
        for link in ["lan0", "wan1", "wan2", "sync0"] {
            let _ = Command::new("ip")
                .args(["-n", &self.router(k), "link", "set", link, "down"])
                .status();
        }
    }

    fn kill_all(&mut self, k: u8) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.router(k)])
            .output()
            .unwrap();
        let pids: Vec<i32> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        // Stopped first, all of them: keepalived's VRRP process gets SIGTERM when its parent
        // dies and would otherwise still say goodbye (a priority-0 advert).
        for sig in [libc::SIGSTOP, libc::SIGKILL] {
            for pid in &pids {
                unsafe { libc::kill(*pid, sig) };
            }
        }
        self.reap(k);
    }

    /// The graceful way: keepalived stops first (it hands the addresses over at once),
    /// then conntrackd and the agent.
    pub fn stop_gracefully(&mut self, k: u8) {
        for what in ["keepalived", "conntrackd", "multiwan"] {
            self.signal_matching(k, what, libc::SIGTERM);
        }
    }

    /// Sends `sig` to router k's processes named `what` (keepalived's children included)
    /// and waits for them to end.
    fn signal_matching(&mut self, k: u8, what: &str, sig: i32) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.router(k)])
            .output()
            .unwrap();
        let ours: Vec<i32> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == what)
            })
            .collect();
        for p in &ours {
            unsafe { libc::kill(*p, sig) };
        }
        self.wait_until(Duration::from_secs(10), || {
            ours.iter()
                .all(|p| unsafe { libc::kill(*p, 0) } != 0 || is_zombie(*p))
        });
        self.reap(k);
    }

    /// Collects the exit status of router k's children that ended.
    fn reap(&mut self, k: u8) {
        for (_, c) in self.procs.iter_mut().filter(|(r, _)| *r == k) {
            let _ = c.try_wait();
        }
        std::thread::sleep(Duration::from_millis(50));
        self.procs
            .retain_mut(|(r, c)| *r != k || matches!(c.try_wait(), Ok(None)));
    }

    /// Router k comes back as after a reboot: links up, no shared address, an empty
    /// connection table, then the boot sequence.
    pub fn revive(&mut self, k: u8) {
        let r = self.router(k);
        for link in ["lan0", "wan1", "wan2", "sync0"] {
            run(&["ip", "-n", &r, "link", "set", link, "up"]);
        }
        for (addr, dev) in [
            ("10.50.0.1/24", "lan0"),
            ("100.70.1.1/24", "wan1"),
            ("100.70.2.1/24", "wan2"),
        ] {
            let _ = Command::new("ip")
                .args(["-n", &r, "addr", "del", addr, "dev", dev])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "exec", &r, "conntrack", "-F"])
            .output();
        // A reboot empties /run, where conntrackd's lock would otherwise stop it starting.
        let _ = std::fs::remove_file(self.dir.join(format!("conntrackd-r{k}.lock")));
        // A reboot also loses the default route a DHCP client would install again.
        let _ = Command::new("ip")
            .args([
                "-n",
                &r,
                "route",
                "replace",
                "default",
                "via",
                "100.70.1.254",
                "dev",
                "wan1",
            ])
            .output();
        self.start(k);
    }

    /// Makes ISP n drop everything it forwards (its links stay up).
    pub fn blackhole(&self, n: u8, on: bool) {
        let op = if on { "-I" } else { "-D" };
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns(&format!("isp{n}")),
            &lab::iptables_command("iptables"),
            op,
            "FORWARD",
            "-j",
            "DROP",
        ]);
    }

    /// The conntrack entries of the echo connections on router k: LAN address and port to
    /// (mark, the public address replies go to).
    pub fn echo_entries(&self, k: u8) -> HashMap<SocketAddrV4, (u32, Ipv4Addr)> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router(k),
                "conntrack",
                "-L",
                "-p",
                "tcp",
            ])
            .args(["--dport", &ECHO_PORT.to_string()])
            .output()
            .unwrap();
        parse_entries(&String::from_utf8_lossy(&out.stdout))
    }

    /// The metrics text of router k.
    pub fn metrics(&self, k: u8) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router(k),
                "curl",
                "-s",
                "--max-time",
                "5",
            ])
            .arg("http://127.0.0.1:9273/metrics")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens `n` TCP connections from LAN hosts to the echo server through the pair.
    pub fn connect(&self, n: usize) -> Conns {
        let path = format!("/var/run/netns/{}", self.ns("lan"));
        let streams = std::thread::spawn(move || {
            lab::enter_netns(&path);
            (0..n)
                .map(|i| {
                    let src = Ipv4Addr::new(10, 50, 0, 10 + (i % 20) as u8);
                    let mut s = lab::connect_bound(src, ECHO, ECHO_PORT, Duration::from_secs(3))
                        .unwrap_or_else(|| panic!("connection {i} from {src} failed"));
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let public: Ipv4Addr = lab::read_line(&mut s)
                        .and_then(|l| l.parse().ok())
                        .unwrap_or_else(|| panic!("connection {i}: no greeting"));
                    let local = SocketAddrV4::new(src, s.local_addr().unwrap().port());
                    Conn {
                        local,
                        public,
                        stream: s,
                    }
                })
                .collect()
        })
        .join()
        .unwrap();
        Conns { conns: streams }
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha-lab.sh");
        let _ = Command::new(script)
            .args(["down", "--prefix", &self.prefix])
            .status();
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(true)
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `conntrack -L` lines: the original source, the mark and the reply destination.
pub fn parse_entries(text: &str) -> HashMap<SocketAddrV4, (u32, Ipv4Addr)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let field = |key: &str, nth: usize| {
            line.split_whitespace()
                .filter_map(|w| w.strip_prefix(key))
                .nth(nth)
                .map(str::to_string)
        };
        let (Some(src), Some(sport), Some(mark), Some(reply_dst)) = (
            field("src=", 0),
            field("sport=", 0),
            field("mark=", 0),
            field("dst=", 1),
        ) else {
            continue;
        };
        if let (Ok(a), Ok(p), Ok(m), Ok(d)) =
            (src.parse(), sport.parse(), mark.parse(), reply_dst.parse())
        {
            out.insert(SocketAddrV4::new(a, p), (m, d));
        }
    }
    out
}

pub struct Conn {
    /// The LAN end of the connection.
    pub local: SocketAddrV4,
    /// The address the server saw when the connection opened.
    pub public: Ipv4Addr,
    pub stream: TcpStream,
}

pub struct Conns {
    pub conns: Vec<Conn>,
}

impl Conns {
    /// Sends a line on every connection at once and waits (up to `limit`) for its echo:
    /// whether each connection still works.
    pub fn alive(&self, round: u32, limit: Duration) -> Vec<bool> {
        let handles: Vec<_> = self
            .conns
            .iter()
            .map(|c| {
                let mut s = c.stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    let line = format!("round {round}");
                    s.set_read_timeout(Some(limit)).ok()?;
                    s.write_all(format!("{line}\n").as_bytes()).ok()?;
                    (lab::read_line(&mut s)? == line).then_some(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().is_some())
            .collect()
    }

    /// How many went out by each public address.
    pub fn spread(&self) -> HashMap<Ipv4Addr, usize> {
        let mut out = HashMap::new();
        for c in &self.conns {
            *out.entry(c.public).or_insert(0) += 1;
        }
        out
    }
}
