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
            "pid",
            "policies",
            "sets",
            "started_unix",
            "uplinks",
            "version",
            "warnings"
        ]
    );
    let sets = json["sets"].as_array().expect("sets");
    let connected = sets
        .iter()
        .find(|s| s["name"] == "multiwan_connected")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(keys(connected), ["learned", "members", "name"]);
    assert!(connected["members"].as_u64().unwrap() >= 2, "{connected}");
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
            "standby",
            "state",
            "table",
            "weight"
        ]
    );
    assert_eq!(keys(&json["policies"][0]), ["hits", "name", "target"]);
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
    promtool_accepts(&lab);
    lab.blackhole(1, false);
    daemon
        .wait_for("uplink=isp1 from=down to=up", Duration::from_secs(8))
        .expect("up");
    scrape_until(&lab, "isp1", 1.0);
}

/// `promtool check metrics` (the Prometheus project's own linter) finds nothing to say
/// about a live /metrics with every kind of sample present. CI installs promtool.
fn promtool_accepts(lab: &Lab) {
    let have = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("MULTIWAN_REQUIRE_NETNS").is_none(),
            "promtool is missing (apt-get install prometheus)"
        );
        eprintln!("promtool not installed: lint skipped");
        return;
    }
    let text = lab.exec_ok("rt", &["curl", "-sf", "http://127.0.0.1:9273/metrics"]);
    let path = lab.file("metrics.txt", &text);
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "promtool check metrics < \"$0\"",
            &path.to_string_lossy(),
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
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
            "#!/bin/sh\nenv | sort >> {}\necho recorded\nhead -c 200000 /dev/zero | tr '\\0' x\n",
            out.display()
        ),
    );
    // A hook that leaves a child behind in the background, then hangs itself.
    let hang = lab.file("hang.sh", "#!/bin/sh\nsleep 31 &\nsleep 30\n");
    // A hook anyone may edit: it must never run as root.
    let unsafe_dir = lab.file("unsafe", "");
    std::fs::remove_file(&unsafe_dir).unwrap();
    std::fs::create_dir(&unsafe_dir).unwrap();
    std::fs::set_permissions(&unsafe_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = unsafe_dir.join("planted.sh");
    std::fs::write(
        &planted,
        format!("#!/bin/sh\necho planted >> {}\n", out.display()),
    )
    .unwrap();
    for p in [&record, &hang, &planted] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let extra = format!(
        "hooks: [{}, {}, {}]\nhook_timeout: 1s\n",
        record.display(),
        hang.display(),
        unsafe_dir.display()
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
        "hook output is logged: {}",
        daemon.log_text()
    );
    // Only PATH and the hook's own variables: nothing of the daemon's environment.
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("MULTIWAN_") || ["PATH", "PWD", "SHLVL", "_"].contains(n)),
        "{names:?}"
    );
    assert!(!env.contains("RUST_LOG"), "{env}");
    assert!(
        !env.contains("planted"),
        "a hook others can edit never runs"
    );
    assert!(
        daemon.log_text().contains("hook not run"),
        "{}",
        daemon.log_text()
    );
    let sleeping = Command::new("pgrep")
        .args(["-f", "^sleep 3[01]$"])
        .output()
        .unwrap();
    assert!(
        sleeping.stdout.is_empty(),
        "the hanging hook and the child it left behind were killed"
    );
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
        "ExecReload=/usr/sbin/multiwan reload -c /etc/multiwan/multiwan.yaml",
        "WatchdogSec=30s",
        "After=network-online.target nftables.service firewalld.service ufw.service netfilter-persistent.service",
        "ReloadPropagatedFrom=nftables.service firewalld.service ufw.service netfilter-persistent.service",
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
        unit.replace("/usr/sbin/multiwan", env!("CARGO_BIN_EXE_multiwan")),
    )
    .unwrap();
    // The man pages it names come with the package (tests/package.rs checks `man -w`).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
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
    // The daemon is root on the box that carries everyone's traffic: what systemd can
    // confine, it confines (/proc/sys read-only but for net, no namespaces, a syscall filter).
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for multiwan.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.5, "exposure {exposure} > 2.5:\n{report}");
    for line in [
        "ProtectKernelTunables=yes",
        "ReadWritePaths=/proc/sys/net",
        "ReadWritePaths=/run/xtables.lock",
        "ExecStartPre=+/usr/bin/touch /run/xtables.lock",
        "RestrictNamespaces=yes",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
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
        "usr/local/sbin/multiwan",
        "etc/systemd/system/multiwan.service",
        "etc/multiwan/multiwan.yaml",
    ] {
        assert!(dest.join(f).exists(), "{f}");
    }
    let unit = std::fs::read_to_string(dest.join("etc/systemd/system/multiwan.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/sbin/multiwan run") && !unit.contains("/usr/sbin/"),
        "the unit names the installed binary:\n{unit}"
    );
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
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    let socket = lab.socket();
    // `adm` (gid 4) is in every Debian base system; the peers are the nobody user with the
    // group as a *supplementary* group, the way `usermod -aG adm` makes a member.
    let config = lab.file(
        "multiwan.yaml",
        &format!(
            "{CONFIG}control: {{socket: {}, group: adm}}\n",
            socket.display()
        ),
    );
    let _daemon = lab.daemon(&config);
    let ask = |groups: &str, request: &str| {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", groups, "socat", "-"])
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
        let out = child.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let member = "--groups=4";
    assert!(ask(member, "status\n").contains("\"uplinks\""));
    let answer = ask(member, "ha-role master\n");
    assert!(answer.contains("only root may set the HA role"), "{answer}");
    // Without the group: the socket's mode refuses the connection itself.
    let answer = ask("--clear-groups", "status\n");
    assert!(answer.contains("ermission denied"), "{answer}");
    assert!(!answer.contains("uplinks"), "{answer}");
    // A request is one line of at most 4 KiB.
    let answer = ask(member, &"x".repeat(10_000));
    assert!(answer.contains("at most 4096 bytes"), "{answer}");
}

