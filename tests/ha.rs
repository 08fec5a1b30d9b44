//! Two multiwan routers as a VRRP pair (keepalived) with conntrack sync (conntrackd), in a
//! namespace lab: a dead master loses no connection.

mod halab;
mod lab;

use std::time::Duration;

use halab::{HaLab, Options, shared_address};

/// Generous: the benchmark measures the real move time (well under a second).
const MOVE_LIMIT: Duration = Duration::from_secs(3);
/// Long enough for TCP to retransmit after the takeover.
const ECHO_LIMIT: Duration = Duration::from_secs(10);

fn pair(options: Options) -> Option<HaLab> {
    if !lab::available() {
        return None;
    }
    let mut lab = HaLab::new(options);
    lab.start(1);
    lab.start(2);
    let took = lab.wait_master(1, Duration::from_secs(15));
    assert!(took.is_some(), "r1 never became master:\n{}", lab.logs());
    Some(lab)
}

fn count(alive: &[bool]) -> usize {
    alive.iter().filter(|a| **a).count()
}

#[test]
fn hard_kill_of_the_master_keeps_connections_then_uplink_failover_and_failback() {
    let Some(mut lab) = pair(Options::default()) else {
        return;
    };
    let conns = lab.connect(20);
    let spread = conns.spread();
    assert_eq!(spread.len(), 2, "connections use both ISPs: {spread:?}");
    assert_eq!(count(&conns.alive(1, ECHO_LIMIT)), 20);
    // The backup must hold the connections before the master dies.
    let before = lab.echo_entries(1);
    assert_eq!(before.len(), 20, "r1 entries: {before:?}");
    std::thread::sleep(Duration::from_millis(500));

    lab.kill_hard(1);
    let moved = lab.wait_master(2, MOVE_LIMIT);
    assert!(
        moved.is_some(),
        "the gateway did not move to r2:\n{}",
        lab.logs()
    );
    let alive = conns.alive(2, ECHO_LIMIT);
    assert!(
        count(&alive) >= 19,
        "{} of 20 survived a hard kill:\n{}",
        count(&alive),
        lab.logs()
    );
    let after = lab.echo_entries(2);
    for c in conns
        .conns
        .iter()
        .zip(&alive)
        .filter(|(_, a)| **a)
        .map(|(c, _)| c)
    {
        let (mark, public) = before[&c.local];
        assert_eq!(
            public, c.public,
            "r1 NATed {} to its ISP's shared address",
            c.local
        );
        assert_eq!(
            after.get(&c.local),
            Some(&(mark, public)),
            "{}: r2 carries r1's mark and public address",
            c.local
        );
    }

    // ISP 1 fails: the new master moves new connections away, as a single router would.
    lab.blackhole(1, true);
    let down = lab.wait_until(Duration::from_secs(10), || {
        lab.status(2).is_some_and(|s| {
            s["uplinks"][0]["name"] == "isp1" && s["uplinks"][0]["state"] == "down"
        })
    });
    assert!(down.is_some(), "r2 did not see isp1 fail:\n{}", lab.logs());
    let fresh = lab.connect(10);
    assert_eq!(
        fresh.spread().get(&shared_address(2)),
        Some(&10),
        "new connections leave by ISP 2 with its shared address"
    );
    let on_isp2: Vec<bool> = conns
        .alive(3, ECHO_LIMIT)
        .into_iter()
        .zip(&conns.conns)
        .filter(|(_, c)| c.public == shared_address(2))
        .map(|(a, _)| a)
        .collect();
    assert!(
        on_isp2.iter().all(|a| *a),
        "connections on ISP 2 keep working"
    );
    lab.blackhole(1, false);
    let up = lab.wait_until(Duration::from_secs(15), || {
        lab.status(2)
            .is_some_and(|s| s["uplinks"][0]["state"] == "up")
    });
    assert!(
        up.is_some(),
        "isp1 did not come back on r2:\n{}",
        lab.logs()
    );

    // The old master returns: it resyncs as backup, waits preempt_delay, then takes over.
    let conns = lab.connect(20);
    assert_eq!(conns.spread().len(), 2);
    lab.revive(1);
    assert_eq!(
        lab.role(1).as_deref(),
        Some("backup"),
        "r1 returns as backup first"
    );
    let back = lab.wait_master(1, Duration::from_secs(20));
    assert!(
        back.is_some(),
        "r1 did not take over again:\n{}",
        lab.logs()
    );
    assert!(
        lab.wait_until(Duration::from_secs(5), || lab.role(2).as_deref()
            == Some("backup"))
            .is_some()
    );
    let alive = conns.alive(4, ECHO_LIMIT);
    assert_eq!(
        count(&alive),
        20,
        "failback lost connections:\n{}",
        lab.logs()
    );
}

