//! Operating the daemon: status (table and JSON), Prometheus metrics across an outage,
//! hooks (with a timeout), the control socket's permissions, the systemd unit, install.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Daemon, Lab};

const CONFIG: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1, weight: 70, probe: {targets: [198.51.100.1, 198.51.100.2]}}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1, weight: 30, probe: {targets: [198.51.100.1, 198.51.100.2]}}
policies:
  - {name: console, match: {source: 10.0.0.50}, uplink: isp1}
";

fn start(extra: &str) -> Option<(Lab, Daemon)> {
    if !lab::available() {
        return None;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let daemon = lab.daemon(&lab.file("multiwan.yaml", &format!("{CONFIG}{extra}")));
    Some((lab, daemon))
}

fn status(lab: &Lab, json: bool) -> String {
    let socket = lab.socket();
    let mut args = vec!["status", "--socket", socket.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn row<'a>(text: &'a str, uplink: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{uplink} ")))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect()
}

#[test]
fn status_shows_states_weights_and_reasons_across_an_outage() {
    let Some((lab, daemon)) = start("") else {
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    let text = status(&lab, false);
    assert_eq!(row(&text, "isp1")[1], "up", "{text}");
    assert_eq!(row(&text, "isp1")[3..6], ["70", "70", "70.0%"], "{text}");
    assert!(text.contains("console         pinned to isp1"), "{text}");
    let rtt: f64 = row(&text, "isp1")[6].parse().unwrap();
    assert!(
        rtt > 0.0 && rtt < 50.0,
        "an RTT with microsecond precision, not 0: {text}"
    );
    lab.blackhole(1, true);
    daemon
        .wait_for("uplink=isp1 from=up to=down", Duration::from_secs(5))
        .expect("down");
    let text = status(&lab, false);
    assert_eq!(
        row(&text, "isp1")[1..6],
        ["down", row(&text, "isp1")[2], "70", "0", "0.0%"],
        "{text}"
    );
    assert_eq!(row(&text, "isp2")[5], "100.0%", "{text}");
    assert!(
        text.contains("up -> down") && text.contains("failed rounds in a row"),
        "{text}"
    );
    assert!(
        text.contains("console         isp1 is down: balanced instead"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&status(&lab, true)).unwrap();
    assert_eq!(json["uplinks"][0]["state"], "down");
    assert_eq!(json["uplinks"][0]["last_transition"]["to"], "down");
    assert_eq!(json["uplinks"][1]["share_percent"], 100.0);
    lab.blackhole(1, false);
    daemon
        .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
        .expect("up");
    let json: serde_json::Value = serde_json::from_str(&status(&lab, true)).unwrap();
    assert_eq!(json["uplinks"][0]["state"], "up");
    assert_eq!(
        json["uplinks"][0]["last_transition"]["reason"],
        "5 good rounds in a row"
    );
}

#[test]
fn status_json_shape_is_stable() {
    let Some((lab, _daemon)) = start("") else {
        return;
    };
    let json: serde_json::Value = serde_json::from_str(&status(&lab, true)).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&json),
        [
            "all_down",
            "config",
            "forwards",
            "policies",
            "started_unix",
            "uplinks",
            "version"
        ]
    );
    assert_eq!(
        keys(&json["uplinks"][0]),
        [
            "address",
            "bytes",
            "connections",
            "effective_weight",
            "gateway",
            "interface",
            "jitter_ms",
            "last_transition",
            "link_up",
            "loss_percent",
            "mark",
            "name",
            "probes_late",
            "probes_lost",
            "probes_sent",
            "rtt_ms",
            "share_percent",
            "since_unix",
            "state",
            "table",
            "weight"
        ]
    );
    assert_eq!(keys(&json["policies"][0]), ["name", "target"]);
    assert_eq!(json["uplinks"][0]["address"], "100.64.1.2");
    assert_eq!(json["uplinks"][1]["mark"], 0x200);
    assert!(json["uplinks"][0]["connections"].is_u64());
}

#[test]
fn status_without_a_daemon_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["status", "--socket", "/nonexistent/multiwan.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no multiwan daemon is listening on /nonexistent/multiwan.sock"),
        "{err}"
    );
}

fn scrape(lab: &Lab) -> prometheus_parse::Scrape {
    let out = lab.exec("rt", &["curl", "-sf", "http://127.0.0.1:9273/metrics"]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("not valid exposition text: {e}\n{text}"))
}

fn value(s: &prometheus_parse::Scrape, name: &str, uplink: &str) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && x.labels.get("uplink") == Some(uplink));
    match sample.map(|x| &x.value) {
        Some(
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        other => panic!("{name}{{uplink={uplink}}}: {other:?}"),
    }
}

#[test]
fn metrics_follow_an_outage_and_recovery() {
    let Some((lab, daemon)) = start("metrics: 127.0.0.1:9273\n") else {
        return;
    };
    daemon
        .wait_for("metrics endpoint listening", Duration::from_secs(3))
        .expect("listening");
    std::thread::sleep(Duration::from_millis(1200));
    lab.seen(20);
    let s = scrape(&lab);
    assert_eq!(value(&s, "multiwan_uplink_up", "isp1"), 1.0);
    assert!(value(&s, "multiwan_probes_sent_total", "isp1") > 2.0);
    assert!(value(&s, "multiwan_uplink_rtt_seconds", "isp1") > 0.0);
    assert_eq!(value(&s, "multiwan_uplink_effective_weight", "isp1"), 70.0);
    // The rule counters come from the once-a-second reconcile, never from a scrape.
    let marked = |s: &prometheus_parse::Scrape| {
        value(s, "multiwan_connections_marked_total", "isp1")
            + value(s, "multiwan_connections_marked_total", "isp2")
    };
    let start = Instant::now();
    while marked(&scrape(&lab)) < 20.0 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = marked(&scrape(&lab));
    assert!(m >= 20.0, "new connections are counted: {m}");
    lab.blackhole(1, true);
    daemon
        .wait_for("uplink=isp1 from=up to=down", Duration::from_secs(5))
        .expect("down");
    let s = scrape_until(&lab, "isp1", 0.0);
    assert!(value(&s, "multiwan_uplink_loss_ratio", "isp1") > 0.0);
    let t = s
        .samples
        .iter()
        .find(|x| x.metric == "multiwan_transitions_total" && x.labels.get("to") == Some("down"))
        .expect("transition counted");
    assert_eq!(t.labels.get("cause"), Some("probes"));
    lab.blackhole(1, false);
    daemon
        .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
        .expect("up");
    scrape_until(&lab, "isp1", 1.0);
}

