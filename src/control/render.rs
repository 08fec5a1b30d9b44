//! The table `multiwan status` prints, from the status document.

use super::proto::{HaStatus, LastTransition, SetStatus, Status};

/// `5s`, `3m12s`, `2h05m`, `4d03h`.
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The table `multiwan status` prints: readable in two seconds.
pub fn render(status: &Status, now_unix: f64) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "multiwan {} running for {}, config {}{}\n\n",
        status.version,
        ago(now_unix - status.started_unix),
        status.config,
        if status.all_down {
            " - EVERY UPLINK IS DOWN"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<15} {:<9} {:>8} {:>6} {:>9} {:>6} {:>9} {:>9} {:>6} {:>6}  ADDRESS via GATEWAY",
        "UPLINK",
        "STATE",
        "SINCE",
        "WEIGHT",
        "EFFECTIVE",
        "SHARE",
        "RTT ms",
        "JITTER ms",
        "LOSS",
        "CONNS",
    );
    for u in &status.uplinks {
        let f3 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "{:<15} {:<9} {:>8} {:>6} {:>9} {:>5.1}% {:>9} {:>9} {:>5.1}% {:>6}  {} via {}{}",
            u.name,
            u.state,
            ago(now_unix - u.since_unix),
            u.weight,
            crate::plan::render_weight(u.effective_weight),
            u.share_percent,
            f3(u.rtt_ms),
            f3(u.jitter_ms),
            u.loss_percent,
            u.connections.map_or("-".to_string(), |c| c.to_string()),
            u.address,
            u.gateway,
            if u.link_up { "" } else { " (link down)" }
        );
        if let Some(v6) = &u.ipv6 {
            let _ = writeln!(
                out,
                "{:<15} {:<9} {:>8} {:>6} {:>9} {:>5.1}% {:>9} {:>9} {:>5.1}% {:>6}  {} via {}",
                format!("  {} ipv6", u.name),
                v6.state,
                ago(now_unix - v6.since_unix),
                "",
                crate::plan::render_weight(v6.effective_weight),
                v6.share_percent,
                f3(v6.rtt_ms),
                f3(v6.jitter_ms),
                v6.loss_percent,
                v6.connections.map_or("-".to_string(), |c| c.to_string()),
                v6.address,
                v6.gateway,
            );
        }
    }
    let standby: Vec<&str> = status
        .uplinks
        .iter()
        .filter(|u| u.standby)
        .map(|u| u.name.as_str())
        .collect();
    if !standby.is_empty() {
        let _ = writeln!(
            out,
            "\nSTANDBY (carrying nothing, probed every standby_interval): {}",
            standby.join(", ")
        );
    }
    let transitions: Vec<(String, &LastTransition)> = status
        .uplinks
        .iter()
        .flat_map(|u| {
            let v4 = u.last_transition.as_ref().map(|t| (u.name.clone(), t));
            let v6 = u
                .ipv6
                .as_ref()
                .and_then(|v6| v6.last_transition.as_ref())
                .map(|t| (format!("{} ipv6", u.name), t));
            v4.into_iter().chain(v6)
        })
        .collect();
    if !transitions.is_empty() {
        let _ = writeln!(out, "\nLAST TRANSITION");
        for (name, t) in transitions {
            let _ = writeln!(
                out,
                "{:<15} {} -> {}, {} ago: {}",
                name,
                t.from,
                t.to,
                ago(now_unix - t.at_unix),
                t.reason
            );
        }
    }
    if !status.forwards.is_empty() {
        let _ = writeln!(out, "\nFORWARD         BACKENDS");
        for f in &status.forwards {
            let list: Vec<String> = f
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{} {}{}",
                        b.target,
                        if b.up { "up" } else { "down" },
                        if b.in_rotation {
                            ""
                        } else {
                            " (out of rotation)"
                        }
                    )
                })
                .collect();
            let _ = writeln!(out, "{:<15} {}", f.name, list.join(", "));
        }
    }
    render_sets(&mut out, &status.sets);
    if !status.policies.is_empty() {
        let _ = writeln!(out, "\nPOLICY          TARGET");
        for p in &status.policies {
            let _ = writeln!(out, "{:<15} {}", p.name, p.target);
        }
    }
    if let Some(ha) = &status.ha {
        render_ha(&mut out, ha, now_unix);
    }
    if let Some(r) = status.last_reload.as_ref().filter(|r| !r.ok) {
        let _ = writeln!(
            out,
            "\nLAST RELOAD FAILED {} ago, the previous config runs on: {}",
            ago(now_unix - r.at_unix),
            r.error.as_deref().unwrap_or("")
        );
    }
    if !status.warnings.is_empty() {
        let _ = writeln!(out, "\nWARNINGS");
        for w in &status.warnings {
            let _ = writeln!(out, "{w}");
        }
    }
    out
}

/// Destination sets and pin sets with their member counts (the internal ones, such as the
/// connected networks, only in the JSON).
fn render_sets(out: &mut String, sets: &[SetStatus]) {
    use std::fmt::Write;
    let shown: Vec<&SetStatus> = sets
        .iter()
        .filter(|s| !crate::plan::INTERNAL_SETS.contains(&s.name.as_str()))
        .collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nSET                       MEMBERS  LEARNED");
    for s in shown {
        let (members, learned) = match s.learned {
            Some(n) => ("-".to_string(), n.to_string()),
            None => (s.members.to_string(), "-".to_string()),
        };
        let _ = writeln!(out, "{:<25} {members:>7}  {learned:>7}", s.name);
    }
}

