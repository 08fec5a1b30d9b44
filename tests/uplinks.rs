//! Uplinks as they come, in the namespace lab: a point-to-point device (a TUN made by socat
//! standing in for PPP or WireGuard) that has no gateway, appears late and reconnects with
//! a new address; probe methods beyond ICMP (an ISP that drops ICMP, a captive portal, a
//! resolver).

mod lab;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lab::{Daemon, ECHO, ECHO_PORT, LAN_CLIENT, Lab, uplink_addr};

const PPP1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const PEER1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PPP2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 6);
const PEER2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 5);

/// isp1 on Ethernet, isp2 a PPP-like device with no gateway (`gateway: auto` learns
/// `default dev ppp0`).
fn ppp_config(extra: &str) -> String {
    format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
  - {{name: isp2, interface: ppp0, gateway: auto, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
{extra}"
    )
}

fn ppp_lab() -> Option<Lab> {
    if !lab::available() {
        return None;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    lab.ppp_carrier(2);
    Some(lab)
}

/// Waits for a line with all of `parts` in the daemon's log.
fn logged(daemon: &Daemon, parts: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if daemon
            .log_text()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{parts:?} not logged within {limit:?}:\n{}",
        daemon.log_text()
    );
}

fn shares(lab: &Lab, n: usize) -> HashMap<Ipv4Addr, usize> {
    lab.seen(n)
}

#[test]
fn a_device_uplink_balances_pins_and_fails_over() {
    let Some(mut lab) = ppp_lab() else { return };
    let _session = lab.ppp_up(2, "ppp0", PPP1, PEER1);
    let path = lab.file(
        "m.yaml",
        &ppp_config("policies:\n  - {name: h11, match: {source: 10.0.0.11}, uplink: isp2}\n"),
    );
    let daemon = lab.daemon(&path);
    let table = lab.exec_ok("rt", &["ip", "route", "show", "table", "102"]);
    assert!(table.contains("default dev ppp0"), "{table}");
    let seen = shares(&lab, 200);
    assert!(
        seen.get(&uplink_addr(1)).copied().unwrap_or(0) > 40
            && seen.get(&PPP1).copied().unwrap_or(0) > 40,
        "balanced over both: {seen:?}"
    );
    let pinned = lab.connect_many(Ipv4Addr::new(10, 0, 0, 11), ECHO, ECHO_PORT, 10);
    assert_eq!(pinned, vec![Some(PPP1); 10], "pinned to the device uplink");
    // The ISP behind the device stops forwarding (the session stays up).
    lab.exec_ok("isp2", &["iptables", "-I", "FORWARD", "-j", "DROP"]);
    logged(
        &daemon,
        &["uplink=isp2 from=up to=down"],
        Duration::from_secs(5),
    );
    assert_eq!(shares(&lab, 50), HashMap::from([(uplink_addr(1), 50)]));
    let fallback = lab.connect_many(Ipv4Addr::new(10, 0, 0, 11), ECHO, ECHO_PORT, 5);
    assert_eq!(
        fallback,
        vec![Some(uplink_addr(1)); 5],
        "the pin falls back"
    );
}

#[test]
fn a_device_that_appears_later_carries_traffic_once_probed() {
    let Some(mut lab) = ppp_lab() else { return };
    let path = lab.file("m.yaml", &ppp_config(""));
    let daemon = lab.daemon(&path);
    // No ppp0 yet: down, not an error, and never balanced onto.
    assert_eq!(shares(&lab, 50), HashMap::from([(uplink_addr(1), 50)]));
    let status = lab.multiwan_ok(&["status", "-c", path.to_str().unwrap()]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("isp2 ") && l.contains(" down ")),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let _session = lab.ppp_up(2, "ppp0", PPP1, PEER1);
    let appeared = Instant::now();
    let up = logged(
        &daemon,
        &["uplink=isp2 from=down to=up"],
        Duration::from_secs(10),
    );
    // up_after (5) rounds of 500 ms from the first probe, plus a generous margin.
    assert!(up < Duration::from_secs(5), "{up:?}");
    let seen = shares(&lab, 100);
    assert!(seen.get(&PPP1).copied().unwrap_or(0) > 20, "{seen:?}");
    eprintln!(
        "carrying traffic {:?} after the device appeared",
        appeared.elapsed()
    );
}

#[test]
fn a_reconnect_with_a_new_address_deletes_only_the_old_addresss_connections() {
    let Some(mut lab) = ppp_lab() else { return };
    let session = lab.ppp_up(2, "ppp0", PPP1, PEER1);
    let path = lab.file("m.yaml", &ppp_config(""));
    let daemon = lab.daemon(&path);
    let seen = shares(&lab, 40);
    assert!(
        seen.contains_key(&PPP1) && seen.contains_key(&uplink_addr(1)),
        "{seen:?}"
    );
    // Connections held open through isp1 across the reconnect.
    let mut held = lab::Held::open_via(&lab, LAN_CLIENT, uplink_addr(1), 3);
    let ct = |lab: &Lab| lab.exec_ok("rt", &["conntrack", "-L", "-f", "ipv4"]);
    assert!(ct(&lab).contains(&format!("dst={PPP1} ")), "{}", ct(&lab));
    // The session drops; the device is gone at once (new index when it comes back).
    lab.ppp_down(session);
    logged(
        &daemon,
        &["uplink=isp2 from=up to=down"],
        Duration::from_secs(3),
    );
    let _session = lab.ppp_up(2, "ppp0", PPP2, PEER2);
    let back = Instant::now();
    logged(
        &daemon,
        &["uplink=isp2 from=down to=up"],
        Duration::from_secs(10),
    );
    let seen = shares(&lab, 60);
    assert!(
        seen.get(&PPP2).copied().unwrap_or(0) > 10,
        "the new address carries traffic: {seen:?}"
    );
    // 1 s + up_after (5) rounds of 500 ms, generously.
    assert!(
        back.elapsed() < Duration::from_secs(6),
        "{:?}",
        back.elapsed()
    );
    let table = ct(&lab);
    assert!(
        !table.contains(&format!("dst={PPP1} ")),
        "old address' entries gone:\n{table}"
    );
    assert!(
        table.contains(&format!("dst={} ", uplink_addr(1))),
        "{table}"
    );
    for h in &mut held {
        assert!(h.ping(), "connections on the other uplink survive");
    }
}

/// Both uplinks Ethernet; isp2 is probed with `extra_probe` targets.
fn method_config(isp2_targets: &str) -> String {
    format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {{targets: [198.51.100.1, 198.51.100.2]}}}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1, probe: {{targets: {isp2_targets}}}}}
