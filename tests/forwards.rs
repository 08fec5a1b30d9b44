//! Port forwards in the namespace lab: round robin and weighted random over LAN backends,
//! replies by the uplink a connection came in on, backend failure and return, hairpin,
//! exact cleanup.

mod lab;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lab::{ECHO, Lab, uplink_addr};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
const PORT: u16 = 8443;

fn config(forward: &str) -> String {
    format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1}}
port_forwards:
  - name: web
    protocol: tcp
    port: {PORT}
{forward}"
    )
}

fn lab() -> Option<Lab> {
    if !lab::available() {
        return None;
    }
    let lab = Lab::new(2);
    lab.start_identity("lan", A, PORT);
    lab.start_identity("lan", B, PORT);
    Some(lab)
}

fn apply(lab: &Lab, text: &str) -> String {
    let path = lab
        .file("multiwan.yaml", text)
        .to_string_lossy()
        .into_owned();
    lab.multiwan_ok(&["apply", "-c", &path]);
    path
}

/// `n` connections from the internet to `dst:PORT`; which backend answered each.
fn from_internet(lab: &Lab, dst: Ipv4Addr, n: usize) -> HashMap<Option<Ipv4Addr>, usize> {
    let seen = lab.in_ns("inet", move || {
        (0..n)
            .map(|_| lab::ask_peer(ECHO, dst, PORT))
            .collect::<Vec<_>>()
    });
    let mut out = HashMap::new();
    for s in seen {
        *out.entry(s).or_insert(0) += 1;
    }
    out
}

