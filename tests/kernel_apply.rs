//! `multiwan apply` and `cleanup` against the real kernel, proven with real traffic in a
//! namespace lab (see tests/lab and scripts/lab.sh).

mod lab;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use lab::{ECHO, ECHO_PORT, LAN_CLIENT, Lab, SET_MEMBER, uplink_addr};

const BASE: &str = "lan_interfaces: [lan0, lan1]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 70}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 30}
";

fn lab_with(isps: usize, config: &str) -> Option<(Lab, String)> {
    if !lab::available() {
        return None;
    }
    let lab = Lab::new(isps);
    lab.start_internet_echo();
    let path = lab
        .file("multiwan.yaml", config)
        .to_string_lossy()
        .into_owned();
    lab.multiwan_ok(&["apply", "-c", &path]);
    Some((lab, path))
}

fn shares(seen: &[Option<Ipv4Addr>]) -> HashMap<Ipv4Addr, usize> {
    let mut out = HashMap::new();
    for s in seen {
        *out.entry(s.expect("every connection succeeds"))
            .or_insert(0) += 1;
    }
    out
}

/// Opens 2000 connections and checks every uplink's share is within 3 points of its
/// weight. A correct cascade misses that bound by chance in about 1 % of samples (3 points
/// is about 2.9 standard deviations at 70 %), so a miss is confirmed on a second,
/// independent sample: a wrong cascade misses both, chance alone about once in 10^4.
fn assert_shares(lab: &Lab, expected: &[(Ipv4Addr, f64)]) {
    let mut last = String::new();
    for _ in 0..2 {
        let counts = shares(&lab.connect_many(LAN_CLIENT, ECHO, ECHO_PORT, 2000));
        assert_eq!(
            counts.len(),
            expected.len(),
            "only the uplink addresses are seen (masquerade): {counts:?}"
        );
        let misses: Vec<String> = expected
            .iter()
            .filter_map(|(addr, weight)| {
                let got = *counts.get(addr).unwrap_or(&0) as f64 / 2000.0;
                ((got - weight).abs() > 0.03).then(|| {
                    format!(
                        "{addr}: {:.1} %, expected {:.0} % ± 3",
                        got * 100.0,
                        weight * 100.0
                    )
                })
            })
            .collect();
        if misses.is_empty() {
            return;
        }
        last = format!("{misses:?} in {counts:?}");
    }
    panic!("two samples of 2000 missed the weights: {last}");
}

#[test]
fn weights_70_30_over_2000_connections() {
    let Some((lab, _)) = lab_with(2, BASE) else {
        return;
    };
    assert_shares(&lab, &[(uplink_addr(1), 0.70), (uplink_addr(2), 0.30)]);
}

#[test]
fn weights_50_30_20_over_three_uplinks() {
    let config = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 50}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 30}
  - {name: isp3, interface: wan3, gateway: 100.64.3.1, weight: 20}
";
    let Some((lab, _)) = lab_with(3, config) else {
        return;
    };
    assert_shares(
        &lab,
        &[
            (uplink_addr(1), 0.50),
            (uplink_addr(2), 0.30),
            (uplink_addr(3), 0.20),
        ],
    );
}