"
    )
}

#[test]
fn tcp_http_and_dns_probes_keep_an_uplink_up_when_icmp_is_dropped() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::new(2);
    lab.start_internet_echo();
    lab.serve_http(
        "inet",
        Ipv4Addr::new(198, 51, 100, 1),
        80,
        "HTTP/1.1 204 No Content",
    );
    lab.serve_dns("198.51.100.2");
    let targets = "[{host: 198.51.100.1, method: tcp, port: 80}, {url: 'http://198.51.100.1/generate_204', expect: 204}, {host: 198.51.100.2, method: dns, query: check.example.net}]";
    let path = lab.file("m.yaml", &method_config(targets).replace("quorum", "q"));
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "probe: {targets: [{host",
        "probe: {quorum: 3, targets: [{host",
    );
    std::fs::write(&path, text).unwrap();
    let daemon = lab.daemon(&path);
    std::thread::sleep(Duration::from_secs(2));
    // Both ISPs now drop ICMP: isp1 (ICMP probes) goes down, isp2 (tcp, http and dns,
    // all three needed) stays up and carries everything.
    for isp in ["isp1", "isp2"] {
        lab.exec_ok(
            isp,
            &["iptables", "-I", "FORWARD", "-p", "icmp", "-j", "DROP"],
        );
    }
    logged(
        &daemon,
        &["uplink=isp1 from=up to=down"],
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !daemon.log_text().contains("uplink=isp2 from=up"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(shares(&lab, 30), HashMap::from([(uplink_addr(2), 30)]));
    // The resolver stops answering: the dns probe fails, quorum 3 is lost, isp2 goes down.
    lab.exec_ok(
        "isp2",
        &[
            "iptables", "-I", "FORWARD", "-p", "udp", "--dport", "53", "-j", "DROP",
        ],
    );
    logged(
        &daemon,
        &["uplink=isp2 from=up to=down"],
        Duration::from_secs(5),
    );
}

#[test]
fn a_captive_portal_puts_an_http_probed_uplink_down_though_ping_works() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    lab.serve_http(
        "inet",
        Ipv4Addr::new(198, 51, 100, 1),
        80,
        "HTTP/1.1 204 No Content",
    );
    // isp2's portal: every web request of its customer goes to a login page.
    lab.ip("isp2", &["addr", "add", "172.31.0.1/32", "dev", "lo"]);
    lab.serve_http(
        "isp2",
        Ipv4Addr::new(172, 31, 0, 1),
        80,
        "HTTP/1.1 302 Found\r\nLocation: http://portal.isp2.example/login",
    );
    let targets = "[198.51.100.2, {url: 'http://198.51.100.1/generate_204', expect: 204}]";
    let text = method_config(targets).replace(
        "probe: {targets: [198.51.100.2, {url",
        "probe: {quorum: 2, targets: [198.51.100.2, {url",
    );
    let path = lab.file("m.yaml", &text);
    let daemon = lab.daemon_logging(&path, "info,multiwan::probe=debug");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !daemon.log_text().contains("to=down"),
        "{}",
        daemon.log_text()
    );
    lab.exec_ok(
        "isp2",
        &[
            "iptables",
            "-t",
            "nat",
            "-I",
            "PREROUTING",
            "-i",
            "rt",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            "172.31.0.1:80",
        ],
    );
    // Ping still answers through isp2 the whole time: only the http probe sees the portal.
    logged(
        &daemon,
        &[
            "uplink=isp2 from=up to=down",
            "1 of 2 targets answered the last, quorum 2",
        ],
        Duration::from_secs(5),
    );
    logged(
        &daemon,
        &["redirect to http://portal.isp2.example/login (a captive portal?)"],
        Duration::from_secs(1),
    );
    let log = daemon.log_text();
    assert!(!log.contains("uplink=isp1 from=up to=down"), "{log}");
}

