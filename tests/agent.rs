//! `multiwan run` in the namespace lab with real traffic: failover, fail-back, link events,
//! loss tolerance, conntrack flushing, drift repair, reload and crash restart.

mod lab;

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use lab::{Daemon, ECHO, ECHO_PORT, Held, Lab, uplink_addr};

const PROBES: &str = "probe: {targets: [198.51.100.1, 198.51.100.2]}";

fn config(weights: (u32, u32), extra: &str) -> String {
    format!(
        "lan_interfaces: [lan0, lan1]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, weight: {}, {PROBES}}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1, weight: {}, {PROBES}}}
{extra}",
        weights.0, weights.1
    )
}

fn start(text: &str) -> Option<(Lab, Daemon, String)> {
    if !lab::available() {
        return None;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", text);
    let daemon = lab.daemon(&path);
    Some((lab, daemon, path.to_string_lossy().into_owned()))
}

/// Polls until every one of 10 new connections leaves by `addr`; returns the time taken.
fn until_all_via(lab: &Lab, addr: Ipv4Addr, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if lab.seen(10) == HashMap::from([(addr, 10)]) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn blackholed_isp_loses_new_connections_then_gets_them_back() {
    let Some((lab, daemon, _)) = start(&config((70, 30), "")) else {
        return;
    };
    assert_eq!(
        lab.seen(200).len(),
        2,
        "both uplinks carry traffic before the outage"
    );
    lab.blackhole(1, true);
    let moved = until_all_via(&lab, uplink_addr(2), Duration::from_secs(5))
        .expect("all new connections leave by isp2 within 5 s");
    eprintln!("failover after {moved:?}");
    assert_eq!(lab.seen(100), HashMap::from([(uplink_addr(2), 100)]));
    assert!(
        daemon
            .log_text()
            .contains("uplink=isp1 from=up to=down reason=3 failed rounds in a row"),
        "{}",
        daemon.log_text()
    );
    lab.blackhole(1, false);
    // up_after (5) good rounds of 500 ms.
    assert!(
        daemon
            .wait_for(
                "uplink=isp1 from=down to=up reason=5 good rounds in a row",
                Duration::from_secs(8)
            )
            .is_some(),
        "{}",
        daemon.log_text()
    );
    let shares = lab.seen(300);
    let isp1 = *shares.get(&uplink_addr(1)).unwrap_or(&0);
    assert!(
        isp1 > 150 && isp1 < 270,
        "isp1 carries its 70 % again: {shares:?}"
    );
}

#[test]
fn link_down_is_acted_on_without_waiting_for_probes() {
    // Probes alone would need 3 rounds of 5 s to notice.
    let slow = "probe: {targets: [198.51.100.1], interval: 5s, timeout: 1s, up_after: 1}";
    let text = config((50, 50), "").replace(PROBES, slow);
    let Some((lab, daemon, _)) = start(&text) else {
        return;
    };
    let t = Instant::now();
    lab.ip("isp1", &["link", "set", "rt", "down"]); // carrier loss on the router's wan1
    let seen = daemon
        .wait_for(
            "uplink=isp1 from=up to=down reason=link down",
            Duration::from_secs(5),
        )
        .expect("link event");
    assert!(t.elapsed() < Duration::from_secs(2), "down after {seen:?}");
    assert!(until_all_via(&lab, uplink_addr(2), Duration::from_secs(2)).is_some());
    // Admin down on the router deletes the uplink's routes silently; they must come back.
    lab.ip("isp1", &["link", "set", "rt", "up"]);
    lab.ip("rt", &["link", "set", "wan1", "down"]);
    lab.ip("rt", &["link", "set", "wan1", "up"]);
    let start = Instant::now();
    loop {
        let table = lab.exec_ok("rt", &["ip", "route", "show", "table", "101"]);
        if table.contains("default via 100.64.1.1 dev wan1") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "route not re-installed: {table}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.expect("uplink=isp1 from=down to=up", Duration::from_secs(12));
}

#[test]
fn ten_percent_loss_for_30_s_is_never_down() {
    let Some((lab, daemon, _)) = start(&config((50, 50), "")) else {
        return;
    };
    // 10 % of the exchanges lose their reply.
    let drop = [
        "iptables",
        "-I",
        "FORWARD",
        "-i",
        "upstream",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.1",
        "-j",
        "DROP",
    ];
    lab.exec_ok("isp2", &drop);
    std::thread::sleep(Duration::from_secs(30));
    let log = daemon.log_text();
    assert!(!log.contains("uplink=isp2 from=up to=down"), "{log}");
    let counters = lab.exec_ok("isp2", &["iptables", "-L", "FORWARD", "-v", "-x", "-n"]);
    let dropped: u64 = counters
        .lines()
        .find(|l| l.contains("statistic"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // ~120 probe replies cross ISP 2 in 30 s: ~12 dropped on average, 3 or more all but
    // certainly (P(X <= 2) is about 2e-4).
    assert!(dropped >= 3, "the loss was real: {dropped} packets dropped");
}

#[test]
fn failover_keeps_healthy_connections_and_flushes_only_the_dead_uplinks() {
    let pin = "policies:\n  - {name: pinned, match: {source: 10.0.0.51}, uplink: isp2}\n";
    let Some((lab, daemon, _)) = start(&config((70, 30), pin)) else {
        return;
    };
    let mut long = Held::open(&lab, Ipv4Addr::new(10, 0, 0, 51));
    assert_eq!(long.seen, uplink_addr(2));
    let mut held: Vec<Held> = (0..30).map(|_| Held::open(&lab, lab::LAN_CLIENT)).collect();
    let count = |mark: &str| {
        let out = lab.exec(
            "rt",
            &[
                "conntrack",
                "-L",
                "-p",
                "tcp",
                "--dport",
                "8000",
                "--mark",
                mark,
            ],
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let (on1, on2) = (count("0x100/0xff00"), count("0x200/0xff00"));
    assert!(
        on1 > 0 && on2 > 1,
        "connections on both uplinks: {on1} / {on2}"
    );
    lab.blackhole(1, true);
    daemon
        .wait_for(
            "conntrack entries deleted what=isp1",
            Duration::from_secs(5),
        )
        .expect("flush logged");
    assert_eq!(count("0x100/0xff00"), 0, "isp1's entries are gone");
    assert_eq!(
        count("0x200/0xff00"),
        on2,
        "isp2's entries are all still there"
    );
    assert!(long.ping(), "the connection on isp2 survives isp1 failing");
    lab.blackhole(1, false);
    daemon
        .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
        .expect("recovers");
    assert!(long.ping(), "and recovering");
    for h in held.iter_mut().filter(|h| h.seen == uplink_addr(2)) {
        assert!(h.ping());
    }
}

#[test]
fn drift_is_repaired_within_3_s() {
    let Some((lab, daemon, _)) = start(&config((70, 30), "")) else {
        return;
    };
    let before = lab.snapshot("rt");
    let t = Instant::now();
    lab.exec_ok("rt", &["iptables", "-t", "mangle", "-F", "MULTIWAN_LAN"]);
    lab.exec_ok("rt", &["ip", "rule", "del", "pref", "10201"]);
    loop {
        if lab.snapshot("rt") == before {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "not repaired:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        daemon
            .log_text()
            .contains("iptables rules had drifted: repaired")
    );
}

#[test]
fn reload_refuses_a_broken_file_and_applies_a_good_one() {
    let Some((lab, mut daemon, path)) = start(&config((90, 10), "")) else {
        return;
    };
    let mut old = Held::open(&lab, lab::LAN_CLIENT);
    let before = lab.snapshot("rt");
    std::fs::write(&path, "lan_interfaces: [lan0]\nuplinks: []\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for("reload refused", Duration::from_secs(5))
        .expect("refused");
    assert!(daemon.log_text().contains("uplinks: the list is empty"));
    assert!(daemon.alive());
    assert_eq!(lab.snapshot("rt"), before, "the kernel is untouched");
    std::fs::write(&path, config((10, 90), "")).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for("config reloaded", Duration::from_secs(5))
        .expect("reloaded");
    std::thread::sleep(Duration::from_millis(300));
    let shares = lab.seen(400);
    let isp2 = *shares.get(&uplink_addr(2)).unwrap_or(&0);
    assert!(isp2 > 330, "new weights 10/90 apply: {shares:?}");
    assert!(old.ping(), "old connections are untouched");
}

/// A reload the kernel refuses (here: another tool owns an ipset of the name the new config
/// needs, with another type) puts the previous config back, and says so in status.
#[test]
fn reload_the_kernel_refuses_keeps_the_previous_config_running() {
    let Some((lab, daemon, path)) = start(&config((90, 10), "")) else {
        return;
    };
    let mut old = Held::open(&lab, lab::LAN_CLIENT);
    std::thread::sleep(Duration::from_millis(500));
    let before = lab.snapshot("rt");
    lab.exec_ok("rt", &["ipset", "create", "multiwan_video", "hash:ip"]);
    let extra = format!(
        "sets:\n  video: [203.0.113.0/25]\npolicies:\n  - {{name: video, match: {{destination_set: video}}, uplink: isp2}}\ncontrol: {{socket: {}}}\n",
        lab.socket().display()
    );
    std::fs::write(&path, config((10, 90), &extra)).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.expect("config reloaded", Duration::from_secs(5));
    daemon.expect(
        "reload refused: still running the previous config; its rules are installed again",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The other tool's set carried multiwan's prefix: the reconcile removed it as stale.
    assert_eq!(lab.snapshot("rt"), before, "the previous rules are back");
    let shares = lab.seen(200);
    let isp1 = *shares.get(&uplink_addr(1)).unwrap_or(&0);
    assert!(isp1 > 150, "the old weights 90/10 still apply: {shares:?}");
    assert!(old.ping(), "old connections are untouched");
    let status = lab.multiwan_ok(&["status", "--json", "-c", &path]);
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["last_reload"]["ok"], false, "{status}");
    let why = json["last_reload"]["error"].as_str().unwrap_or("");
    assert!(why.contains("ipset"), "{why}");
    // `multiwan reload` (what `systemctl reload` runs) fails when the kernel refuses (the
    // impostor set is now in use by another rule, so no reconcile can remove it)...
    lab.exec_ok("rt", &["ipset", "create", "multiwan_video", "hash:ip"]);
    let rule = [
        "INPUT",
        "-m",
        "set",
        "--match-set",
        "multiwan_video",
        "src",
        "-j",
        "ACCEPT",
    ];
    lab.exec_ok("rt", &[&["iptables", "-A"][..], &rule].concat());
    let reload = |lab: &Lab| {
        let out = lab.multiwan(&["reload", "-c", &path]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, said) = reload(&lab);
    assert!(
        !ok && said.contains("reload refused") && said.contains("ipset"),
        "{said}"
    );
    // ...succeeds once it can be installed (the reconcile removes the impostor set)...
    lab.exec_ok("rt", &[&["iptables", "-D"][..], &rule].concat());
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, said) = reload(&lab);
    assert!(ok && said.contains("reloaded"), "{said}");
    // ...and never sends a file that does not validate, naming its line.
    let log_before = daemon.log_text().len();
    std::fs::write(&path, "lan_interfaces: [lan0]\nuplinks: []\n").unwrap();
    let (ok, said) = reload(&lab);
    assert!(
        !ok && said.contains(":2:") && said.contains("reload not sent"),
        "{said}"
    );
    assert!(
        !daemon.log_text()[log_before..].contains("reload"),
        "the daemon was not asked"
    );
}

#[test]
fn restart_after_kill_9_reconciles_to_the_same_state() {
    let Some((lab, daemon, path)) = start(&config((70, 30), "")) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = lab.snapshot("rt");
    daemon.crash();
    let again = lab.daemon(std::path::Path::new(&path));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lab.snapshot("rt"), before, "{}", again.log_text());
}

#[test]
fn backup_tier_carries_traffic_only_while_the_primary_is_down() {
    let text = config((1, 1), "").replace(
        "weight: 1, probe: {targets: [198.51.100.1, 198.51.100.2]}}\n{}",
        "",
    );
    let text = text.replace(
        "gateway: 100.64.2.1, weight: 1,",
        "gateway: 100.64.2.1, weight: 1, tier: 2,",
    );
    assert!(text.contains("tier: 2"), "{text}");
    let Some((lab, daemon, _)) = start(&text) else {
        return;
    };
    assert_eq!(lab.seen(100), HashMap::from([(uplink_addr(1), 100)]));
    lab.blackhole(1, true);
    until_all_via(&lab, uplink_addr(2), Duration::from_secs(5)).expect("backup takes over");
    assert_eq!(lab.seen(100), HashMap::from([(uplink_addr(2), 100)]));
    lab.blackhole(1, false);
    daemon
        .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
        .expect("primary back");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.seen(100), HashMap::from([(uplink_addr(1), 100)]));
}

#[test]
fn address_and_auto_gateway_changes_are_followed() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    // ISP 2 hands out its gateway by DHCP: a default route of higher metric in main.
    lab.dhcp_default(2, "100.64.2.1");
    let text = config((50, 50), "").replace("gateway: 100.64.2.1", "gateway: auto");
    let daemon = lab.daemon(&lab.file("multiwan.yaml", &text));
    // Connections through both uplinks before the renewal: some held open through isp1.
    let seen = lab.seen(40);
    assert!(seen.contains_key(&uplink_addr(2)), "{seen:?}");
    let mut held = Held::open_via(&lab, lab::LAN_CLIENT, uplink_addr(1), 3);
    let ct = |lab: &Lab| lab.exec_ok("rt", &["conntrack", "-L", "-f", "ipv4"]);
    assert!(ct(&lab).contains("dst=100.64.2.2 "), "{}", ct(&lab));
    // A renewal: new address, new gateway. The new address comes before the old one goes,
    // as systemd-networkd and NetworkManager do it. (A client that deletes first leaves a
    // moment without an address; a reconcile that reads the kernel in that moment takes
    // the uplink down until it earns `up_after` good rounds again.)
    // (systemd's default promote_secondaries keeps the new one when the old, primary, goes.)
    lab.exec_ok(
        "rt",
        &["sysctl", "-qw", "net.ipv4.conf.wan2.promote_secondaries=1"],
    );
    lab.ip("isp2", &["addr", "add", "100.64.2.254/24", "dev", "rt"]);
    lab.ip("rt", &["addr", "add", "100.64.2.3/24", "dev", "wan2"]);
    lab.ip("rt", &["addr", "del", "100.64.2.2/24", "dev", "wan2"]);
    lab.dhcp_default(2, "100.64.2.254");
    let start = Instant::now();
    loop {
        let rules = lab.exec_ok("rt", &["ip", "rule", "show"]);
        let table = lab.exec_ok("rt", &["ip", "route", "show", "table", "102"]);
        if rules.contains("from 100.64.2.3 lookup 102")
            && table.contains("default via 100.64.2.254 dev wan2")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "not followed:\n{rules}{table}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = lab.seen(100);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.contains_key(&Ipv4Addr::new(100, 64, 2, 3)),
        "isp2 traffic uses the new address: {seen:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !daemon.log_text().contains("to=down"),
        "probing follows the new address:\n{}",
        daemon.log_text()
    );
    // The connections NATed to the old address are gone (they were dead); the others live.
    let table = ct(&lab);
    assert!(
        !table.contains("dst=100.64.2.2 "),
        "{table}\n{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .log_text()
            .contains("reason=isp2 no longer has 100.64.2.2"),
        "{}",
        daemon.log_text()
    );
    for h in &mut held {
        assert!(
            h.ping(),
            "a connection through isp1 survives the renewal of isp2"
        );
    }
}

#[test]
fn a_missing_interface_is_reported_and_does_not_stop_the_others() {
    let ghost = "  - {name: ghost, interface: wan9, gateway: 100.64.9.1, weight: 50, probe: {targets: [198.51.100.1]}}\n";
    let text = config((50, 50), "").replacen(
        "lan_interfaces: [lan0, lan1]\nuplinks:\n",
        &format!("lan_interfaces: [lan0, lan1]\nuplinks:\n{ghost}"),
        1,
    );
    let Some((lab, mut daemon, _)) = start(&text) else {
        return;
    };
    assert!(
        daemon
            .log_text()
            .contains("uplink ghost: interface wan9 does not exist (yet)"),
        "{}",
        daemon.log_text()
    );
    daemon
        .wait_for("uplink=ghost from=up to=down", Duration::from_secs(5))
        .expect("ghost is down");
    std::thread::sleep(Duration::from_millis(200));
    let seen = lab.seen(200);
    assert_eq!(seen.len(), 2, "the real uplinks carry everything: {seen:?}");
    assert!(
        !seen.contains_key(&Ipv4Addr::UNSPECIFIED),
        "no connection failed: {seen:?}"
    );
    assert!(daemon.alive());
}

#[test]
fn when_all_down_unreachable_refuses_at_once_and_recovers() {
    let Some((lab, daemon, _)) = start(&config((50, 50), "when_all_down: unreachable\n")) else {
        return;
    };
    lab.blackhole(1, true);
    lab.blackhole(2, true);
    daemon
        .wait_for("uplink=isp1 from=up to=down", Duration::from_secs(5))
        .expect("isp1 down");
    daemon
        .wait_for("uplink=isp2 from=up to=down", Duration::from_secs(5))
        .expect("isp2 down");
    // The log line comes just before the swap: wait for the swap itself.
    let unreachable = Instant::now();
    while !lab
        .exec_ok(
            "rt",
            &["iptables", "-t", "mangle", "-S", "MULTIWAN_BALANCE"],
        )
        .contains("0xfe00/0xff00")
    {
        assert!(
            unreachable.elapsed() < Duration::from_secs(2),
            "balance chain never became unreachable"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A black-holed path would hang until the 2 s connect timeout; the unreachable rule
    // answers at once.
    let times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(
                lab.connect_many(lab::LAN_CLIENT, ECHO, ECHO_PORT, 1),
                vec![None]
            );
            t.elapsed()
        })
        .collect();
    assert!(
        times.iter().all(|t| *t < Duration::from_millis(300)),
        "refused at once, not timed out: {times:?}"
    );
    lab.blackhole(2, false);
    daemon
        .wait_for("uplink=isp2 from=down to=up", Duration::from_secs(8))
        .expect("isp2 back");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.seen(20), HashMap::from([(uplink_addr(2), 20)]));
}

/// Which address the echo server sees for each of `n` connections the router itself opens
/// (no source address chosen: the kernel picks one from main's default route, via wan1).
fn seen_from_router(lab: &Lab, n: usize) -> HashMap<Ipv4Addr, usize> {
    let answers = lab.in_ns("rt", move || {
        (0..n)
            .map(|_| {
                let addr = std::net::SocketAddr::from((ECHO, ECHO_PORT));
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                lab::read_line(&mut s)?.parse::<Ipv4Addr>().ok()
            })
            .collect::<Vec<_>>()
    });
    let mut out = HashMap::new();
    for a in answers {
        *out.entry(a.unwrap_or(Ipv4Addr::UNSPECIFIED)).or_insert(0) += 1;
    }
    out
}

/// Polls until 5 new connections of the router's own leave by `addr` (the rules swap a few
/// ms after the transition is logged); panics with the last answer after 15 s.
fn until_router_via(lab: &Lab, addr: Ipv4Addr) {
    let start = Instant::now();
    loop {
        let seen = seen_from_router(lab, 5);
        if seen == HashMap::from([(addr, 5)]) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the router's own connections do not all leave by {addr}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_routers_own_connections_follow_failover_while_probes_keep_their_uplink() {
    let text = format!(
        "lan_interfaces: [lan0, lan1]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, tier: 1, {PROBES}}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1, tier: 2, {PROBES}}}
"
    );
    let Some((lab, daemon, _)) = start(&text) else {
        return;
    };
    assert_eq!(
        seen_from_router(&lab, 5),
        HashMap::from([(uplink_addr(1), 5)])
    );
    // ISP 1 dies; main's default route still points at it.
    lab.blackhole(1, true);
    daemon.expect("uplink=isp1 from=up to=down", Duration::from_secs(10));
    // The router's own new connections (DNS, NTP, VPN) leave by ISP 2.
    until_router_via(&lab, uplink_addr(2));
    // isp1's probes kept leaving by isp1 (their socket mark), so they see it come back.
    lab.blackhole(1, false);
    daemon.expect("uplink=isp1 from=down to=up", Duration::from_secs(10));
    until_router_via(&lab, uplink_addr(1));
}

/// Seconds since midnight of a log line's timestamp (`2026-12-01T23:16:10.234668Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split('T').nth(1)?;
    let mut parts = time.trim_end_matches('Z').split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[test]
fn a_1000_pin_failover_swap_and_flush_do_not_delay_the_probes() {
    if !lab::available() {
        return;
    }
    let text = config((50, 50), &lab::pin_policies(1000, 2));
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("pins.yaml", &text);
    let daemon = lab.daemon_logging(&path, "info,multiwan::probe=debug");
    // Connections on both uplinks, so the failover has conntrack entries to delete.
    let _held: Vec<Held> = (0..20).map(|_| Held::open(&lab, lab::LAN_CLIENT)).collect();
    std::thread::sleep(Duration::from_secs(3));
    lab.blackhole(1, true);
    daemon.expect(
        "conntrack entries deleted what=isp1",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.log_text();
    let swap = log
        .lines()
        .find(|l| l.contains("rules swapped") && l.contains("MULTIWAN_POLICY"))
        .unwrap_or_else(|| panic!("the failover rewrites the 1000-rule policy chain:\n{log}"));
    let at = log_time(swap).unwrap();
    // isp2's rounds from 3 s before the swap to 2 s after (its two probes leave together).
    let mut rounds: Vec<f64> = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("probe sent") && l.contains("uplink=isp2"))
    {
        let t = log_time(line).unwrap();
        if (at - 3.0..at + 2.0).contains(&t) && rounds.last().is_none_or(|r| t - r > 0.1) {
            rounds.push(t);
        }
    }
    assert!(rounds.len() >= 8, "isp2 kept probing: {rounds:?}");
    let worst = rounds.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    eprintln!("{swap}\nlongest gap between isp2's rounds: {:.3} s", worst);
    // The interval is 500 ms with up to 5 % jitter either way.
    assert!(
        worst <= 0.55,
        "a round of isp2 was delayed by the failover: {worst:.3} s between rounds {rounds:?}"
    );
}

/// A reload (or stop) signal that arrives while the daemon is still installing its rules
/// must not kill it with the signal's default action.
#[test]
fn a_sighup_during_start_up_is_not_fatal() {
    if !lab::available() {
        return;
    }
    let text = config((50, 50), &lab::pin_policies(500, 2));
    let lab = Lab::new(2);
    let path = lab.file("slow-start.yaml", &text);
    let mut daemon = lab.spawn_daemon(&path, "info");
    let pid = daemon.child.id();
    // `ip netns exec` execs multiwan in the same process. Before multiwan's `main` runs (the
    // loader, under load for a while) no program can hold a signal off: wait until the
    // process shows SIGHUP blocked (`SigBlk`, bit 0), multiwan's first instruction.
    let start = Instant::now();
    let hup_blocked = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & 1 != 0)
    };
    while !hup_blocked() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "multiwan never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut sent = 0;
    while !daemon.log_text().contains("started: rules installed") {
        assert!(
            daemon.alive(),
            "a SIGHUP during start-up killed the daemon (after {sent})"
        );
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}",
            daemon.log_text()
        );
        daemon.signal(libc::SIGHUP);
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sent > 0, "the start-up was too quick to test");
    daemon.expect("config reloaded", Duration::from_secs(5));
    assert!(daemon.alive());
}

/// Another tool deletes multiwan's ip rules (a firewall script, `ip rule flush`, a network
/// manager), flushes its routes, or flushes nf_tables: the probes are steered by those
/// rules, so this must not look like dead ISPs (no down, no connections deleted), and all
/// of it is back within a second.
#[test]
fn another_tool_removing_multiwans_state_is_repaired_without_a_false_down() {
    let Some((lab, daemon, _)) = start(&config((50, 50), "")) else {
        return;
    };
    let mut held: Vec<Held> = (0..10).map(|_| Held::open(&lab, lab::LAN_CLIENT)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let rules_back = |lab: &Lab| {
        let rules = lab.exec_ok("rt", &["ip", "rule", "show"]);
        ["10000:", "10101:", "10102:", "10201:", "10202:"]
            .iter()
            .all(|p| rules.contains(p))
    };
    let routes_back = |lab: &Lab| {
        lab.exec_ok("rt", &["ip", "route", "show", "table", "101"])
            .contains("default via")
    };
    let chains_back = |lab: &Lab| {
        lab.exec_ok("rt", &["iptables-save", "-t", "mangle"])
            .contains("-j MULTIWAN_PREROUTING")
    };
    type Repaired<'a> = &'a dyn Fn(&Lab) -> bool;
    let disruptions: [(&str, Repaired); 3] = [
        (
            "for p in $(ip rule show | awk -F: '$1 >= 10000 && $1 < 11000 {print $1}'); do ip rule del pref $p; done",
            &rules_back,
        ),
        ("ip route flush table 101", &routes_back),
        ("nft flush ruleset", &chains_back),
    ];
    for (command, back) in disruptions {
        for _ in 0..3 {
            let t = Instant::now();
            lab.exec_ok("rt", &["sh", "-c", command]);
            while !back(&lab) {
                assert!(
                    t.elapsed() < Duration::from_secs(1),
                    "`{command}` not repaired within 1 s:\n{}",
                    daemon.log_text()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    let log = daemon.log_text();
    assert!(!log.contains("to=down"), "a false down:\n{log}");
    assert!(!log.contains("conntrack entries deleted"), "{log}");
    for h in held.iter_mut() {
        assert!(h.ping(), "a connection on a healthy uplink was lost");
    }
}

/// Pins kept as set data keep the semantics of rules: policies in order, first match wins
/// across hosts, a subnet, a port policy and a destination set; a pinned uplink that dies
/// falls back as each policy says (balance or drop).
#[test]
fn pins_in_sets_keep_first_match_and_fallbacks() {
    let policies = "policies:
  - {name: h11, match: {source: 10.0.0.11}, uplink: isp2}
  - {name: h60, match: {source: 10.0.0.60}, uplink: isp2, fallback: drop}
  - {name: lan-a, match: {source: 10.0.0.0/28}, uplink: isp1}
  - {name: x1, match: {source: 10.9.0.1}, uplink: isp1}
  - {name: x2, match: {source: 10.9.0.2}, uplink: isp1}
  - {name: x3, match: {source: 10.9.0.3}, uplink: isp1}
  - {name: web, match: {source: 10.0.0.50, protocol: tcp, destination_ports: 8000}, uplink: isp1}
  - {name: video, match: {destination_set: s}, uplink: isp2}
sets:
  s: [203.0.113.0/25]
";
    let Some((lab, daemon, path)) = start(&config((50, 50), policies)) else {
        return;
    };
    let plan = lab.multiwan_ok(&["plan", "-c", &path, "--format", "iptables"]);
    let policy_rules = plan
        .lines()
        .filter(|l| l.starts_with("-A MULTIWAN_POLICY"))
        .count();
    assert_eq!(
        policy_rules, 5,
        "three sets for six pins, then two rules:\n{plan}"
    );
    let via = |src: &str, dst: Ipv4Addr| -> HashMap<Ipv4Addr, usize> {
        let src: Ipv4Addr = src.parse().unwrap();
        let mut out = HashMap::new();
        for s in lab.connect_many(src, dst, ECHO_PORT, 10) {
            *out.entry(s.unwrap_or(Ipv4Addr::UNSPECIFIED)).or_insert(0) += 1;
        }
        out
    };
    let only = |addr: Ipv4Addr| HashMap::from([(addr, 10)]);
    assert_eq!(
        via("10.0.0.11", ECHO),
        only(uplink_addr(2)),
        "first match: the host, not the subnet"
    );
    assert_eq!(via("10.0.0.10", ECHO), only(uplink_addr(1)), "the subnet");
    assert_eq!(via("10.0.0.60", ECHO), only(uplink_addr(2)));
    assert_eq!(
        via("10.0.0.50", lab::SET_MEMBER),
        only(uplink_addr(1)),
        "the port policy comes before the set"
    );
    assert_eq!(
        via("10.0.0.66", lab::SET_MEMBER),
        only(uplink_addr(2)),
        "the set"
    );
    lab.blackhole(2, true);
    daemon.expect("uplink=isp2 from=up to=down", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        via("10.0.0.11", ECHO),
        only(uplink_addr(1)),
        "fallback balance"
    );
    let dropped = lab.connect_many("10.0.0.60".parse().unwrap(), ECHO, ECHO_PORT, 2);
    assert_eq!(dropped, vec![None, None], "fallback drop");
    assert_eq!(via("10.0.0.66", lab::SET_MEMBER), only(uplink_addr(1)));
    // The failover rewrote the policy chain's few rules; the sets' members stayed.
    let swapped = daemon
        .log_text()
        .lines()
        .find(|l| l.contains("rules swapped"))
        .unwrap_or_default()
        .to_string();
    assert!(swapped.contains("MULTIWAN_POLICY"), "{swapped}");
    assert!(
        !daemon.log_text().contains("ipsets updated"),
        "{}",
        daemon.log_text()
    );
}

/// A router under load can stop the daemon for a moment (a busy CPU, a swap storm, a
/// debugger): replies that reached the host in time must not be judged lost because the
/// daemon read them late. Here the daemon is frozen (SIGSTOP) for 700 ms (well past the
/// 150 ms loss deadline) or 1.3 s (past the 1 s probe timeout) while its probes are
/// answered; one failed round would take an uplink down (`down_after: 1`).
#[test]
fn a_daemon_frozen_for_a_moment_does_not_judge_answered_probes_lost() {
    let probes = "probe: {targets: [198.51.100.1, 198.51.100.2], down_after: 1, interval: 200ms}";
    let text = config((50, 50), "").replace(PROBES, probes);
    assert!(text.contains("down_after: 1"), "{text}");
    let Some((lab, daemon, _)) = start(&text) else {
        return;
    };
    // Replies take 100 ms, so a probe is in flight half the time, as on a real path.
    lab.delay_targets(Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(3));
    let pid = daemon.child.id() as libc::pid_t;
    for i in 0..10 {
        // At varying points of the probe rounds.
        std::thread::sleep(Duration::from_millis(300 + 37 * i));
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        // Some stops outlast the probe timeout (1 s) as well.
        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 700 } else { 1300 }));
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    }
    std::thread::sleep(Duration::from_secs(1));
    let log = daemon.log_text();
    assert!(!log.contains("to=down"), "a false down:\n{log}");
}

/// The processes whose parent is `parent`: (pid, command line).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let parent = parent.to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string));
        if ppid.as_deref() != Some(parent.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        out.push((pid, cmdline.trim().to_string()));
    }
    out
}

/// The restore processes the daemon has running: (pid, command line).
fn restore_children(daemon: &Daemon) -> Vec<(u32, String)> {
    children_of(daemon.child.id())
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("restore"))
        .collect()
}

/// On nf_tables a swap (a failover) is committed by a standing `iptables-nft-restore` rather
/// than a process of its own (about a millisecond instead of ~16 ms: docs/benchmarks.md).
/// When that process dies, the next swap still happens (one-shot) and a new one is started;
/// on iptables-legacy there is none (each legacy restore holds the xtables lock).
#[test]
fn failovers_are_committed_by_a_standing_restore_process_that_is_replaced_if_it_dies() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", &config((50, 50), ""));
    let daemon = lab.daemon_logging(&path, "info,multiwan::kernel::netfilter::session=debug");
    std::thread::sleep(Duration::from_secs(2));
    let standing = restore_children(&daemon);
    if lab::legacy() {
        assert!(standing.is_empty(), "{standing:?}");
    } else {
        assert_eq!(standing.len(), 1, "{standing:?}");
        assert!(standing[0].1.contains("--noflush"), "{standing:?}");
    }
    lab.blackhole(1, true);
    until_all_via(&lab, uplink_addr(2), Duration::from_secs(5)).expect("failover to isp2");
    let log = daemon.log_text();
    assert_eq!(
        log.contains("committed by the standing restore process"),
        !lab::legacy(),
        "{log}"
    );
    if lab::legacy() {
        return;
    }
    // Killed: the fail-back still happens, and a new standing process follows.
    let old = standing[0].0;
    // SAFETY: kill(2) on a process of this test's daemon.
    assert_eq!(unsafe { libc::kill(old as libc::pid_t, libc::SIGKILL) }, 0);
    lab.blackhole(1, false);
    assert!(
        daemon
            .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
            .is_some(),
        "{}",
        daemon.log_text()
    );
    let start = Instant::now();
    while lab.seen(100).len() != 2 {
        assert!(start.elapsed() < Duration::from_secs(3), "no fail-back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = Instant::now();
    loop {
        let now = restore_children(&daemon);
        if now.len() == 1 && now[0].0 != old {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no new standing process: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon in a PID namespace of its own (as in a container) cannot match the kernel's
/// commit notifications, which name global pids, to its restore process: it says so once,
/// runs one process per change, and fails over as before.
#[test]
fn in_a_pid_namespace_of_its_own_swaps_run_one_process_each() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", &config((50, 50), ""));
    let wrapper = ["unshare", "--pid", "--fork", "--kill-child=SIGTERM"];
    let daemon = lab.spawn_daemon_in(&path, "info", &[], &wrapper);
    assert!(
        daemon
            .wait_for("started: rules installed", Duration::from_secs(10))
            .is_some(),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    lab.blackhole(1, true);
    until_all_via(&lab, uplink_addr(2), Duration::from_secs(5)).expect("failover to isp2");
    let log = daemon.log_text();
    let said = log.matches("no standing restore process here").count();
    assert_eq!(said, usize::from(!lab::legacy()), "{log}");
    // unshare ignores SIGTERM while it waits for its child: stop the daemon itself.
    for (pid, _) in children_of(daemon.child.id()) {
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
}