#[test]
fn long_lived_connection_keeps_its_uplink() {
    use std::io::{Read, Write};
    let Some((lab, _)) = lab_with(2, BASE) else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let path = format!("/var/run/netns/{}", lab.ns("lan"));
    let long = std::thread::spawn(move || {
        lab::enter_netns(&path);
        let mut s = lab::connect_from(LAN_CLIENT, ECHO, ECHO_PORT).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        let first: Ipv4Addr = String::from_utf8_lossy(&buf[..n]).trim().parse().unwrap();
        done_tx.send(first).unwrap();
        rx.recv().unwrap();
        // Still alive, still on the same uplink (the ISPs drop a foreign source address).
        s.write_all(b"ping").unwrap();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        first
    });
    let first = done_rx.recv().unwrap();
    let others = shares(&lab.connect_many(LAN_CLIENT, ECHO, ECHO_PORT, 500));
    assert_eq!(others.len(), 2, "the others are balanced over both uplinks");
    let mark = if first == uplink_addr(1) {
        0x100
    } else {
        0x200
    };
    let ct = lab.exec_ok(
        "rt",
        &["conntrack", "-L", "-p", "tcp", "--state", "ESTABLISHED"],
    );
    assert!(
        ct.lines().any(|l| l.contains(&format!("mark={mark} "))),
        "{ct}"
    );
    tx.send(()).unwrap();
    assert_eq!(long.join().unwrap(), first);
}

