//! Sets that follow DNS names, with a real dnsmasq as the LAN's resolver on the router and
//! another as the authoritative server in the lab's internet: the first connection after
//! the answer takes the set's uplink, the reconcile leaves the learned address alone, and
//! it ages out after `timeout`.

mod lab;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lab::{ECHO_PORT, LAN_CLIENT, Lab, uplink_addr};

/// The service's address in the lab's internet (an echo server) and its name.
const VIDEO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const VIDEO_NAME: &str = "edge7.cdn.video.example.net";
/// The authoritative server in the internet, and the router's resolver for the LAN.
const AUTHORITY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const RESOLVER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 0, 1), 5300);
/// A LAN host pinned by a policy before the domain set's.
const PINNED_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const LEARNED_SET: &str = "multiwan_video.dns";

/// isp2 is a backup tier: balanced connections all take isp1, so a connection by isp2 was
/// sent there by the domain set's policy and nothing else.
const CONFIG: &str = "lan_interfaces: [lan0, lan1]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, tier: 2, probe: {targets: [198.51.100.1, 198.51.100.2]}}
policies:
  - {name: pinned-host, match: {source: 10.0.0.11}, uplink: isp1}
  - {name: video, match: {destination_set: video}, uplink: isp2}
sets:
  video: {domains: [video.example.net], timeout: 8s}
";

/// The address the echo server saw for one new connection from `src` to the service.
fn via(lab: &Lab, src: Ipv4Addr) -> Option<Ipv4Addr> {
    lab.connect_many(src, VIDEO, ECHO_PORT, 1)[0]
}

/// The seconds the learned address has left, None when it is not in the set.
fn learned_for(lab: &Lab) -> Option<u64> {
    lab.exec_ok("rt", &["ipset", "list", LEARNED_SET])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{VIDEO} timeout ")))
        .map(|left| left.trim().parse().unwrap())
}

fn learned(lab: &Lab) -> bool {
    learned_for(lab).is_some()
}

/// The learned count `multiwan status` shows for the set (read by the daemon's reconcile).
fn status_learned(lab: &Lab, path: &str) -> Option<u64> {
    let json = lab.multiwan_ok(&["status", "--json", "-c", path]);
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    status["sets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == LEARNED_SET)?["learned"]
        .as_u64()
}

fn start_dnsmasq(lab: &mut Lab, role: &str, args: &[&str]) {
    let mut argv = vec![
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
    ];
    argv.extend_from_slice(args);
    lab.spawn(role, &argv);
}

#[test]
fn the_first_connection_after_the_answer_takes_the_sets_uplink_until_it_ages_out() {
    if !lab::available() {
        return;
    }
    let mut lab = Lab::new(2);
    lab.start_internet_echo();
    for a in [VIDEO, AUTHORITY] {
        lab.ip("inet", &["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    lab.start_echo("inet", VIDEO, ECHO_PORT);
    let authority = lab.file("authority.conf", "");
    let pid = lab.file("authority.pid", "");
    start_dnsmasq(
        &mut lab,
        "inet",
        &[
            &format!("--conf-file={}", authority.display()),
            &format!("--listen-address={AUTHORITY}"),
            "--bind-interfaces",
            &format!("--pid-file={}", pid.display()),
            &format!("--host-record={VIDEO_NAME},{VIDEO}"),
        ],
    );
    let path = lab.file("multiwan.yaml", CONFIG);
    let path = path.to_string_lossy().into_owned();
    let daemon = lab.daemon(path.as_ref());

    // Before anyone asked for the name, the address is balanced like any other.
    assert_eq!(via(&lab, LAN_CLIENT), Some(uplink_addr(1)));

    // The router's resolver, with the drop-in `multiwan dnsmasq` writes.
    let dropin = lab.file("dnsmasq-multiwan.conf", "");
    std::fs::remove_file(&dropin).unwrap();
    let wrote = lab.multiwan_ok(&["dnsmasq", "-c", &path, "--out", dropin.to_str().unwrap()]);
    assert!(wrote.contains("wrote"), "{wrote}");
    let text = std::fs::read_to_string(&dropin).unwrap();
    assert!(
        text.contains(&format!("ipset=/video.example.net/{LEARNED_SET}\n")),
        "{text}"
    );
    let pid = lab.file("resolver.pid", "");
    start_dnsmasq(
        &mut lab,
        "rt",
        &[
            &format!("--conf-file={}", dropin.display()),
            &format!("--server={AUTHORITY}"),
            &format!("--listen-address={}", RESOLVER.0),
            &format!("--port={}", RESOLVER.1),
            "--bind-interfaces",
            &format!("--pid-file={}", pid.display()),
        ],
    );

    // A LAN host resolves the name and connects: the very first connection takes isp2.
    let resolver = SocketAddr::from(RESOLVER);
    let answer = lab.in_ns("lan", move || {
        let limit = Instant::now() + Duration::from_secs(10);
        loop {
            match lab::dns::resolve_a(LAN_CLIENT, resolver, VIDEO_NAME) {
                Some(a) if !a.is_empty() => return Some(a),
                _ if Instant::now() > limit => return None,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    assert_eq!(answer, Some(vec![VIDEO]), "the resolver answers");
    assert_eq!(
        via(&lab, LAN_CLIENT),
        Some(uplink_addr(2)),
        "the first connection after the answer"
    );
    // First match wins: a host pinned by an earlier policy keeps its uplink.
    assert_eq!(via(&lab, PINNED_HOST), Some(uplink_addr(1)));

    // The daemon's reconcile runs every second: it reads the learned address (status
    // shows it) and leaves it in place.
    let limit = Instant::now() + Duration::from_secs(6);
    while status_learned(&lab, &path) != Some(1) {
        assert!(
            Instant::now() < limit,
            "status never counted the learned address:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let left = learned_for(&lab).expect("a reconcile removed the learned address");
    assert!(left <= 5, "{left} s left 3 s after it was learned");
    // A new connection to it renews it: the timeout starts again.
    assert_eq!(via(&lab, LAN_CLIENT), Some(uplink_addr(2)));
    let renewed = learned_for(&lab).expect("learned");
    assert!(renewed >= 6, "{renewed} s left just after a new connection");

    // Unused for `timeout` (8 s after the last new connection renewed it), it ages out,
    // and new connections are balanced again.
    let limit = Instant::now() + Duration::from_secs(30);
    while learned(&lab) {
        assert!(Instant::now() < limit, "the learned address never aged out");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(via(&lab, LAN_CLIENT), Some(uplink_addr(1)));
    let seen: HashMap<Ipv4Addr, usize> = lab.seen(10);
    assert_eq!(seen, HashMap::from([(uplink_addr(1), 10)]), "the rest");
    let log = daemon.log_text();
    let touched = log
        .lines()
        .filter(|l| l.contains("ipsets updated") && l.contains(LEARNED_SET))
        .count();
    assert_eq!(touched, 0, "the running daemon never refilled it:\n{log}");
}