fn render_ha(out: &mut String, ha: &HaStatus, now_unix: f64) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\nHA: node {} is {} for {} ({}), peer {}",
        ha.node,
        ha.role.name().to_uppercase(),
        ago(now_unix - ha.since_unix),
        if ha.holds_addresses {
            "holds the shared addresses"
        } else {
            "does not hold the shared addresses"
        },
        ha.peer
    );
    match (&ha.sync, &ha.sync_error) {
        (Some(c), _) => {
            let _ = writeln!(
                out,
                "conntrackd: {} own connections, {} from the peer; sync packets sent {}, received {}; errors {}/{}; lost {}",
                c.internal,
                c.external,
                c.packets_sent,
                c.packets_received,
                c.send_errors,
                c.receive_errors,
                c.lost_messages
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "conntrackd: not reachable: {e}");
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{FamilyStatus, PolicyStatus, ReloadStatus, UplinkStatus};
    use crate::ha::Role;
    use crate::ha::conntrackd::SyncCounters;
    use std::path::PathBuf;

    #[test]
    fn renders_microsecond_rtts_and_reasons() {
        let u = UplinkStatus {
            name: "isp1".into(),
            interface: "wan1".into(),
            state: "down".into(),
            since_unix: 1000.0,
            link_up: true,
            weight: 70,
            effective_weight: 0.0,
            share_percent: 0.0,
            rtt_ms: Some(0.052),
            jitter_ms: Some(0.004),
            loss_percent: 100.0,
            probes_sent: 10,
            probes_lost: 6,
            probes_late: 0,
            last_transition: Some(LastTransition {
                from: "up".into(),
                to: "down".into(),
                reason: "3 failed rounds in a row".into(),
                at_unix: 1000.0,
            }),
            address: "100.64.1.2".into(),
            gateway: "100.64.1.1".into(),
            mark: 0x100,
            table: 101,
            connections: Some(3),
            bytes: None,
            standby: false,
            ipv6: Some(FamilyStatus {
                state: "up".into(),
                since_unix: 900.0,
                effective_weight: 70.0,
                share_percent: 100.0,
                rtt_ms: Some(0.07),
                jitter_ms: None,
                loss_percent: 0.0,
                probes_sent: 10,
                probes_lost: 0,
                probes_late: 0,
                last_transition: None,
                address: "2001:db8:ff01::2".into(),
                gateway: "fe80::1".into(),
                connections: Some(2),
                bytes: None,
                standby: false,
            }),
        };
        let s = Status {
            version: "0.1.0".into(),
            config: "/etc/m.yaml".into(),
            started_unix: 900.0,
            pid: 1,
            all_down: false,
            uplinks: vec![u],
            policies: vec![PolicyStatus {
                name: "console".into(),
                target: "isp1 is down: balanced instead".into(),
                hits: Some(3),
            }],
            forwards: Vec::new(),
            sets: vec![
                SetStatus {
                    name: "multiwan_connected".into(),
                    members: 3,
                    learned: None,
                },
                SetStatus {
                    name: "multiwan_streaming".into(),
                    members: 1,
                    learned: None,
                },
                SetStatus {
                    name: "multiwan_streaming.dns".into(),
                    members: 0,
                    learned: Some(42),
                },
            ],
            ha: Some(HaStatus {
                node: "r1".into(),
                peer: "10.60.0.2".into(),
                role: Role::Master,
                since_unix: 1060.0,
                holds_addresses: true,
                sync: Some(SyncCounters {
                    internal: 20,
                    external: 3,
                    ..Default::default()
                }),
                sync_error: None,
                conntrackd_config: PathBuf::new(),
            }),
            warnings: vec![],
            last_reload: Some(ReloadStatus {
                ok: false,
                at_unix: 1060.0,
                error: Some("ipset: Hash is full".into()),
            }),
        };
        let text = render(&s, 1065.0);
        assert!(
            text.contains(
                "LAST RELOAD FAILED 5s ago, the previous config runs on: ipset: Hash is full"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "HA: node r1 is MASTER for 5s (holds the shared addresses), peer 10.60.0.2"
            ),
            "{text}"
        );
        assert!(
            text.contains("conntrackd: 20 own connections, 3 from the peer"),
            "{text}"
        );
        assert!(text.contains("running for 2m45s"), "{text}");
        assert!(text.contains("0.052"), "{text}");
        let row = text.lines().find(|l| l.starts_with("isp1 ")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[..4], &["isp1", "down", "1m05s", "70"], "{text}");
        let v6 = text.lines().find(|l| l.starts_with("  isp1 ipv6")).unwrap();
        let cols: Vec<&str> = v6.split_whitespace().collect();
        assert_eq!(&cols[..4], &["isp1", "ipv6", "up", "2m45s"], "{text}");
        assert!(v6.ends_with("2001:db8:ff01::2 via fe80::1"), "{text}");
        assert!(
            text.contains("up -> down, 1m05s ago: 3 failed rounds in a row"),
            "{text}"
        );
        assert!(
            text.contains("console         isp1 is down: balanced instead"),
            "{text}"
        );
        assert!(
            text.contains("multiwan_streaming              1        -\nmultiwan_streaming.dns          -       42"),
            "{text}"
        );
        assert!(!text.contains("multiwan_connected"), "{text}");
    }
}