/// The log line comes just before the swap: wait until the forward's chain holds `n` rules.
fn wait_backends_in_rotation(lab: &Lab, n: usize) {
    let start = Instant::now();
    loop {
        let nat = lab.exec_ok("rt", &["iptables-save", "-t", "nat"]);
        if nat
            .lines()
            .filter(|l| l.starts_with("-A MULTIWAN_FWD_web "))
            .count()
            == n
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the chain never held {n} backends:\n{nat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn round_robin_splits_evenly_on_both_uplinks_and_replies_leave_by_the_same_uplink() {
    let Some(lab) = lab() else { return };
    apply(
        &lab,
        &config("    to: [10.0.0.11, 10.0.0.12]\n    health_check: {kind: none}\n"),
    );
    for uplink in [1, 2] {
        // ISP 1 and 2 drop packets whose source is not their customer's: every success
        // proves the reply left by the uplink the connection came in on.
        let seen = from_internet(&lab, uplink_addr(uplink), 100);
        assert_eq!(
            seen.get(&None),
            None,
            "every connection succeeds via uplink {uplink}: {seen:?}"
        );
        for backend in [A, B] {
            let n = seen.get(&Some(backend)).copied().unwrap_or(0);
            assert!(
                (40..=60).contains(&n),
                "{backend} got {n} of 100 via uplink {uplink}: {seen:?}"
            );
        }
    }
}

#[test]
fn random_follows_weights_3_to_1() {
    let Some(lab) = lab() else { return };
    let forward = "    balance: random\n    to: [{address: 10.0.0.11, weight: 3}, {address: 10.0.0.12, weight: 1}]\n    health_check: {kind: none}\n";
    apply(&lab, &config(forward));
    let seen = from_internet(&lab, uplink_addr(1), 400);
    assert_eq!(seen.get(&None), None, "{seen:?}");
    let a = seen.get(&Some(A)).copied().unwrap_or(0) as f64 / 400.0;
    assert!(
        (a - 0.75).abs() <= 0.08,
        "{:.1} % to the weight-3 backend: {seen:?}",
        a * 100.0
    );
}

#[test]
fn a_stopped_backend_leaves_the_rotation_and_comes_back() {
    let Some(lab) = lab() else { return };
    let check = "    health_check: {interval: 500ms, timeout: 300ms, down_after: 2, up_after: 2}\n";
    let path = lab.file(
        "multiwan.yaml",
        &config(&format!("    to: [10.0.0.11, 10.0.0.12]\n{check}")),
    );
    let daemon = lab.daemon(&path);
    assert_eq!(
        from_internet(&lab, uplink_addr(1), 20).len(),
        2,
        "both backends serve"
    );
    // Stop B's service: its port now refuses connections, as a stopped server's does.
    let reject = [
        "iptables",
        "-I",
        "INPUT",
        "-d",
        "10.0.0.12",
        "-p",
        "tcp",
        "--dport",
        "8443",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    lab.exec_ok("lan", &reject);
    let t = Instant::now();
    daemon
        .wait_for(
            "backend state changed forward=web backend=10.0.0.12 to=down",
            Duration::from_secs(5),
        )
        .expect("B goes down");
    wait_backends_in_rotation(&lab, 1);
    // down_after x interval + timeout, plus 1 s.
    assert!(
        t.elapsed() <= Duration::from_millis(2 * 500 + 300 + 1000),
        "{:?}",
        t.elapsed()
    );
    let seen = from_internet(&lab, uplink_addr(2), 50);
    assert_eq!(
        seen,
        HashMap::from([(Some(A), 50)]),
        "no new connection goes to B and none fails"
    );
    let socket = lab.socket();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["forwards"][0]["backends"][1]["up"], false, "{json}");
    assert_eq!(json["forwards"][0]["backends"][1]["in_rotation"], false);
    assert_eq!(json["forwards"][0]["backends"][0]["in_rotation"], true);
    lab.exec_ok(
        "lan",
        &[
            "iptables",
            "-D",
            "INPUT",
            "-d",
            "10.0.0.12",
            "-p",
            "tcp",
            "--dport",
            "8443",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    );
    daemon
        .wait_for("backend=10.0.0.12 to=up", Duration::from_secs(5))
        .expect("B comes back");
    wait_backends_in_rotation(&lab, 2);
    let seen = from_internet(&lab, uplink_addr(1), 40);
    assert_eq!(
        seen.get(&Some(B)).copied().unwrap_or(0),
        20,
        "B gets its share back: {seen:?}"
    );
    assert!(
        !daemon.log_text().contains("drifted"),
        "no spurious repairs:\n{}",
        daemon.log_text()
    );
}

#[test]
fn every_backend_down_keeps_all_of_them() {
    let Some(lab) = lab() else { return };
    let check = "    health_check: {interval: 300ms, timeout: 200ms, down_after: 1, up_after: 1}\n";
    let path = lab.file(
        "multiwan.yaml",
        &config(&format!("    to: [10.0.0.11, 10.0.0.12]\n{check}")),
    );
    let daemon = lab.daemon(&path);
    for ip in ["10.0.0.11", "10.0.0.12"] {
        lab.exec_ok(
            "lan",
            &[
                "iptables", "-I", "INPUT", "-d", ip, "-p", "tcp", "--dport", "8443", "-j", "DROP",
            ],
        );
    }
    daemon
        .wait_for(
            "every backend is down: all are kept",
            Duration::from_secs(5),
        )
        .expect("logged");
    wait_backends_in_rotation(&lab, 2);
}

#[test]
fn hairpin_lets_a_lan_client_use_the_public_address() {
    let Some(lab) = lab() else { return };
    apply(
        &lab,
        &config("    to: [10.0.0.11, 10.0.0.12]\n    health_check: {kind: none}\n"),
    );
    let seen = lab.connect_many(Ipv4Addr::new(10, 0, 0, 50), uplink_addr(2), PORT, 20);
    assert!(
        seen.iter().all(|s| *s == Some(A) || *s == Some(B)),
        "{seen:?}"
    );
}

#[test]
fn explain_names_the_backends() {
    let Some(lab) = lab() else { return };
    let path = apply(
        &lab,
        &config("    uplinks: [isp2]\n    to: [10.0.0.11, 10.0.0.12]\n"),
    );
    let out = lab.multiwan_ok(&[
        "explain",
        "-c",
        &path,
        "--from-wan",
        "isp2",
        "--dport",
        "8443",
    ]);
    assert!(
        out.starts_with("backends: 10.0.0.11 50.0 %, 10.0.0.12 50.0 %"),
        "{out}"
    );
    let out = lab.multiwan_ok(&[
        "explain",
        "-c",
        &path,
        "--from-wan",
        "isp1",
        "--dport",
        "8443",
    ]);
    assert!(out.starts_with("not forwarded"), "{out}");
}

#[test]
fn cleanup_after_port_forwards_leaves_the_kernel_as_before() {
    let Some(lab) = lab() else { return };
    let before = lab.snapshot("rt");
    let path = apply(
        &lab,
        &config(
            "    to: [10.0.0.11, {address: 10.0.0.12, port: 8443, weight: 2}]\n    balance: random\n",
        ),
    );
    assert_ne!(lab.snapshot("rt"), before);
    let again = lab.multiwan_ok(&["apply", "-c", &path]);
    assert!(again.contains("ip rules +0 -0"), "{again}");
    lab.multiwan_ok(&["cleanup", "-c", &path]);
    assert_eq!(lab.snapshot("rt"), before);
}

#[test]
fn check_notes_a_dropping_forward_policy() {
    let Some(lab) = lab() else { return };
    let path = lab.file("multiwan.yaml", &config("    to: [10.0.0.11]\n"));
    lab.exec_ok("rt", &["iptables", "-P", "FORWARD", "DROP"]);
    let out = lab.multiwan_ok(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.contains("note: the FORWARD policy is DROP"), "{out}");
    lab.exec_ok("rt", &["iptables", "-P", "FORWARD", "ACCEPT"]);
    let out = lab.multiwan_ok(&["check", "-c", path.to_str().unwrap()]);
    assert!(!out.contains("note:"), "{out}");
}