#[test]
fn pinned_host_port_range_and_set_leave_by_their_uplink() {
    let config = format!(
        "{BASE}policies:
  - {{name: host, match: {{source: 10.0.0.50}}, uplink: isp2}}
  - {{name: many, match: {{source: [10.0.9.1, 10.0.9.2, 10.0.9.3, 10.0.9.4, 10.0.0.60, 10.0.9.5]}}, uplink: isp2}}
  - {{name: games, match: {{protocol: udp, destination_ports: [\"5000-5100\"]}}, uplink: isp2}}
  - {{name: video, match: {{destination_set: streaming}}, uplink: isp2}}
sets:
  streaming: [203.0.113.0/25]
"
    );
    let Some((lab, _)) = lab_with(2, &config) else {
        return;
    };
    let pinned = shares(&lab.connect_many(Ipv4Addr::new(10, 0, 0, 50), ECHO, ECHO_PORT, 100));
    assert_eq!(pinned, HashMap::from([(uplink_addr(2), 100)]));
    // A policy with more than four sources matches through an ipset of its own.
    let many = shares(&lab.connect_many(Ipv4Addr::new(10, 0, 0, 60), ECHO, ECHO_PORT, 100));
    assert_eq!(many, HashMap::from([(uplink_addr(2), 100)]));
    let set = shares(&lab.connect_many(LAN_CLIENT, SET_MEMBER, ECHO_PORT, 100));
    assert_eq!(set, HashMap::from([(uplink_addr(2), 100)]));
    lab.start_udp_echo("inet", ECHO, 5050);
    lab.start_udp_echo("inet", ECHO, 6000);
    let udp = shares(&lab.udp_many(LAN_CLIENT, ECHO, 5050, 100));
    assert_eq!(udp, HashMap::from([(uplink_addr(2), 100)]));
    // Outside the range: balanced.
    let other = shares(&lab.udp_many(LAN_CLIENT, ECHO, 6000, 200));
    assert_eq!(other.len(), 2, "{other:?}");
}

#[test]
fn action_main_bypasses_multiwan() {
    let config = format!(
        "{BASE}policies:\n  - {{name: direct, match: {{destination: 192.0.2.10}}, action: main}}\n"
    );
    let Some((lab, _)) = lab_with(2, &config) else {
        return;
    };
    // The main table's default route is via wan1; balancing would send ~30 % via wan2.
    let seen = shares(&lab.connect_many(LAN_CLIENT, ECHO, ECHO_PORT, 60));
    assert_eq!(seen, HashMap::from([(uplink_addr(1), 60)]));
    let ct = lab.exec_ok("rt", &["conntrack", "-L", "-d", "192.0.2.10"]);
    assert!(
        ct.lines().all(|l| l.contains("mark=65280")),
        "connections carry the main mark 0xff00:\n{ct}"
    );
}

#[test]
fn port_forward_on_uplink_2_is_answered_through_uplink_2() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_echo("lan", LAN_CLIENT, 8080);
    // The admin's own port forward, as a firewall script would add it.
    let dnat = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        "wan2",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "DNAT",
        "--to-destination",
        "10.0.0.10:8080",
    ];
    lab.exec_ok("rt", &dnat);
    let from_internet = |lab: &Lab, n| {
        lab.in_ns("inet", move || {
            (0..n)
                .map(|_| lab::ask_peer(ECHO, uplink_addr(2), 8080))
                .collect::<Vec<_>>()
        })
    };
    // Without multiwan the reply follows the main default route (wan1) and ISP 1 drops it.
    assert!(
        from_internet(&lab, 2).iter().all(Option::is_none),
        "control: the lab must catch wrong-uplink replies"
    );
    // The control's connections stay in conntrack, half-open and unmarked (multiwan was not
    // there). The client binds to an address, so each connection's source port is picked at
    // random: one of the 50 below that drew the same port would be taken for the old,
    // unmarked connection and answered by the wrong uplink again. They go first.
    lab.exec(
        "rt",
        &["conntrack", "-D", "-p", "tcp", "--orig-port-dst", "8080"],
    );
    let path = lab
        .file("multiwan.yaml", BASE)
        .to_string_lossy()
        .into_owned();
    lab.multiwan_ok(&["apply", "-c", &path]);
    let seen = from_internet(&lab, 50);
    assert!(
        seen.iter().all(|s| *s == Some(ECHO)),
        "every forwarded connection is answered: {seen:?}"
    );
}

#[test]
fn lan_to_lan_and_lan_to_router_stay_off_the_uplinks() {
    let Some((lab, _)) = lab_with(2, BASE) else {
        return;
    };
    let lan2 = Ipv4Addr::new(10, 0, 2, 10);
    lab.start_echo("lan2", lan2, 9000);
    lab.start_echo("rt", Ipv4Addr::new(10, 0, 0, 1), 9001);
    // The peer address seen is the LAN client itself: no masquerade, so no uplink.
    let seen = shares(&lab.connect_many(LAN_CLIENT, lan2, 9000, 20));
    assert_eq!(seen, HashMap::from([(LAN_CLIENT, 20)]));
    let seen = shares(&lab.connect_many(LAN_CLIENT, Ipv4Addr::new(10, 0, 0, 1), 9001, 20));
    assert_eq!(seen, HashMap::from([(LAN_CLIENT, 20)]));
    let ct = lab.exec_ok("rt", &["conntrack", "-L", "-p", "tcp", "--dport", "9000"]);
    assert!(
        !ct.is_empty() && ct.lines().all(|l| l.contains("mark=65280")),
        "LAN-to-LAN carries the main mark, not an uplink's:\n{ct}"
    );
    for isp in ["isp1", "isp2"] {
        let fwd = lab.exec_ok(isp, &["iptables", "-L", "FORWARD", "-v", "-x", "-n"]);
        assert!(!fwd.contains("10.0.2.10"), "{isp} saw LAN traffic: {fwd}");
    }
}

#[test]
fn apply_twice_changes_nothing_and_repairs_drift() {
    let Some((lab, path)) = lab_with(2, BASE) else {
        return;
    };
    let once = lab.snapshot("rt");
    let out = lab.multiwan_ok(&["apply", "-c", &path]);
    assert!(out.contains("ip rules +0 -0; routes +0 -0"), "{out}");
    assert_eq!(lab.snapshot("rt"), once);
    // Drift: our chain flushed, a rule and a route deleted by hand.
    lab.exec_ok(
        "rt",
        &["iptables", "-t", "mangle", "-F", "MULTIWAN_BALANCE"],
    );
    lab.exec_ok("rt", &["ip", "rule", "del", "pref", "10201"]);
    lab.exec_ok(
        "rt",
        &[
            "ip",
            "route",
            "del",
            "default",
            "table",
            "102",
            "via",
            "100.64.2.1",
        ],
    );
    lab.exec_ok(
        "rt",
        &[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-m",
            "comment",
            "--comment",
            "multiwan",
            "-j",
            "MULTIWAN_PREROUTING",
        ],
    );
    assert_ne!(lab.snapshot("rt"), once);
    lab.multiwan_ok(&["apply", "-c", &path]);
    assert_eq!(lab.snapshot("rt"), once);
}

#[test]
fn cleanup_restores_exactly_what_was_there() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    // Someone else's mangle rule, port forward and ip rules, in place before multiwan.
    lab.exec_ok(
        "rt",
        &[
            "iptables",
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-s",
            "10.0.0.66",
            "-j",
            "MARK",
            "--set-mark",
            "0x7",
        ],
    );
    let dnat = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        "wan1",
        "-p",
        "tcp",
        "--dport",
        "2222",
        "-j",
        "DNAT",
        "--to-destination",
        "10.0.0.10:22",
    ];
    lab.exec_ok("rt", &dnat);
    lab.exec_ok(
        "rt",
        &[
            "ip", "rule", "add", "pref", "500", "fwmark", "0x7", "lookup", "main",
        ],
    );
    lab.exec_ok(
        "rt",
        &[
            "ip",
            "rule",
            "add",
            "pref",
            "10050",
            "from",
            "10.0.0.60",
            "lookup",
            "main",
        ],
    );
    let before = lab.snapshot("rt");
    let config = format!(
        "{BASE}policies:\n  - {{name: v, match: {{destination_set: s}}, uplink: isp2}}\nsets:\n  s: [203.0.113.0/25]\n"
    );
    let path = lab
        .file("multiwan.yaml", &config)
        .to_string_lossy()
        .into_owned();
    lab.multiwan_ok(&["apply", "-c", &path]);
    assert_ne!(lab.snapshot("rt"), before);
    let out = lab.multiwan_ok(&["cleanup", "-c", &path]);
    assert!(
        out.contains("removed: 8 chain(s), 5 ip rule(s), 4 route(s), 2 set(s)"),
        "{out}"
    );
    assert_eq!(lab.snapshot("rt"), before);
    // A second cleanup finds nothing and succeeds.
    let out = lab.multiwan_ok(&["cleanup", "-c", &path]);
    assert!(
        out.contains("removed: 0 chain(s), 0 ip rule(s), 0 route(s), 0 set(s)"),
        "{out}"
    );
}

#[test]
fn auto_gateway_is_learned_from_the_main_table() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    lab.dhcp_default(2, "100.64.2.1");
    let config = BASE.replace("gateway: 100.64.2.1", "gateway: auto");
    let path = lab
        .file("multiwan.yaml", &config)
        .to_string_lossy()
        .into_owned();
    let out = lab.multiwan(&["apply", "-c", &path]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = lab.exec_ok("rt", &["ip", "route", "show", "table", "102"]);
    assert!(table.contains("default via 100.64.2.1 dev wan2"), "{table}");
}

#[test]
fn lab_script_up_then_down_leaves_nothing() {
    if !lab::available() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh");
    let prefix = format!("mwls{}", std::process::id() % 1_000_000);
    let host_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    let run = |args: &[&str]| {
        std::process::Command::new(script)
            .args(args)
            .output()
            .unwrap()
    };
    let up = run(&["up", "--prefix", &prefix, "--no-servers"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let list = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        list.lines()
            .filter(|l| l.starts_with(&format!("{prefix}-")))
            .count(),
        6
    );
    assert!(run(&["down", "--prefix", &prefix]).status.success());
    let list = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!list.contains(&prefix), "{list}");
    let after = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(host_links, after, "the host's links are untouched");
}

#[test]
fn router_settings_are_reported_and_fixed_only_when_managed() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.sysctl("rt", "net.ipv4.ip_forward", "0");
    lab.sysctl("rt", "net.ipv4.conf.wan2.rp_filter", "1");
    let path = lab
        .file("multiwan.yaml", BASE)
        .to_string_lossy()
        .into_owned();
    let out = lab.multiwan(&["apply", "-c", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("warning: net.ipv4.ip_forward is 0 but should be 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: net.ipv4.conf.wan2.rp_filter is 1 but should be 2"),
        "{stderr}"
    );
    assert_eq!(
        lab.exec_ok("rt", &["sysctl", "-n", "net.ipv4.ip_forward"])
            .trim(),
        "0",
        "warn mode changes nothing"
    );
    let managed = lab
        .file("managed.yaml", &format!("{BASE}sysctl: manage\n"))
        .to_string_lossy()
        .into_owned();
    let out = lab.multiwan(&["apply", "-c", &managed]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("set net.ipv4.ip_forward = 1 (was 0)"));
    assert_eq!(
        lab.exec_ok("rt", &["sysctl", "-n", "net.ipv4.ip_forward"])
            .trim(),
        "1"
    );
    assert_eq!(
        lab.exec_ok("rt", &["sysctl", "-n", "net.ipv4.conf.wan2.rp_filter"])
            .trim(),
        "2"
    );
}

#[test]
fn a_restart_after_reordering_keeps_each_interfaces_mark_and_table() {
    let Some((lab, path)) = lab_with(2, BASE) else {
        return;
    };
    lab.multiwan_ok(&["apply", "-c", &path]);
    let before = lab.snapshot("rt");
    // The admin lists isp2 first and restarts (no explicit ids): by list order isp2 would
    // now be id 1, and every established connection's mark would point at the other ISP.
    let reordered = "lan_interfaces: [lan0, lan1]
uplinks:
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 30}
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 70}
";
    let path2 = lab.file("reordered.yaml", reordered);
    let out = lab.multiwan_ok(&["apply", "-c", path2.to_str().unwrap()]);
    assert!(out.contains("ip rules +0 -0; routes +0 -0"), "{out}");
    let table = lab.exec_ok("rt", &["ip", "route", "show", "table", "101"]);
    assert!(table.contains("dev wan1"), "{table}");
    let mangle = lab.exec_ok("rt", &["iptables-save", "-t", "mangle"]);
    assert!(
        mangle.contains("-i wan1 -m conntrack --ctstate NEW -m comment --comment \"multiwan inbound isp1\" -j CONNMARK --set-xmark 0x100/0xff00"),
        "{mangle}"
    );
    // Only the order of the balance rules may differ.
    let strip = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.contains("MULTIWAN_BALANCE -m"))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&lab.snapshot("rt")), strip(&before));
}

