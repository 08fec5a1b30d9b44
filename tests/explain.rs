//! `multiwan explain`: the first line is the verdict and names only the uplinks the
//! connection may take; the reasoning follows.

use std::process::Command;

fn explain(profile: &str, args: &[&str]) -> (String, String) {
    let path = format!("{}/profiles/{profile}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["explain", "-c", &path])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap().to_string();
    (first, text)
}

#[test]
fn pinned_host_takes_its_uplink() {
    let (verdict, text) = explain(
        "home-dual-wan.yaml",
        &["--src", "10.0.0.50", "--dst", "192.0.2.9"],
    );
    assert_eq!(verdict, "uplink fibre");
    assert!(
        text.contains("policy console matches: pinned to fibre"),
        "{text}"
    );
    assert!(
        text.contains("mark 0x100 -> ip rule 10101 -> table 101: default via 100.64.1.1 dev wan1"),
        "{text}"
    );
}

#[test]
fn udp_port_range_is_pinned() {
    let args = [
        "--src",
        "10.0.0.9",
        "--dst",
        "192.0.2.9",
        "--proto",
        "udp",
        "--dport",
        "15000",
    ];
    let (verdict, text) = explain("branch-office.yaml", &args);
    assert_eq!(verdict, "uplink fibre-a");
    assert!(text.contains("policy voip matches"), "{text}");
    // Outside the range, or TCP, the same host is balanced.
    let (verdict, _) = explain(
        "branch-office.yaml",
        &[
            "--src",
            "10.0.0.9",
            "--dst",
            "192.0.2.9",
            "--proto",
            "udp",
            "--dport",
            "9999",
        ],
    );
    assert!(verdict.starts_with("balanced: "), "{verdict}");
    let (verdict, _) = explain(
        "branch-office.yaml",
        &[
            "--src",
            "10.0.0.9",
            "--dst",
            "192.0.2.9",
            "--dport",
            "15000",
        ],
    );
    assert!(verdict.starts_with("balanced: "), "{verdict}");
}

#[test]
fn set_member_is_pinned() {
    let (verdict, text) = explain(
        "home-dual-wan.yaml",
        &["--src", "10.0.0.7", "--dst", "203.0.113.77"],
    );
    assert_eq!(verdict, "uplink cable");
    assert!(
        text.contains("policy streaming matches: pinned to cable"),
        "{text}"
    );
    let (verdict, _) = explain(
        "home-dual-wan.yaml",
        &["--src", "10.0.0.7", "--dst", "203.0.113.200"],
    );
    assert!(verdict.starts_with("balanced: "), "{verdict}");
}

#[test]
fn down_pinned_uplink_follows_its_fallback() {
    let (verdict, text) = explain(
        "home-dual-wan.yaml",
        &[
            "--src",
            "10.0.0.50",
            "--dst",
            "192.0.2.9",
            "--down",
            "fibre",
        ],
    );
    assert_eq!(verdict, "uplink cable");
    assert!(
        text.contains("policy console matches: fibre is down: balanced instead"),
        "{text}"
    );
    assert!(text.contains("fibre down"), "{text}");
    let (verdict, text) = explain(
        "branch-office.yaml",
        &[
            "--src",
            "10.0.0.66",
            "--dst",
            "192.0.2.9",
            "--down",
            "fibre-b",
        ],
    );
    assert_eq!(verdict, "dropped (no uplink)");
    assert!(text.contains("is down: dropped"), "{text}");
}

#[test]
fn plain_traffic_is_balanced_by_weight() {
    let (verdict, text) = explain(
        "branch-office.yaml",
        &["--src", "10.0.0.9", "--dst", "192.0.2.9"],
    );
    assert_eq!(
        verdict,
        "balanced: fibre-a 50.0 %, fibre-b 30.0 %, cable 20.0 %"
    );
    assert!(text.contains("no policy matches"), "{text}");
    let (verdict, _) = explain(
        "branch-office.yaml",
        &[
            "--src",
            "10.0.0.9",
            "--dst",
            "192.0.2.9",
            "--down",
            "fibre-a",
        ],
    );
    assert_eq!(verdict, "balanced: fibre-b 60.0 %, cable 40.0 %");
}

#[test]
fn action_main_bypasses_multiwan() {
    let (verdict, text) = explain(
        "branch-office.yaml",
        &["--src", "10.0.0.9", "--dst", "172.20.1.1"],
    );
    assert_eq!(verdict, "main table (not routed by multiwan)");
    assert!(
        text.contains("policy backups matches: bypasses multiwan (main table)"),
        "{text}"
    );
}

#[test]
fn backup_tier_only_when_primary_is_down() {
    let (verdict, _) = explain(
        "failover-only.yaml",
        &["--src", "10.0.0.9", "--dst", "192.0.2.9"],
    );
    assert_eq!(verdict, "uplink dsl");
    let (verdict, _) = explain(
        "failover-only.yaml",
        &["--src", "10.0.0.9", "--dst", "192.0.2.9", "--down", "dsl"],
    );
    assert_eq!(verdict, "uplink lte");
}

#[test]
fn unknown_down_uplink_is_refused() {
    let path = format!("{}/profiles/home-dual-wan.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args([
            "explain",
            "-c",
            &path,
            "--src",
            "10.0.0.1",
            "--dst",
            "192.0.2.1",
            "--down",
            "dsl",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--down dsl: no such uplink"));
}

#[test]
fn ipv6_connections_are_explained_in_their_family() {
    let dir = std::env::temp_dir().join(format!("mw-explain6-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dual.yaml");
    std::fs::write(
        &path,
        "lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 10.1.0.1, gateway6: 'fe80::1'}
  - {name: b, interface: wan2, gateway: 10.2.0.1, gateway6: 'fe80::2'}
policies:
  - {name: phone, match: {source: 'fd00::50'}, uplink: b}
",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_multiwan"))
            .args(["explain", "-c", path.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text, _) = run(&["--src", "fd00::50", "--dst", "2001:db8::1"]);
    assert_eq!(code, Some(0));
    assert!(text.starts_with("uplink b"), "{text}");
    assert!(text.contains("policy phone matches: pinned to b"), "{text}");
    assert!(text.contains("default via fe80::2 dev wan2"), "{text}");
    let (_, text, _) = run(&[
        "--src",
        "fd00::50",
        "--dst",
        "2001:db8::1",
        "--down",
        "b:ipv6",
    ]);
    assert!(text.contains("b is down: balanced instead"), "{text}");
    assert!(text.starts_with("uplink a"), "{text}");
    let (_, text, _) = run(&[
        "--src",
        "10.0.0.50",
        "--dst",
        "192.0.2.1",
        "--down",
        "b:ipv6",
    ]);
    assert!(
        text.contains("a 50.0 %, b 50.0 %"),
        "IPv4 untouched: {text}"
    );
    let (code, _, err) = run(&["--src", "fd00::50", "--dst", "192.0.2.1"]);
    assert_eq!(code, Some(2), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
