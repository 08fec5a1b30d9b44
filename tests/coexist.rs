//! Living beside the rest of the router: the firewalls that rewrite the tables (Debian's
//! nftables service, ufw), run for real in the lab's router while the daemon routes.

mod lab;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lab::{ECHO, ECHO_PORT, Lab, uplink_addr};

const CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 50, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 50, probe: {targets: [198.51.100.1, 198.51.100.2]}}
policies:
  - {name: pinned, match: {source: 10.0.0.50}, uplink: isp2}
";

const PINNED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);

/// The pinned host's new connections all leave by isp2 (three in a row).
fn pinned_ok(lab: &Lab) -> bool {
    lab.connect_many(PINNED, ECHO, ECHO_PORT, 3)
        .iter()
        .all(|s| *s == Some(uplink_addr(2)))
}

/// multiwan's jump in mangle PREROUTING is there.
fn rules_in_place(lab: &Lab) -> bool {
    lab.exec_ok("rt", &["iptables-save", "-t", "mangle"])
        .contains("-j MULTIWAN_PREROUTING")
}

/// Time until multiwan's rules are back and the pinned host leaves by its uplink again.
fn gap(lab: &Lab, limit: Duration) -> Duration {
    let t = Instant::now();
    while !(rules_in_place(lab) && pinned_ok(lab)) {
        assert!(t.elapsed() < limit, "not back within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

fn status_json(lab: &Lab, path: &str) -> serde_json::Value {
    serde_json::from_str(&lab.multiwan_ok(&["status", "--json", "-c", path])).unwrap()
}

fn warnings(lab: &Lab, path: &str) -> Vec<String> {
    status_json(lab, path)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// Debian's nftables service starts (and reloads) with `flush ruleset`: every chain of
/// multiwan's is gone. The daemon puts them back and pinned traffic takes its uplink again
/// within a generous bound (the benchmark measures the gap), with no uplink falsely down.
#[test]
fn the_nftables_service_flushing_everything_is_repaired() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", CONFIG);
    let daemon = lab.daemon(&path);
    assert!(pinned_ok(&lab));
    for _ in 0..3 {
        lab.nftables_service_reload();
        let took = gap(&lab, Duration::from_secs(3));
        eprintln!("back after {took:?}");
        std::thread::sleep(Duration::from_millis(1200));
    }
    let log = daemon.log_text();
    assert!(!log.contains("to=down"), "a false down:\n{log}");
}

/// ufw enabled in the router sets the FORWARD policy to DROP: status says exactly what the
/// firewall drops and how to allow it; once the admin allows the routes, the warnings go,
/// traffic flows, and `ufw reload` costs no more than a short gap.
#[test]
fn ufw_dropping_forwarded_traffic_is_reported_and_its_reload_is_lived_with() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("multiwan.yaml", CONFIG);
    let path = path.to_string_lossy().into_owned();
    let daemon = lab.daemon(std::path::Path::new(&path));
    assert!(warnings(&lab, &path).is_empty());
    lab.ufw(&["--force", "enable"]);
    let t = Instant::now();
    let w = loop {
        let w = warnings(&lab, &path);
        if w.len() >= 2 || t.elapsed() > Duration::from_secs(3) {
            break w;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // ufw accepts replies (ESTABLISHED) itself: the new connections to each uplink remain.
    assert_eq!(w.len(), 2, "new connections to both uplinks: {w:#?}");
    assert!(
        w.iter().any(
            |w| w.contains("drops new connections from lan0 to wan1 (uplink isp1)")
                && w.contains("ufw route allow in on lan0 out on wan1")
        ),
        "{w:#?}"
    );
    let text = lab.multiwan_ok(&["status", "-c", &path]);
    assert!(text.contains("WARNINGS"), "{text}");
    let check = lab.multiwan_ok(&["check", "-c", &path]);
    assert!(check.contains("the FORWARD policy is DROP"), "{check}");
    assert!(!pinned_ok(&lab), "the firewall really drops it");
    for wan in ["wan1", "wan2"] {
        lab.ufw(&["route", "allow", "in", "on", "lan0", "out", "on", wan]);
    }
    let t = Instant::now();
    while !warnings(&lab, &path).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{:#?}",
            warnings(&lab, &path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gap(&lab, Duration::from_secs(3));
    for _ in 0..5 {
        lab.ufw(&["reload"]);
        let took = gap(&lab, Duration::from_secs(3));
        eprintln!("back after {took:?}");
    }
    let log = daemon.log_text();
    assert!(!log.contains("to=down"), "a false down:\n{log}");
    assert!(
        log.contains("the firewall drops new connections"),
        "the warning is logged too:\n{log}"
    );
}