/// Scrapes until `multiwan_uplink_up{uplink}` reads `up`: the gauges are updated just
/// after the transition is logged.
fn scrape_until(lab: &Lab, uplink: &str, up: f64) -> prometheus_parse::Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(lab);
        if value(&s, "multiwan_uplink_up", uplink) == up {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "multiwan_uplink_up{{uplink={uplink}}} never read {up}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hooks_get_every_variable_and_a_hanging_hook_is_killed() {
    if !lab::available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let out = lab.file("hook-output", "");
    let record = lab.file(
        "record.sh",
        &format!(
            "#!/bin/sh\nenv | grep ^MULTIWAN_ | sort >> {}\necho recorded\n",
            out.display()
        ),
    );
    let hang = lab.file("hang.sh", "#!/bin/sh\nsleep 30\n");
    for p in [&record, &hang] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let extra = format!(
        "hooks: [{}, {}]\nhook_timeout: 1s\n",
        record.display(),
        hang.display()
    );
    let daemon = lab.daemon(&lab.file("multiwan.yaml", &format!("{CONFIG}{extra}")));
    let t = Instant::now();
    lab.blackhole(1, true);
    daemon
        .wait_for("uplink=isp1 from=up to=down", Duration::from_secs(5))
        .expect("failover");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "failover on time despite the hanging hook"
    );
    daemon
        .wait_for("hook timed out and was killed", Duration::from_secs(5))
        .expect("the hanging hook is killed");
    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "MULTIWAN_UPLINK=isp1",
        "MULTIWAN_INTERFACE=wan1",
        "MULTIWAN_STATE=down",
        "MULTIWAN_PREVIOUS_STATE=up",
        "MULTIWAN_ACTIVE_UPLINKS=isp2",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert!(
        env.contains("MULTIWAN_REASON=3 failed rounds in a row"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l.starts_with("MULTIWAN_LOSS_PERCENT=")),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l.starts_with("MULTIWAN_RTT_MS=")),
        "{env}"
    );
    assert!(
        daemon.log_text().contains("stdout=recorded"),
        "hook output is logged"
    );
    let sleeping = Command::new("pgrep")
        .args(["-f", &hang.to_string_lossy()])
        .output()
        .unwrap();
    assert!(sleeping.stdout.is_empty(), "the hanging hook was killed");
}

#[test]
fn only_root_may_use_the_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    let Some((lab, _daemon)) = start("") else {
        return;
    };
    let socket = lab.socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let as_nobody = |socket: &std::path::Path| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_multiwan"),
                "status",
                "--socket",
            ])
            .arg(socket)
            .output()
            .unwrap()
    };
    // The lab folder itself must be reachable for the test to mean something.
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = as_nobody(&socket);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Even if someone loosens the file mode, the daemon checks the peer's credentials.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&socket);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("said: permission denied"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("isp1"));
}

#[test]
fn systemd_unit_passes_verify() {
    let root = env!("CARGO_MANIFEST_DIR");
    let unit = std::fs::read_to_string(format!("{root}/packaging/multiwan.service")).unwrap();
    for needed in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=multiwan",
    ] {
        assert!(unit.lines().any(|l| l == needed), "unit lacks {needed}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("mw-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("multiwan.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/multiwan", env!("CARGO_BIN_EXE_multiwan")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_script_stages_files_and_keeps_an_existing_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dest = std::env::temp_dir().join(format!("mw-install-{}", std::process::id()));
    let run = || {
        Command::new(format!("{root}/scripts/install.sh"))
            .env("DESTDIR", &dest)
            .env("MULTIWAN_BINARY", env!("CARGO_BIN_EXE_multiwan"))
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/local/bin/multiwan",
        "etc/systemd/system/multiwan.service",
        "etc/multiwan/multiwan.yaml",
    ] {
        assert!(dest.join(f).exists(), "{f}");
    }
    std::fs::write(dest.join("etc/multiwan/multiwan.yaml"), "# mine\n").unwrap();
    let out = run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing"));
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/multiwan/multiwan.yaml")).unwrap(),
        "# mine\n"
    );
    let _ = std::fs::remove_dir_all(&dest);
}

#[test]
fn the_control_group_may_read_status_but_only_root_sets_the_ha_role() {
    use std::os::unix::fs::PermissionsExt;
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    let socket = lab.socket();
    let config = lab.file(
        "multiwan.yaml",
        &format!(
            "{CONFIG}control: {{socket: {}, group: nogroup}}\n",
            socket.display()
        ),
    );
    let _daemon = lab.daemon(&config);
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let as_group_member = |request: &str| {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "socat",
                "-",
            ])
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{request}\n").as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    assert!(as_group_member("status").contains("\"uplinks\""));
    let answer = as_group_member("ha-role master");
    assert!(answer.contains("only root may set the HA role"), "{answer}");
}