#[test]
fn graceful_stop_of_the_master_keeps_every_connection() {
    let Some(mut lab) = pair(Options::default()) else {
        return;
    };
    let status = lab.status(1).expect("status");
    assert_eq!(status["ha"]["node"], "r1");
    // The daemon learns of the address keepalived added from the kernel's event, at the
    // next (debounced) reconcile: shortly after the role.
    let holds = lab.wait_until(Duration::from_secs(3), || {
        lab.status(1)
            .is_some_and(|s| s["ha"]["holds_addresses"] == true)
    });
    assert!(holds.is_some(), "{status}\n{}", lab.logs());
    let conns = lab.connect(20);
    assert_eq!(count(&conns.alive(1, ECHO_LIMIT)), 20);
    std::thread::sleep(Duration::from_millis(500));
    let synced = lab.status(2).expect("r2 status");
    assert!(
        synced["ha"]["sync"]["external"].as_u64().unwrap_or(0) >= 20,
        "r2's conntrackd holds r1's connections: {}",
        synced["ha"]
    );

    lab.stop_gracefully(1);
    assert!(lab.wait_master(2, MOVE_LIMIT).is_some(), "{}", lab.logs());
    let alive = conns.alive(2, ECHO_LIMIT);
    assert_eq!(
        count(&alive),
        20,
        "a graceful stop lost connections:\n{}",
        lab.logs()
    );

    let metrics = lab.metrics(2);
    assert!(
        metrics.contains("multiwan_ha_role{role=\"master\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("multiwan_ha_role{role=\"backup\"} 0"));
    let hook = lab.log_text(2, "hook");
    assert!(hook.contains("backup->master"), "hook saw: {hook:?}");
    let text = lab.multiwan(2, &["status", "-c", lab.config_path(2).to_str().unwrap()]);
    assert!(text.contains("HA: node r2 is MASTER"), "{text}");
    assert!(text.contains("conntrackd: "), "{text}");
}

#[test]
fn without_conntrack_sync_a_hard_kill_loses_connections() {
    let Some(mut lab) = pair(Options {
        sync: false,
        ..Options::default()
    }) else {
        return;
    };
    let conns = lab.connect(20);
    assert_eq!(count(&conns.alive(1, ECHO_LIMIT)), 20);
    lab.kill_hard(1);
    assert!(lab.wait_master(2, MOVE_LIMIT).is_some(), "{}", lab.logs());
    let alive = conns.alive(2, Duration::from_secs(5));
    assert!(
        count(&alive) < 19,
        "{} of 20 survived without conntrack sync: the HA test could not tell",
        count(&alive)
    );
    // keepalived throws the notify script's output away: the agent logs the failure.
    let log = lab.log_text(2, "multiwan");
    assert!(
        log.contains("ha notify reported a failure") && log.contains("conntrackd -c"),
        "{log}"
    );
}

#[test]
fn check_peer_accepts_the_profile_pair_and_refuses_a_mismatch() {
    let profile = |n: u8| format!("{}/profiles/ha-pair-r{n}.yaml", env!("CARGO_MANIFEST_DIR"));
    let check_peer = |peer: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_multiwan"))
            .args(["ha", "check-peer", "-c", &profile(1), peer])
            .output()
            .unwrap()
    };
    let ok = check_peer(&profile(2));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let text = std::fs::read_to_string(profile(2))
        .unwrap()
        .replace("id: 2", "id: 3");
    let wrong = std::env::temp_dir().join(format!("mw-peer-{}.yaml", std::process::id()));
    std::fs::write(&wrong, text).unwrap();
    let out = check_peer(wrong.to_str().unwrap());
    let _ = std::fs::remove_file(&wrong);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("plan differs") && stdout.contains("0x300"),
        "{stdout}"
    );
}

#[test]
fn check_warns_about_an_uplink_without_a_shared_address() {
    let profile = format!("{}/profiles/ha-pair-r1.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(profile)
        .unwrap()
        .replace("    cable: 100.70.2.1/24\n", "");
    let path = std::env::temp_dir().join(format!("mw-single-{}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["plan", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "a warning is not an error");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warning: ha.uplink_addresses: uplink cable has no shared address")
            && stdout.contains("do not survive a router failover"),
        "{stdout}"
    );
    assert!(!stdout.contains("uplink fibre has no"), "{stdout}");
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("-j SNAT --to-source 100.70.1.1"), "{plan}");
    assert!(
        !plan.contains("-o wan2 -m addrtype"),
        "cable is masqueraded: {plan}"
    );
}

