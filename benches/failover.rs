//! Failover benchmark (root; builds its own namespace labs):
//! 1. ISP 1 (primary, tier 1) black-holes all traffic, 10 times: time from the outage to
//!    the first and to all new LAN connections leaving by ISP 2 (backup), for multiwan with
//!    its defaults and for a naive monitor (a shell loop of `ping` every second that
//!    switches the default route and flushes conntrack after 3 losses), same lab, same run.
//!    The lab is dual-stack: multiwan's trials are run for IPv4 and, in the same run, for
//!    IPv6 (ISP 1 black-holes only IPv6; new IPv6 connections are timed).
//! 2. The daemon's CPU and peak RSS while probing 4 uplinks x 2 targets for a minute.
//! 3. Probe RTT on idle uplinks while the daemon keeps a 1000-pin rule set (its reconcile
//!    re-reads and compares every rule each second), against the same daemon with no pins:
//!    kernel work must not delay the probes.
//!
//! 4. Drift: another tool removes multiwan's state (`nft flush ruleset`, a mangle flush,
//!    an ipset flush, its ip rules, its routes), five times each, with the daemon running:
//!    time to repair, false downs, connections lost.
//! 5. Failover under load: quiet, then while 500 slow clients hold the metrics port and
//!    100 clients ask for status in a loop.
//! 7. Coexistence (`-- coexist`): Debian's nftables service (`nft -f` of its default
//!    nftables.conf, which starts with `flush ruleset`) and `ufw reload` in the router, 10
//!    times each: time until multiwan's rules are back and a pinned host's new connections
//!    leave by its uplink again.
//! 8. The status page (`-- web`): the daemon's CPU and RSS for a minute with the page off,
//!    on but unwatched, and open in headless Chromium (polling every second); the API's
//!    sizes; then the hard outage with the page open, against the same without it.
//! 6. Probe methods: the hard outage of 1., IPv4, with the primary probed by ICMP, TCP,
//!    HTTP and DNS (two targets each, defaults otherwise), side by side in one run.
//!
//! Run: `cargo bench --bench failover` (all), or name sections: `-- outage`, `-- cost`,
//! `-- rtt`, `-- drift`, `-- load`, `-- methods`, `-- coexist`, `-- web`. `MULTIWAN_BENCH_RTT_SECS` sets the length of each RTT run (default 60).

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::{ECHO, ECHO_PORT, LAN_CLIENT, Lab, uplink_addr};