/// iptables-restore commits each table on its own: when the nat part of a transaction is
/// refused, the mangle part that went in before it is taken out again, so a failed apply
/// leaves every table as it was.
#[test]
fn a_refused_table_leaves_the_others_as_they_were() {
    use multiwan::plan::{Observed, Plan, Rule, Target};
    let Some((lab, _)) = lab_with(2, BASE) else {
        return;
    };
    let before = lab.snapshot("rt");
    let other = BASE.replace("weight: 70", "weight: 10");
    let config = multiwan::config::parse(&other, "other.yaml").unwrap();
    let mut plan = Plan::build(&config, &Observed::default());
    plan.nat.chains[0].rules.push(Rule::new(
        vec![],
        Target::Dnat("not-an-address".into()),
        "refused by the kernel",
    ));
    let result = lab.in_ns("rt", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(multiwan::kernel::netfilter::apply(&plan, &mut false))
            .map(|_| ())
            .map_err(|e| multiwan::error_chain(&e))
    });
    let error = result.expect_err("the nat table is refused");
    assert!(error.contains("nat"), "{error}");
    assert_eq!(
        lab.snapshot("rt"),
        before,
        "the new balance chain of the mangle table was taken out again"
    );
}

/// Uninstalling as an admin does it: `cleanup` refuses while the daemon runs (it would
/// re-install everything within a second), and once the service is stopped it removes
/// everything without a config (the admin deleted /etc/multiwan first), even with
/// non-default tables and rule priorities, from what the daemon recorded.
#[test]
fn cleanup_needs_no_config_and_refuses_while_the_daemon_runs() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let before = lab.snapshot("rt");
    let config = format!("{BASE}table_base: 300\nrule_priority_base: 20000\n");
    let path = lab.file("multiwan.yaml", &config);
    let daemon = lab.daemon(&path);
    let record = lab.socket().with_file_name("installed.json");
    let record = record.to_string_lossy();
    let installed = lab.snapshot("rt");
    assert!(installed.contains("20101:"), "{installed}");
    let out = lab.multiwan(&["cleanup", "--record", &record]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("stop it first"),
        "{said}"
    );
    assert_eq!(lab.snapshot("rt"), installed, "nothing was removed");
    drop(daemon);
    std::fs::remove_file(&path).unwrap();
    let out = lab.multiwan_ok(&["cleanup", "--record", &record]);
    assert!(out.contains("as recorded in"), "{out}");
    assert!(out.contains("5 ip rule(s), 4 route(s)"), "{out}");
    assert_eq!(lab.snapshot("rt"), before);
}