#[test]
fn a_metered_backup_is_probed_slowly_until_it_is_needed() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let text = method_config("[198.51.100.1, 198.51.100.2]").replace(
        "gateway: 100.64.2.1, probe: {targets",
        "gateway: 100.64.2.1, tier: 2, probe: {standby_interval: 3s, targets",
    );
    assert!(text.contains("standby_interval"), "{text}");
    let path = lab.file("m.yaml", &text);
    let daemon = lab.daemon(&path);
    let status = |lab: &Lab| -> serde_json::Value {
        let text = lab.multiwan_ok(&["status", "--json", "-c", path.to_str().unwrap()]);
        serde_json::from_str(&text).unwrap()
    };
    std::thread::sleep(Duration::from_secs(1));
    let first = status(&lab);
    assert_eq!(first["uplinks"][1]["standby"], true, "{first}");
    assert_eq!(first["uplinks"][0]["standby"], false, "{first}");
    std::thread::sleep(Duration::from_secs(6));
    let later = status(&lab);
    let sent = |s: &serde_json::Value, i: usize| s["uplinks"][i]["probes_sent"].as_u64().unwrap();
    let backup = sent(&later, 1) - sent(&first, 1);
    let primary = sent(&later, 0) - sent(&first, 0);
    assert!(backup <= 8, "2 targets every 3 s for 6 s: {backup}");
    assert!(primary >= 20, "2 targets every 500 ms: {primary}");
    // The primary dies: the backup wakes at once and takes over within the usual bounds.
    lab.blackhole(1, true);
    logged(
        &daemon,
        &["uplink=isp1 from=up to=down"],
        Duration::from_secs(5),
    );
    let start = Instant::now();
    while shares(&lab, 10) != HashMap::from([(uplink_addr(2), 10)]) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the backup did not take over"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&lab)["uplinks"][1]["standby"], false);
}
