//! Both iptables backends: multiwan puts its rules where the host's other rules are
//! (legacy x_tables or nf_tables), refuses a host whose rules are split across both, and
//! moves its own chains when the backend changes.

mod lab;

use std::time::Duration;

use lab::Lab;

const CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, probe: {targets: [198.51.100.1]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, probe: {targets: [198.51.100.1]}}
";

fn ours_in(lab: &Lab, save: &str) -> bool {
    let out = lab.exec("rt", &[save]);
    String::from_utf8_lossy(&out.stdout).contains("-j MULTIWAN_PREROUTING")
}

/// A rule of "another tool" in one backend.
fn foreign_rule(lab: &Lab, iptables: &str) {
    let out = lab.exec(
        "rt",
        &[
            iptables, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auto_follows_the_backend_of_the_hosts_rules() {
    if !lab::available() {
        return;
    }
    for (backend, other) in [("legacy", "nft"), ("nft", "legacy")] {
        let lab = Lab::new(2);
        lab.start_internet_echo();
        // Clear the suite's own seed, then the host's firewall in `backend`.
        let _ = lab.exec("rt", &["iptables-legacy", "-F", "INPUT"]);
        foreign_rule(&lab, &format!("iptables-{backend}"));
        let path = lab.file("multiwan.yaml", CONFIG);
        let daemon = lab.daemon(&path);
        let name = if backend == "nft" {
            "nf_tables"
        } else {
            "legacy"
        };
        daemon.expect(&format!("backend=\"{name}\""), Duration::from_secs(1));
        assert!(
            ours_in(&lab, &format!("iptables-{backend}-save")),
            "{backend}"
        );
        assert!(!ours_in(&lab, &format!("iptables-{other}-save")), "{other}");
        assert!(lab.seen(10).contains_key(&lab::uplink_addr(1)));
    }
}

#[test]
fn rules_split_across_both_backends_are_refused_with_a_clear_message() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    let _ = lab.exec("rt", &["iptables-legacy", "-F", "INPUT"]);
    foreign_rule(&lab, "iptables-legacy");
    foreign_rule(&lab, "iptables-nft");
    let path = lab.file("multiwan.yaml", CONFIG);
    let mut daemon = lab.spawn_daemon(&path, "info");
    daemon.expect("rules in both backends", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !daemon.alive(),
        "it refuses to start:\n{}",
        daemon.log_text()
    );
    assert!(!ours_in(&lab, "iptables-legacy-save") && !ours_in(&lab, "iptables-nft-save"));
    let log = daemon.log_text();
    assert!(log.contains("netfilter: {backend: legacy}"), "{log}");
    let check = lab.exec(
        "rt",
        &[
            env!("CARGO_BIN_EXE_multiwan"),
            "check",
            "-c",
            &path.to_string_lossy(),
        ],
    );
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("rules in both backends"), "{said}");
    // Named in the config, it runs there and says where the others are.
    let named = format!("{CONFIG}netfilter: {{backend: nft}}\n");
    std::fs::write(&path, named).unwrap();
    let daemon = lab.daemon(&path);
    daemon.expect(
        "rule(s) of other tools are in legacy",
        Duration::from_secs(1),
    );
    assert!(ours_in(&lab, "iptables-nft-save"));
}

#[test]
fn a_backend_switch_moves_multiwans_chains_and_cleanup_finds_them_in_either() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file(
        "multiwan.yaml",
        &format!("{CONFIG}netfilter: {{backend: nft}}\n"),
    );
    let p = path.to_string_lossy().into_owned();
    lab.multiwan_ok(&["apply", "-c", &p]);
    assert!(ours_in(&lab, "iptables-nft-save"));
    std::fs::write(&path, format!("{CONFIG}netfilter: {{backend: legacy}}\n")).unwrap();
    let daemon = lab.daemon(&path);
    daemon.expect("chains moved to the backend in use", Duration::from_secs(1));
    assert!(ours_in(&lab, "iptables-legacy-save"));
    assert!(
        !ours_in(&lab, "iptables-nft-save"),
        "no rules left behind in nf_tables"
    );
    assert!(lab.seen(10).contains_key(&lab::uplink_addr(1)));
    drop(daemon);
    lab.multiwan_ok(&["cleanup", "-c", &p]);
    assert!(!ours_in(&lab, "iptables-legacy-save") && !ours_in(&lab, "iptables-nft-save"));
}