#[test]
fn only_the_master_deletes_a_failed_isps_connections_and_the_backup_learns_it() {
    let Some(lab) = pair(Options::default()) else {
        return;
    };
    let conns = lab.connect(20);
    let on_isp1 = conns.spread().get(&shared_address(1)).copied().unwrap_or(0);
    assert!(on_isp1 > 0, "{:?}", conns.spread());
    let external = |lab: &HaLab| {
        lab.status(2)
            .and_then(|s| s["ha"]["sync"]["external"].as_u64())
            .unwrap_or(0)
    };
    let synced = lab.wait_until(Duration::from_secs(5), || external(&lab) >= 20);
    assert!(
        synced.is_some(),
        "r2 holds r1's 20 connections: {}",
        external(&lab)
    );

    lab.blackhole(1, true);
    let both_down = lab.wait_until(Duration::from_secs(10), || {
        [1, 2].iter().all(|k| {
            lab.status(*k)
                .is_some_and(|s| s["uplinks"][0]["state"] == "down")
        })
    });
    assert!(
        both_down.is_some(),
        "both nodes see isp1 down:\n{}",
        lab.logs()
    );
    // The master deleted them; conntrackd carried the deletions to the backup's cache.
    let left = 20 - on_isp1 as u64;
    let carried = lab.wait_until(Duration::from_secs(5), || external(&lab) == left);
    assert!(
        carried.is_some(),
        "r2's external cache: {} entries, expected {left}:\n{}",
        external(&lab),
        lab.logs()
    );
    assert!(
        lab.log_text(1, "multiwan")
            .contains("conntrack entries deleted what=isp1"),
        "{}",
        lab.logs()
    );
    let backup_log = lab.log_text(2, "multiwan");
    assert!(
        !backup_log.contains("conntrack entries deleted")
            && backup_log.contains("HA backup: conntrack entries are left to the master"),
        "{backup_log}"
    );
}

#[test]
fn a_master_that_loses_an_uplink_cable_hands_over_and_its_connections_follow() {
    let Some(lab) = pair(Options::default()) else {
        return;
    };
    let conns = lab.connect(20);
    assert_eq!(conns.spread().len(), 2, "{:?}", conns.spread());
    std::thread::sleep(Duration::from_millis(500));
    // Only r1 loses ISP 1's cable; r2 still reaches ISP 1.
    let r1 = lab.ns("r1");
    let status = std::process::Command::new("ip")
        .args(["-n", &r1, "link", "set", "wan1", "down"])
        .status()
        .unwrap();
    assert!(status.success());
    let moved = lab.wait_master(2, Duration::from_secs(15));
    assert!(moved.is_some(), "r2 did not take over:\n{}", lab.logs());
    // r1 did not delete ISP 1's connections (conntrackd would have synced that to r2):
    // they carry on through r2's own ISP 1 link.
    let alive = conns.alive(1, Duration::from_secs(15));
    assert_eq!(count(&alive), 20, "{alive:?}\n{}", lab.logs());
    assert!(
        !lab.log_text(1, "multiwan")
            .contains("conntrack entries deleted"),
        "{}",
        lab.logs()
    );
}

/// Cutting the sync link while both routers live must not make two masters: the VRRP
/// adverts travel on the LAN. The master keeps forwarding; its connections live on.
#[test]
fn a_cut_sync_link_leaves_exactly_one_master() {
    let Some(lab) = pair(Options::default()) else {
        return;
    };
    let conns = lab.connect(20);
    assert_eq!(count(&conns.alive(1, ECHO_LIMIT)), 20);
    lab.exec(2, &["ip", "link", "set", "sync0", "down"]);
    // Far longer than keepalived's master-down interval (3 adverts of 200 ms).
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.holds_gateway(1), "{}", lab.logs());
    assert!(!lab.holds_gateway(2), "two masters:\n{}", lab.logs());
    assert_eq!(lab.role(1).as_deref(), Some("master"), "{}", lab.logs());
    assert_ne!(lab.role(2).as_deref(), Some("master"), "{}", lab.logs());
    let alive = conns.alive(2, ECHO_LIMIT);
    assert_eq!(count(&alive), 20, "{}", lab.logs());
    lab.exec(2, &["ip", "link", "set", "sync0", "up"]);
}

/// keepalived accepts the rendered config as it is, script security on: `keepalived -t`
/// exits 0 in a router's namespace, where the interfaces exist.
#[test]
fn keepalived_accepts_the_rendered_config() {
    let Some(lab) = pair(Options::default()) else {
        return;
    };
    let conf = lab.ha_dir(1).join("keepalived.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("enable_script_security"), "{text}");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("r1"), "keepalived", "-t", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "keepalived -t: {:?}\n{said}",
        out.status
    );
    assert!(!said.contains("SECURITY VIOLATION"), "{said}");
}