#[test]
fn ha_render_writes_only_where_root_alone_can_write_and_never_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return; // the trust check needs root-owned directories
    }
    let dir = std::env::temp_dir().join(format!("mw-render-{}", std::process::id()));
    let out = dir.join("ha");
    std::fs::create_dir_all(&out).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("keepalived.conf")).unwrap();
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/ha-pair-r1.yaml");
    let render = |to: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_multiwan"))
            .args([
                "ha",
                "render",
                "-c",
                profile,
                "--sync-address",
                "10.60.0.1",
                "--out",
            ])
            .arg(to)
            .output()
            .unwrap()
    };
    let done = render(&out);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let written = std::fs::symlink_metadata(out.join("keepalived.conf")).unwrap();
    assert!(
        written.file_type().is_file(),
        "the planted symlink was replaced, not followed"
    );
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = render(&open);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("writable by everyone"), "{err}");
}

#[test]
fn the_control_socket_never_replaces_a_file_or_lives_where_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    let precious = lab.file("passwd", "root:x:0:0\n");
    let config = lab.file(
        "multiwan.yaml",
        &format!("{CONFIG}control: {{socket: {}}}\n", precious.display()),
    );
    let daemon = lab.daemon(&config);
    daemon.expect(
        "is not a socket: it is not replaced",
        Duration::from_secs(5),
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "root:x:0:0\n");
    drop(daemon);
    let open = lab.file("open", "");
    std::fs::remove_file(&open).unwrap();
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = lab.file(
        "open.yaml",
        &format!("{CONFIG}control: {{socket: {}/s.sock}}\n", open.display()),
    );
    let daemon = lab.daemon(&config);
    daemon.expect("writable by everyone", Duration::from_secs(5));
    assert!(!open.join("s.sock").exists());
}

/// A client that sends its request a byte at a time is cut off; idle connections beyond the
/// cap are closed at once, so clients cannot pile up open files in the daemon. `check`
/// warns about a metrics address others can reach.
#[test]
fn the_metrics_port_cuts_slow_clients_and_caps_connections() {
    let Some((lab, daemon)) = start("metrics: 127.0.0.1:9273\n") else {
        return;
    };
    daemon.expect("metrics endpoint listening", Duration::from_secs(3));
    let pid = daemon.child.id();
    let (cut_after, fds) = lab.in_ns("rt", move || {
        use std::io::{Read, Write};
        let addr: std::net::SocketAddr = "127.0.0.1:9273".parse().unwrap();
        let idle: Vec<std::net::TcpStream> = (0..200)
            .filter_map(|_| std::net::TcpStream::connect(addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        drop(idle);
        std::thread::sleep(Duration::from_millis(300));
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        for b in b"GET /metrics HTTP/1.1\r\n".iter().cycle() {
            let _ = slow.write_all(&[*b]);
            if matches!(slow.read(&mut buf), Ok(0)) || t.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        (t.elapsed(), fds)
    });
    assert!(
        cut_after < Duration::from_secs(12),
        "a slow client held the port for {cut_after:?}"
    );
    assert!(fds < 120, "{fds} open files with 200 idle clients");
    let open = lab.file("open.yaml", &format!("{CONFIG}metrics: 0.0.0.0:9273\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_multiwan"))
        .args(["check", "-c", open.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("warning: metrics: 0.0.0.0:9273 is not a loopback address"),
        "{said}"
    );
}

/// What systemd sees (Type=notify, WatchdogSec=, the journal): READY=1, a STATUS= line that
/// follows the uplinks, WATCHDOG=1 keep-alives at half the period asked for, and log lines
/// that carry their syslog priority, so an ISP going down is a warning.
#[test]
fn systemd_gets_readiness_a_status_line_keep_alives_and_priorities() {
    if !lab::available() {
        return;
    }
    let lab = Lab::new(2);
    lab.start_internet_echo();
    let path = lab.file("notify.sock", "");
    std::fs::remove_file(&path).unwrap();
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = lab.file("multiwan.yaml", CONFIG);
    let daemon = lab.spawn_daemon_env(
        &config,
        "info",
        &[
            ("NOTIFY_SOCKET", &path.to_string_lossy()),
            ("WATCHDOG_USEC", "400000"),
            ("JOURNAL_STREAM", "8:12345"),
        ],
    );
    let mut said: Vec<String> = Vec::new();
    let mut read_until = |want: &dyn Fn(&[String]) -> bool, what: &str| {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while !want(&said) {
            assert!(
                start.elapsed() < Duration::from_secs(8),
                "{what} never sent; got {said:?}"
            );
            if let Ok(n) = socket.recv(&mut buf) {
                said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read_until(
        &|s| {
            s.iter().any(|m| m == "READY=1")
                && s.iter()
                    .any(|m| m.contains("STATUS=isp1 up 70%, isp2 up 30%"))
                && s.iter().filter(|m| *m == "WATCHDOG=1").count() >= 4
        },
        "READY=1, the status line and keep-alives",
    );
    lab.blackhole(1, true);
    read_until(
        &|s| {
            s.iter()
                .any(|m| m.starts_with("STATUS=isp1 down") && m.contains("isp2 up 100%"))
        },
        "the status line of isp1 down",
    );
    let log = daemon.log_text();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
            .to_string()
    };
    assert!(line("started: rules installed").starts_with("<6>"), "{log}");
    assert!(line("from=up to=down").starts_with("<4>"), "{log}");
    assert!(!log.contains("\x1b["), "no colours for the journal");
}