/// A set whose members change is refilled through a temporary set and swapped in; a set
/// a resolver fills keeps what it learned, with the time it has left, when its timeout
/// changes. Every step goes to the kernel over ipset's netlink protocol.
#[test]
fn changed_sets_are_swapped_in_and_learned_members_keep_their_time() {
    let sets = |members: &str, timeout: &str| {
        format!(
            "{BASE}sets:\n  tv: {{domains: [tv.example], members: [{members}], timeout: {timeout}}}\npolicies:\n  - {{name: tv, match: {{destination_set: tv}}, uplink: isp2}}\n"
        )
    };
    let Some((lab, path)) = lab_with(2, &sets("203.0.113.0/25", "1h")) else {
        return;
    };
    let list = |set: &str| lab.exec_ok("rt", &["ipset", "list", set]);
    let members = |set: &str| -> Vec<String> {
        let text = list(set);
        let after = text.split("Members:\n").nth(1).unwrap_or("").to_string();
        let mut m: Vec<String> = after.lines().map(str::to_string).collect();
        m.sort();
        m
    };
    assert_eq!(members("multiwan_tv"), ["203.0.113.0/25"]);
    // What a resolver learned (dnsmasq adds with the set's timeout).
    lab.exec_ok(
        "rt",
        &[
            "ipset",
            "add",
            "multiwan_tv.dns",
            "198.51.100.7",
            "timeout",
            "3000",
        ],
    );
    lab.exec_ok(
        "rt",
        &[
            "ipset",
            "add",
            "multiwan_tv.dns",
            "192.0.2.9",
            "timeout",
            "120",
        ],
    );
    std::fs::write(&path, sets("203.0.113.128/25, 198.51.100.0/24", "10m")).unwrap();
    lab.multiwan_ok(&["apply", "-c", &path]);
    assert_eq!(
        members("multiwan_tv"),
        ["198.51.100.0/24", "203.0.113.128/25"],
        "the static members were swapped"
    );
    let dns = list("multiwan_tv.dns");
    assert!(dns.contains("timeout 600"), "the new timeout:\n{dns}");
    let left = |addr: &str| -> u32 {
        let line = members("multiwan_tv.dns")
            .into_iter()
            .find(|l| l.starts_with(&format!("{addr} ")))
            .unwrap_or_else(|| panic!("{addr} kept:\n{dns}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        (590..=600).contains(&left("198.51.100.7")),
        "capped at the new timeout"
    );
    assert!(
        (100..=120).contains(&left("192.0.2.9")),
        "kept its own, shorter time"
    );
    let temporaries = lab.exec_ok("rt", &["ipset", "list", "-n"]);
    assert!(!temporaries.contains(".new"), "{temporaries}");
}
