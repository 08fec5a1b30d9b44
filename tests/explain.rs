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