const TRIALS: usize = 10;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench --bench failover`");
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the failover benchmark needs root");
        return;
    }
    let has_ping = Command::new("ping")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_ping,
        "the naive baseline needs ping (apt-get install iputils-ping)"
    );
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |s: &str| named.is_empty() || named.iter().any(|n| n == s);
    if wanted("outage") {
        let lab = Lab::dual(2);
        lab.start_internet_echo();
        let (ours, ours6) = multiwan_trials(&lab);
        let naive = naive_trials(&lab);
        report(&ours, &ours6, &naive);
    }
    if wanted("cost") {
        resources();
    }
    if wanted("rtt") {
        probe_rtt();
    }
    if wanted("drift") {
        drift();
    }
    if wanted("load") {
        load();
    }
    if wanted("methods") {
        methods();
    }
    if wanted("coexist") {
        coexist();
    }
    if wanted("web") {
        web();
    }
}

/// CPU (% of a core) and peak RSS (MB) of the daemon over `secs`.
fn usage(daemon: &lab::Daemon, secs: u64) -> (f64, f64) {
    let pid = daemon_pid(daemon);
    // Past the start-up (the first install, the first rounds).
    std::thread::sleep(Duration::from_secs(5));
    let (own0, _) = cpu_ticks(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (own1, _) = cpu_ticks(pid);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (own1 - own0) as f64 / hz / t.elapsed().as_secs_f64() * 100.0;
    (cpu, rss_kb(pid) as f64 / 1024.0)
}

fn web() {
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let base = CONFIG
        .replace(", gateway6: auto", "")
        .replace(", '2001:db8:e::1', '2001:db8:e::2'", "");
    let off = lab.daemon(&lab.file("off.yaml", &base));
    let (cpu_off, rss_off) = usage(&off, 60);
    drop(off);
    let on_text = format!("{base}web: {{listen: 127.0.0.1:8080}}\n");
    let on = lab.daemon(&lab.file("on.yaml", &on_text));
    let (cpu_on, rss_on) = usage(&on, 60);
    let browser = lab::chromium().expect("chromium (apt-get install chromium)");
    let profile = lab.file("chrome.yaml", "").with_file_name("chrome-profile");
    let mut chrome = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("rt"),
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--remote-debugging-port=9223")
        .arg("http://127.0.0.1:8080/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let (cpu_page, rss_page) = usage(&on, 60);
    let size = |path: &str| {
        lab.exec_ok(
            "rt",
            &["curl", "-s", &format!("http://127.0.0.1:8080{path}")],
        )
        .len()
    };
    let (status, hour, week) = (
        size("/api/status"),
        size("/api/history?range=hour"),
        size("/api/history?range=week"),
    );
    let with_page = trials(&lab, TRIALS);
    let _ = chrome.kill();
    let _ = chrome.wait();
    drop(on);
    let plain = lab.daemon(&lab.file("plain.yaml", &base));
    let without = trials(&lab, TRIALS);
    drop(plain);
    let (fm, fw) = stats(&with_page.iter().map(|t| t.1).collect::<Vec<_>>());
    let (nm, nw) = stats(&without.iter().map(|t| t.1).collect::<Vec<_>>());
    println!("## The status page: cost and failover (2 uplinks, 60 s each)");
    println!("| daemon | CPU of `multiwan run` | peak RSS |");
    println!("|---|---|---|");
    println!("| page off | {cpu_off:.2} % of a core | {rss_off:.1} MB |");
    println!(
        "| page on, nobody watching (history recorded every second) | {cpu_on:.2} % | {rss_on:.1} MB |"
    );
    println!(
        "| page open in headless Chromium (polls status every 1 s, history every 5 s) | {cpu_page:.2} % | {rss_page:.1} MB |"
    );
    println!(
        "| difference, page open vs off | {:+.2} % | {:+.1} MB |",
        cpu_page - cpu_off,
        rss_page - rss_off
    );
    println!(
        "Answers: /api/status {status} B, /api/history?range=hour {hour} B, ?range=week {week} B"
    );
    println!("| hard outage, all new connections via the backup | median | worst |");
    println!("|---|---|---|");
    println!("| page open | {fm:.2} s | {fw:.2} s |");
    println!("| no page | {nm:.2} s | {nw:.2} s |");
    println!();
}

const COEXIST: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 50, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 50, probe: {targets: [198.51.100.1, 198.51.100.2]}}
policies:
  - {name: pinned, match: {source: 10.0.0.50}, uplink: isp2}
";

/// The gap a firewall's reload causes: until multiwan's jump is back in mangle and three
/// new connections of the pinned host in a row leave by isp2.
fn coexist_gap(lab: &Lab) -> Duration {
    let pinned = Ipv4Addr::new(10, 0, 0, 50);
    let t = Instant::now();
    loop {
        let back = lab
            .exec_ok("rt", &["iptables-save", "-t", "mangle"])
            .contains("-j MULTIWAN_PREROUTING")
            && lab
                .connect_many(pinned, ECHO, ECHO_PORT, 3)
                .iter()
                .all(|s| *s == Some(uplink_addr(2)));
        if back {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not back in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn coexist() {
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("coexist.yaml", COEXIST);
    let daemon = lab.daemon(&path);
    let mut nft = Vec::new();
    for _ in 0..TRIALS {
        lab.nftables_service_reload();
        nft.push(coexist_gap(&lab));
        std::thread::sleep(Duration::from_millis(1500));
    }
    lab.ufw(&["--force", "enable"]);
    for wan in ["wan1", "wan2"] {
        lab.ufw(&["route", "allow", "in", "on", "lan0", "out", "on", wan]);
    }
    coexist_gap(&lab);
    let mut ufw = Vec::new();
    for _ in 0..TRIALS {
        let t = Instant::now();
        lab.ufw(&["reload"]);
        let reload = t.elapsed();
        ufw.push((reload, coexist_gap(&lab)));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let downs = daemon.log_text().matches("to=down").count();
    drop(daemon);
    let ms = |v: &[Duration]| {
        let (m, w) = stats(v);
        (m * 1000.0, w * 1000.0)
    };
    let (nm, nw) = ms(&nft);
    let (um, uw) = ms(&ufw.iter().map(|u| u.1).collect::<Vec<_>>());
    let (rm, _) = ms(&ufw.iter().map(|u| u.0).collect::<Vec<_>>());
    println!("## Coexistence: a firewall rewrites the tables, {TRIALS} times each");
    println!("| what | rules back and pinned traffic on its uplink: median | worst |");
    println!("|---|---|---|");
    println!(
        "| Debian nftables service (`nft -f` of its nftables.conf: `flush ruleset`), from the end of `nft -f` | {nm:.0} ms | {nw:.0} ms |"
    );
    println!(
        "| `ufw reload` (multiwan's rules untouched), from the end of the reload (which itself took {rm:.0} ms median) | {um:.0} ms | {uw:.0} ms |"
    );
    println!("Uplinks falsely declared down meanwhile: {downs}");
    println!(
        "Every trial, nft (ms): {}",
        nft.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
}

/// The primary's probe targets for each method: two servers in the lab's internet.
const METHODS: [(&str, &str); 4] = [
    ("icmp", "[198.51.100.1, 198.51.100.2]"),
    (
        "tcp",
        "[{host: 198.51.100.1, method: tcp, port: 80}, {host: 198.51.100.2, method: tcp, port: 80}]",
    ),
    (
        "http",
        "[{url: 'http://198.51.100.1/generate_204', expect: 204}, {url: 'http://198.51.100.2/generate_204', expect: 204}]",
    ),
    (
        "dns",
        "[{host: 198.51.100.1, method: dns, query: check.example.net}, {host: 198.51.100.2, method: dns, query: check.example.net}]",
    ),
];

/// Failover with each probe method on the primary, one lab, one run: the same outage as
/// `outage` (IPv4), `TRIALS` times per method.
fn methods() {
    let mut lab = Lab::new(2);
    lab.start_internet_echo();
    for addr in [
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(198, 51, 100, 2),
    ] {
        lab.serve_http("inet", addr, 80, "HTTP/1.1 204 No Content");
    }
    lab.serve_dns("198.51.100.1,198.51.100.2");
    println!("## Hard outage of the primary by probe method, {TRIALS} times each (seconds)");
    println!(
        "| primary probed by | first connection via backup: median | worst | all new connections via backup: median | worst |"
    );
    println!("|---|---|---|---|---|");
    let mut every = Vec::new();
    for (method, targets) in METHODS {
        let config = format!(
            "lan_interfaces: [lan0]
uplinks:
  - {{name: primary, interface: wan1, gateway: 100.64.1.1, tier: 1, probe: {{targets: {targets}}}}}
  - {{name: backup, interface: wan2, gateway: 100.64.2.1, tier: 2, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
"
        );
        let path = lab.file(&format!("{method}.yaml"), &config);
        let daemon = lab.daemon(&path);
        let mut trials = Vec::new();
        for i in 0..TRIALS {
            wait_all_via(&lab, uplink_addr(1).into(), Duration::from_secs(20));
            trials.push(outage(&lab, i, Family::V4));
            lab.blackhole(1, false);
        }
        drop(daemon);
        lab.multiwan_ok(&["cleanup", "-c", &path.to_string_lossy()]);
        let (f, fw) = stats(&trials.iter().map(|t| t.0).collect::<Vec<_>>());
        let (a, aw) = stats(&trials.iter().map(|t| t.1).collect::<Vec<_>>());
        println!("| {method} | {f:.2} | {fw:.2} | {a:.2} | {aw:.2} |");
        every.push(format!("{method}: {}", fmt_trials(&trials)));
    }
    println!("Every trial (first/all): {}", every.join("; "));
    println!();
}

/// One outage: (to first, to all) new connections via the backup.
type Trial = (Duration, Duration);

/// Dual-stack uplinks with the default probe settings; each family has two targets.
const CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: primary, interface: wan1, gateway: 100.64.1.1, gateway6: auto, tier: 1, probe: {targets: [198.51.100.1, 198.51.100.2, '2001:db8:e::1', '2001:db8:e::2']}}
  - {name: backup, interface: wan2, gateway: 100.64.2.1, gateway6: auto, tier: 2, probe: {targets: [198.51.100.1, 198.51.100.2, '2001:db8:e::1', '2001:db8:e::2']}}
";

/// multiwan's IPv4 trials, then its IPv6 trials, with one daemon.
fn multiwan_trials(lab: &Lab) -> (Vec<Trial>, Vec<Trial>) {
    let path = lab.file("failover.yaml", CONFIG);
    let daemon = lab.daemon(&path);
    let mut v4 = Vec::new();
    for i in 0..TRIALS {
        wait_all_via(lab, uplink_addr(1).into(), Duration::from_secs(15));
        let trial = outage(lab, i, Family::V4);
        lab.blackhole(1, false);
        v4.push(trial);
    }
    let mut v6 = Vec::new();
    for i in 0..TRIALS {
        wait_all_via(lab, lab::uplink_addr6(1), Duration::from_secs(15));
        let trial = outage(lab, i, Family::V6);
        lab.blackhole6(1, false);
        v6.push(trial);
    }
    drop(daemon);
    lab.multiwan_ok(&["cleanup", "-c", &path.to_string_lossy()]);
    (v4, v6)
}

/// Which family an outage cuts and times.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn client(self) -> (IpAddr, IpAddr) {
        match self {
            Family::V4 => (LAN_CLIENT.into(), ECHO.into()),
            Family::V6 => (lab::LAN_CLIENT6.into(), lab::ECHO6.into()),
        }
    }

    fn backup(self) -> IpAddr {
        match self {
            Family::V4 => uplink_addr(2).into(),
            Family::V6 => lab::uplink_addr6(2),
        }
    }

    fn blackhole(self, lab: &Lab, on: bool) {
        match self {
            Family::V4 => lab.blackhole(1, on),
            Family::V6 => lab.blackhole6(1, on),
        }
    }
}

/// What the tutorials do: ping the primary's gateway side every second, and after three
/// losses in a row point the default route at the backup and flush conntrack.
const NAIVE: &str = r#"
fails=0
while true; do
  if ping -c1 -W1 -I wan1 198.51.100.1 >/dev/null 2>&1; then fails=0; else fails=$((fails+1)); fi
  if [ "$fails" -ge 3 ]; then
    ip route replace default via 100.64.2.1 dev wan2
    conntrack -F >/dev/null 2>&1
    exit 0
  fi
  sleep 1
done
"#;

fn naive_trials(lab: &Lab) -> Vec<Trial> {
    for wan in ["wan1", "wan2"] {
        lab.exec_ok(
            "rt",
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                wan,
                "-j",
                "MASQUERADE",
            ],
        );
    }
    let mut out = Vec::new();
    for i in 0..TRIALS {
        lab.ip(
            "rt",
            &[
                "route",
                "replace",
                "default",
                "via",
                "100.64.1.1",
                "dev",
                "wan1",
            ],
        );
        lab.exec_ok("rt", &["conntrack", "-F"]);
        wait_all_via(lab, uplink_addr(1).into(), Duration::from_secs(5));
        let mut monitor: Child = Command::new("ip")
            .args(["netns", "exec", &lab.ns("rt"), "bash", "-c", NAIVE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let the loop reach a random phase, as a real outage would.
        std::thread::sleep(Duration::from_millis(1200));
        out.push(outage(lab, i, Family::V4));
        lab.blackhole(1, false);
        let _ = monitor.kill();
        let _ = monitor.wait();
    }
    out
}

fn wait_all_via(lab: &Lab, addr: IpAddr, limit: Duration) {
    let start = Instant::now();
    let (src, dst) = match addr {
        IpAddr::V4(_) => Family::V4.client(),
        IpAddr::V6(_) => Family::V6.client(),
    };
    while start.elapsed() < limit {
        let seen = lab.connect_many_ip(src, dst, ECHO_PORT, 5);
        if seen.iter().all(|s| *s == Some(addr)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("traffic did not return to {addr}");
}

/// Black-holes ISP 1 (one family) after a pseudo-random delay and times new connections of
/// that family (one attempt every 10 ms, 60 ms connect timeout: the lab's RTT is well under
/// 1 ms) until ten in a row left by ISP 2.
fn outage(lab: &Lab, trial: usize, family: Family) -> Trial {
    std::thread::sleep(Duration::from_millis(137 * (trial as u64 * 7 % 10)));
    let stop = Arc::new(AtomicBool::new(false));
    let path = format!("/var/run/netns/{}", lab.ns("lan"));
    let flag = stop.clone();
    let t0 = Instant::now();
    family.blackhole(lab, true);
    let client = std::thread::spawn(move || {
        lab::enter_netns(&path);
        let mut attempts: Vec<(Duration, bool)> = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            let at = t0.elapsed();
            let via_backup = probe_once(family) == Some(family.backup());
            attempts.push((at, via_backup));
            let tail = attempts.iter().rev().take(10);
            if attempts.len() >= 10 && tail.clone().all(|a| a.1) {
                break;
            }
            if at > Duration::from_secs(30) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        attempts
    });
    let attempts = client.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let first = attempts.iter().find(|a| a.1).map_or(Duration::MAX, |a| a.0);
    let last_bad = attempts.iter().rposition(|a| !a.1);
    let all = match last_bad {
        Some(i) if i + 1 < attempts.len() => attempts[i + 1].0,
        Some(_) => Duration::MAX,
        None => Duration::ZERO,
    };
    (first, all)
}

fn probe_once(family: Family) -> Option<IpAddr> {
    let (src, dst) = family.client();
    let mut s = lab::connect_bound(src, dst, ECHO_PORT, Duration::from_millis(60))?;
    s.set_read_timeout(Some(Duration::from_millis(60))).ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n]).trim().parse().ok()
}

fn stats(v: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    ((s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0, s[s.len() - 1])
}

fn report(ours: &[Trial], ours6: &[Trial], naive: &[Trial]) {
    let (of, ofw) = stats(&ours.iter().map(|t| t.0).collect::<Vec<_>>());
    let (oa, oaw) = stats(&ours.iter().map(|t| t.1).collect::<Vec<_>>());
    let (sf, sfw) = stats(&ours6.iter().map(|t| t.0).collect::<Vec<_>>());
    let (sa, saw) = stats(&ours6.iter().map(|t| t.1).collect::<Vec<_>>());
    let (nf, nfw) = stats(&naive.iter().map(|t| t.0).collect::<Vec<_>>());
    let (na, naw) = stats(&naive.iter().map(|t| t.1).collect::<Vec<_>>());
    println!("## Hard outage of the primary, {TRIALS} times (seconds from the outage)");
    println!(
        "| monitor | first connection via backup: median | worst | all new connections via backup: median | worst |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| multiwan, IPv4 (defaults: 500 ms, 2 targets, down after 3) | {of:.2} | {ofw:.2} | {oa:.2} | {oaw:.2} |"
    );
    println!(
        "| multiwan, IPv6 (the same uplinks' IPv6 side; only IPv6 cut) | {sf:.2} | {sfw:.2} | {sa:.2} | {saw:.2} |"
    );
    println!("| naive loop (ping every 1 s, 3 losses) | {nf:.2} | {nfw:.2} | {na:.2} | {naw:.2} |");
    println!(
        "| ratio (naive / multiwan), medians | {:.1}x | | {:.1}x | |",
        nf / of,
        na / oa
    );
    println!(
        "Every trial, multiwan IPv4 (first, all): {}",
        fmt_trials(ours)
    );
    println!(
        "Every trial, multiwan IPv6 (first, all): {}",
        fmt_trials(ours6)
    );
    println!("Every trial, naive (first, all): {}", fmt_trials(naive));
    println!();
}

fn fmt_trials(t: &[Trial]) -> String {
    t.iter()
        .map(|(a, b)| format!("{:.2}/{:.2}", a.as_secs_f64(), b.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU and peak RSS of `multiwan run` probing 4 uplinks x 2 targets for 60 s, then the
/// same with 10 000 pinned hosts (the 1 s reconcile reads and compares their sets).
fn resources() {
    let lab = Lab::new(4);
    let mut text = String::from("lan_interfaces: [lan0]\nuplinks:\n");
    for n in 1..=4 {
        text.push_str(&format!(
            "  - {{name: isp{n}, interface: wan{n}, gateway: 100.64.{n}.1, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}\n"
        ));
    }
    let plain = daemon_cost(&lab, "four.yaml", &text, 60);
    text.push_str(&lab::pin_policies(10_000, 4));
    let pinned = daemon_cost(&lab, "four-pins.yaml", &text, 30);
    println!("## Daemon cost: 4 uplinks x 2 targets, 500 ms interval");
    println!("| what | no pins, 60 s | 10 000 pinned hosts, 30 s |");
    println!("|---|---|---|");
    println!(
        "| CPU of `multiwan run` itself | {:.2} % of a core | {:.2} % of a core |",
        plain.own, pinned.own
    );
    println!(
        "| CPU of the tools it runs (iptables-save for the 1 s drift check) | {:.2} % of a core | {:.2} % of a core |",
        plain.kids, pinned.kids
    );
    println!(
        "| peak RSS (VmHWM) | {:.1} MB | {:.1} MB |",
        plain.hwm_mb, pinned.hwm_mb
    );
    println!(
        "| state changes during the run (should be 0) | {} | {} |",
        plain.changes, pinned.changes
    );
}

struct Cost {
    own: f64,
    kids: f64,
    hwm_mb: f64,
    changes: usize,
}

/// Runs the daemon on `text` and measures it for `secs` after 5 s of settling.
fn daemon_cost(lab: &Lab, file: &str, text: &str, secs: u64) -> Cost {
    let daemon = lab.daemon(&lab.file(file, text));
    let pid = daemon.child.id();
    std::thread::sleep(Duration::from_secs(5));
    let (own0, kids0) = cpu_ticks(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (own1, kids1) = cpu_ticks(pid);
    let secs = t.elapsed().as_secs_f64();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let changes = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("uplink state changed"))
        .count();
    Cost {
        own: (own1 - own0) as f64 / hz / secs * 100.0,
        kids: (kids1 - kids0) as f64 / hz / secs * 100.0,
        hwm_mb: hwm_kb / 1024.0,
        changes,
    }
}

/// utime+stime of the process, and of its waited-for children, in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14-17 of stat (1-based) are utime, stime, cutime, cstime; `after` starts at 3.
    (f[11] + f[12], f[13] + f[14])
}

/// One run of the RTT section: every probe RTT the daemon measured, and what status says
/// was lost.
struct RttRun {
    rtts_us: Vec<u64>,
    sent: u64,
    lost: u64,
    late: u64,
}

const PINS: usize = 1000;
/// What the probe targets' round trip takes: an ISP's, not the lab's microseconds.
const TARGET_RTT: Duration = Duration::from_millis(20);

fn rtt_config(pins: usize) -> String {
    let mut s = String::from(
        "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
",
    );
    s.push_str(&lab::pin_policies(pins, 2));
    s
}

/// Probe RTT p50/p99 with no pins and with 1000 pins, same lab, same run.
fn probe_rtt() {
    let secs: u64 = std::env::var("MULTIWAN_BENCH_RTT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let lab = Lab::new(2);
    lab.delay_targets(TARGET_RTT);
    let idle = rtt_run(&lab, "idle.yaml", &rtt_config(0), secs);
    let loaded = rtt_run(&lab, "pins.yaml", &rtt_config(PINS), secs);
    println!(
        "## Probe RTT on idle uplinks, targets answering after {} ms, {secs} s per run (2 uplinks x 2 targets, 500 ms)",
        TARGET_RTT.as_millis()
    );
    println!("| daemon | probes | RTT p50 | RTT p99 | worst | lost | late |");
    println!("|---|---|---|---|---|---|---|");
    for (what, r) in [
        ("no pins", &idle),
        ("1000 pins, reconciled every second", &loaded),
    ] {
        let (p50, p99, worst) = percentiles(&r.rtts_us);
        println!(
            "| {what} | {} | {p50:.3} ms | {p99:.3} ms | {worst:.3} ms | {} | {} |",
            r.sent, r.lost, r.late
        );
    }
    let (_, idle99, _) = percentiles(&idle.rtts_us);
    let (_, load99, _) = percentiles(&loaded.rtts_us);
    println!(
        "| p99 inflation (1000 pins - no pins) | | | {:.3} ms | | | |",
        load99 - idle99
    );
    println!();
}

fn rtt_run(lab: &Lab, file: &str, config: &str, secs: u64) -> RttRun {
    let path = lab.file(file, config);
    let daemon = lab.daemon_logging(&path, "info,multiwan::probe=debug");
    // Let the RTT estimates settle before counting.
    std::thread::sleep(Duration::from_secs(3));
    let skip = daemon.log_text().lines().count();
    std::thread::sleep(Duration::from_secs(secs));
    let status = lab.multiwan_ok(&["status", "--json", "-c", &path.to_string_lossy()]);
    let log = daemon.log_text();
    let rtts_us: Vec<u64> = log
        .lines()
        .skip(skip)
        .filter(|l| l.contains("probe reply"))
        .filter_map(|l| l.split("rtt_us=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    let json: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let total = |key: &str| -> u64 {
        json["uplinks"]
            .as_array()
            .map(|a| a.iter().map(|u| u[key].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    let run = RttRun {
        rtts_us,
        sent: total("probes_sent"),
        lost: total("probes_lost"),
        late: total("probes_late"),
    };
    drop(daemon);
    lab.multiwan_ok(&["cleanup", "-c", &path.to_string_lossy()]);
    run
}

/// p50, p99 and the worst, in milliseconds.
fn percentiles(us: &[u64]) -> (f64, f64, f64) {
    let mut v = us.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at =
        |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    (at(0.5), at(0.99), *v.last().unwrap() as f64 / 1000.0)
}

/// How long one disruption of multiwan's own state took to be repaired.
struct Repair {
    what: &'static str,
    times: Vec<Duration>,
}

const DRIFT_CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
sets:
  streaming: [203.0.113.0/25]
policies:
  - {name: console, match: {source: 10.0.0.50}, uplink: isp1}
  - {name: streaming, match: {destination_set: streaming}, uplink: isp2}
";

/// The disruptions another tool causes, the shell words to cause each, and how to see it
/// repaired.
const DISRUPTIONS: &[(&str, &str, &str)] = &[
    ("nft flush ruleset", "nft flush ruleset", "mangle"),
    ("iptables -t mangle -F", "iptables -t mangle -F", "mangle"),
    ("ipset flush", "ipset flush", "ipset"),
    (
        "delete multiwan's ip rules",
        "for p in $(ip rule show | awk -F: '$1 >= 10000 && $1 < 11000 {print $1}'); do ip rule del pref $p; done",
        "rules",
    ),
    (
        "flush multiwan's routes",
        "ip route flush table 101; ip route flush table 102",
        "routes",
    ),
];

/// Whether the router shows `kind` of multiwan's state as installed.
fn repaired(lab: &Lab, kind: &str) -> bool {
    let out = |argv: &[&str]| String::from_utf8_lossy(&lab.exec("rt", argv).stdout).into_owned();
    match kind {
        "mangle" => {
            let save = out(&["iptables-save", "-t", "mangle"]);
            save.contains("-j MULTIWAN_PREROUTING") && save.contains("-A MULTIWAN_POLICY")
        }
        "ipset" => out(&["ipset", "list", "multiwan_streaming"]).contains("203.0.113.0/25"),
        "rules" => {
            let rules = out(&["ip", "rule", "show"]);
            ["10000:", "10101:", "10102:", "10201:", "10202:"]
                .iter()
                .all(|p| rules.contains(p))
        }
        _ => {
            out(&["ip", "route", "show", "table", "101"]).contains("default via")
                && out(&["ip", "route", "show", "table", "102"]).contains("default via")
        }
    }
}

/// Each disruption five times against the running daemon: time until repaired, false
/// downs, and whether connections held on both uplinks lived through it all.
fn drift() {
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("drift.yaml", DRIFT_CONFIG);
    let daemon = lab.daemon(&path);
    let mut held: Vec<Held> = (0..10).map(|_| Held::open(&lab)).collect();
    let mut results = Vec::new();
    for (what, command, kind) in DISRUPTIONS {
        let mut r = Repair {
            what,
            times: Vec::new(),
        };
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(700));
            let t = Instant::now();
            lab.exec_ok("rt", &["sh", "-c", command]);
            while !repaired(&lab, kind) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            r.times.push(t.elapsed());
        }
        results.push(r);
    }
    std::thread::sleep(Duration::from_secs(1));
    let downs = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("to=down"))
        .count();
    let alive = held.iter_mut().map(|h| h.ping()).filter(|ok| *ok).count();
    let via: Vec<Ipv4Addr> = held.iter().map(|h| h.seen).collect();
    println!("## Another tool removes multiwan's state (each 5 times, daemon running)");
    println!("| disruption | repaired: median | worst |");
    println!("|---|---|---|");
    for r in &results {
        let mut t: Vec<f64> = r.times.iter().map(Duration::as_secs_f64).collect();
        t.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.3} s | {:.3} s |",
            r.what,
            t[t.len() / 2],
            t[t.len() - 1]
        );
    }
    println!(
        "False downs: {downs}. Connections held through all 25 disruptions: {alive} of {} alive (on isp1: {}, isp2: {}).",
        held.len(),
        via.iter().filter(|a| **a == uplink_addr(1)).count(),
        via.iter().filter(|a| **a == uplink_addr(2)).count()
    );
    println!();
}

/// A connection from the LAN that stays open; `ping` proves it still works.
struct Held {
    stream: std::net::TcpStream,
    seen: Ipv4Addr,
}

impl Held {
    fn open(lab: &Lab) -> Held {
        lab.in_ns("lan", || {
            let mut stream = lab::connect_from(LAN_CLIENT, ECHO, ECHO_PORT).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let seen = lab::read_line(&mut stream).unwrap().parse().unwrap();
            Held { stream, seen }
        })
    }

    fn ping(&mut self) -> bool {
        use std::io::Write;
        let mut buf = [0u8; 4];
        self.stream.write_all(b"ping").is_ok()
            && self.stream.read_exact(&mut buf).is_ok()
            && &buf == b"ping"
    }
}

const LOAD_CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: primary, interface: wan1, gateway: 100.64.1.1, tier: 1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: backup, interface: wan2, gateway: 100.64.2.1, tier: 2, probe: {targets: [198.51.100.1, 198.51.100.2]}}
metrics: 127.0.0.1:9273
";

/// Failover, quiet and then while 500 slow clients hold the metrics port and 100 clients
/// ask for status in a loop: medians side by side, and the daemon's open files and memory.
fn load() {
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("load.yaml", LOAD_CONFIG);
    let daemon = lab.daemon(&path);
    let socket = lab.socket();
    let pid = daemon_pid(&daemon);
    let quiet = trials(&lab, 10);
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slow_metrics_clients(&lab, 500, stop.clone());
    let status = status_clients(&socket, 100, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let (fds_before, rss_before) = (open_files(pid), rss_kb(pid));
    let loaded = trials(&lab, 10);
    let (fds, rss) = (open_files(pid), rss_kb(pid));
    stop.store(true, Ordering::Relaxed);
    let answered: u64 = status.into_iter().map(|t| t.join().unwrap()).sum();
    let reconnects = slow.join().unwrap();
    drop(daemon);
    let (q, _) = stats(&quiet.iter().map(|t| t.1).collect::<Vec<_>>());
    let (l, lw) = stats(&loaded.iter().map(|t| t.1).collect::<Vec<_>>());
    let (_, qw) = stats(&quiet.iter().map(|t| t.1).collect::<Vec<_>>());
    println!("## Failover under load (10 outages each, all new connections via the backup)");
    println!("| while | median | worst |");
    println!("|---|---|---|");
    println!("| quiet | {q:.2} s | {qw:.2} s |");
    println!(
        "| 500 slow clients on /metrics, 100 clients asking status in a loop | {l:.2} s | {lw:.2} s |"
    );
    println!("| ratio (loaded / quiet), medians | {:.2} | |", l / q);
    println!(
        "Status answers during the loaded trials: {answered}; slow clients cut off and reconnected: {reconnects}."
    );
    println!(
        "Daemon under load: {fds_before} -> {fds} open files, {:.1} -> {:.1} MB RSS.",
        rss_before as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!();
}

fn trials(lab: &Lab, n: usize) -> Vec<Trial> {
    (0..n)
        .map(|i| {
            wait_all_via(lab, uplink_addr(1).into(), Duration::from_secs(15));
            let t = outage(lab, i, Family::V4);
            lab.blackhole(1, false);
            t
        })
        .collect()
}

/// The pid of `multiwan run` itself (the daemon was started through `ip netns exec`,
/// which execs it: the same pid).
fn daemon_pid(daemon: &lab::Daemon) -> u32 {
    daemon.child.id()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `n` clients that connect to the metrics port and send one byte every 2 s, reconnecting
/// whenever the daemon cuts them off. Returns how many times they were cut off.
fn slow_metrics_clients(
    lab: &Lab,
    n: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let path = format!("/var/run/netns/{}", lab.ns("rt"));
    std::thread::spawn(move || {
        lab::enter_netns(&path);
        let addr: std::net::SocketAddr = "127.0.0.1:9273".parse().unwrap();
        let connect =
            || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok();
        let mut clients: Vec<Option<std::net::TcpStream>> = (0..n).map(|_| connect()).collect();
        let mut cut = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for c in clients.iter_mut() {
                use std::io::Write;
                let alive = c.as_mut().is_some_and(|s| s.write_all(b"G").is_ok());
                if !alive {
                    cut += 1;
                    *c = connect();
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        cut
    })
}

/// `n` clients asking for status over and over (the control socket is a file: no
/// namespace needed). Each returns how many answers it got.
fn status_clients(
    socket: &std::path::Path,
    n: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let (socket, stop) = (socket.to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    use std::io::Write;
                    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let mut answer = String::new();
                    if s.write_all(b"status\n").is_ok()
                        && s.read_to_string(&mut answer).is_ok()
                        && answer.contains("\"uplinks\"")
                    {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect()
}
