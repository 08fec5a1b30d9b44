//! Kernel benchmarks (root; builds its own namespace lab):
//! 1. `multiwan apply` of a plan with 1000 pinned hosts, against the same rules installed
//!    one `iptables` call at a time;
//! 2. a weight change (balance chain swap) with those 1000 pins present, against a full
//!    re-apply;
//! 3. iperf3 TCP throughput LAN -> internet through multiwan's rules against plain
//!    masquerade, and the rules an established packet traverses;
//! 4. new connections per second through a port forward with 2 backends against a plain
//!    single DNAT rule.
//!
//! Run: `cargo bench --bench kernel`. Prints medians and ratios; docs/benchmarks.md has
//! the figures.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use multiwan::config;
use multiwan::kernel::netfilter;
use multiwan::plan::{Family, Observed, Plan};

const PINS: usize = 1000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench --bench kernel`");
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the kernel benchmarks need root");
        return;
    }
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |s: &str| named.is_empty() || named.iter().any(|n| n == s);
    if wanted("apply") || wanted("throughput") {
        let lab = lab::Lab::new(2);
        let cfg_a = config_text(70);
        let cfg_b = config_text(60);
        let path_a = lab.file("a.yaml", &cfg_a).to_string_lossy().into_owned();
        let rt = format!("/var/run/netns/{}", lab.ns("rt"));
        if wanted("apply") {
            let (apply, baseline, rules) = in_netns(&rt, move || bench_apply(&path_a));
            report_apply(apply, baseline, rules);
            let (delta, full) = in_netns(&rt, move || bench_swap(&cfg_a, &cfg_b));
            report_swap(&delta, &full);
        }
        if wanted("throughput") {
            bench_throughput(&lab);
        }
    }
    if wanted("forward") {
        bench_forward();
    }
    if wanted("connections") {
        bench_new_connections();
    }
}

/// New connections per second from an unpinned LAN host with 10 000 pinned hosts in the
/// config, against the same router with none, alternating, same lab.
fn bench_new_connections() {
    const MANY: usize = 10_000;
    let lab = lab::Lab::new(2);
    lab.start_rate_server();
    let none = lab.file("none.yaml", &pins_config(50, 0));
    let many = lab.file("many.yaml", &pins_config(50, MANY));
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (path, out) in [(&none, &mut without), (&many, &mut with)] {
            let path = path.to_string_lossy();
            lab.multiwan_ok(&["apply", "-c", &path]);
            let _ = lab.exec("rt", &["conntrack", "-F"]);
            std::thread::sleep(Duration::from_millis(300));
            out.push(lab.connection_rate(3.0));
            lab.multiwan_ok(&["cleanup", "-c", &path]);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let every = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("## New connections per second from an unpinned LAN host (3 x 3 s, alternating)");
    println!("| config | connections/s, median | every run |");
    println!("|---|---|---|");
    println!(
        "| no pins | {:.0} | {} |",
        median(without.clone()),
        every(&without)
    );
    println!(
        "| {MANY} pinned hosts | {:.0} | {} |",
        median(with.clone()),
        every(&with)
    );
    println!(
        "| ratio (pins / none) | {:.3} | |",
        median(with) / median(without)
    );
    println!();
}

/// Connections per second from the internet through a port forward (2 backends, round
/// robin) against one plain DNAT rule to one backend, alternating, 3 x 2000 each.
fn bench_forward() {
    let lab = lab::Lab::new(2);
    let (a, b) = (
        std::net::Ipv4Addr::new(10, 0, 0, 11),
        std::net::Ipv4Addr::new(10, 0, 0, 12),
    );
    lab.start_identity("lan", a, 8443);
    lab.start_identity("lan", b, 8443);
    let config = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1}
port_forwards:
  - {name: web, protocol: tcp, port: 8443, to: [10.0.0.11, 10.0.0.12], health_check: {kind: none}}
";
    let path = lab
        .file("forward.yaml", config)
        .to_string_lossy()
        .into_owned();
    let plain = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        "wan1",
        "-p",
        "tcp",
        "--dport",
        "8443",
        "-j",
        "DNAT",
        "--to-destination",
        "10.0.0.11",
    ];
    let masq = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan1",
        "-j",
        "MASQUERADE",
    ];
    let rate = |lab: &lab::Lab| {
        let n = 2000;
        let t = Instant::now();
        let ok = lab.in_ns("inet", move || {
            (0..n)
                .filter(|_| lab::ask_peer(lab::ECHO, lab::uplink_addr(1), 8443).is_some())
                .count()
        });
        assert_eq!(ok, n, "every connection succeeds");
        n as f64 / t.elapsed().as_secs_f64()
    };
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        lab.exec_ok("rt", &plain);
        lab.exec_ok("rt", &masq);
        base.push(rate(&lab));
        lab.exec_ok("rt", &["iptables", "-t", "nat", "-F", "PREROUTING"]);
        lab.exec_ok("rt", &["iptables", "-t", "nat", "-F", "POSTROUTING"]);
        lab.multiwan_ok(&["apply", "-c", &path]);
        ours.push(rate(&lab));
        lab.multiwan_ok(&["cleanup", "-c", &path]);
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    println!("## New connections per second through a port forward (2000 sequential, median of 3)");
    println!("| setup | connections/s |");
    println!("|---|---|");
    println!(
        "| plain single DNAT rule to one backend (+ masquerade) | {:.0} |",
        base[1]
    );
    println!(
        "| multiwan forward, 2 backends round robin, full rule set | {:.0} |",
        ours[1]
    );
    println!("| ratio (multiwan / plain) | {:.3} |", ours[1] / base[1]);
}

fn config_text(weight1: u32) -> String {
    pins_config(weight1, PINS)
}

/// Two uplinks and `pins` single-host policies (10.1.x.y, alternating uplinks).
fn pins_config(weight1: u32, pins: usize) -> String {
    let mut s = format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: isp1, interface: wan1, gateway: 100.64.1.1, weight: {weight1}}}
  - {{name: isp2, interface: wan2, gateway: 100.64.2.1, weight: {}}}
",
        100 - weight1
    );
    if pins > 0 {
        s.push_str("policies:\n");
    }
    for i in 0..pins {
        s.push_str(&format!(
            "  - {{name: host-{i}, match: {{source: 10.1.{}.{}}}, uplink: isp{}}}\n",
            i / 250,
            i % 250 + 1,
            i % 2 + 1
        ));
    }
    s
}

fn in_netns<R: Send + 'static>(path: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = path.to_string();
    std::thread::spawn(move || {
        lab::enter_netns(&path);
        f()
    })
    .join()
    .unwrap()
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median wall time of `multiwan apply` from a clean state, and the time of installing the
/// same rules with one `iptables` process per rule.
fn bench_apply(path: &str) -> (Duration, Duration, usize) {
    let bin = env!("CARGO_BIN_EXE_multiwan");
    let mut times = Vec::new();
    for _ in 0..7 {
        run(&[bin, "cleanup", "-c", path]);
        let t = Instant::now();
        run(&[bin, "apply", "-c", path]);
        times.push(t.elapsed());
    }
    let script = Command::new(bin)
        .args(["plan", "-c", path, "--format", "iptables"])
        .output()
        .unwrap()
        .stdout;
    let script = String::from_utf8(script).unwrap();
    run(&[bin, "cleanup", "-c", path]);
    // Baseline: the same chains and rules, one iptables call each (what the tutorials and
    // the iptables crate do).
    let sets = Command::new(bin)
        .args(["plan", "-c", path, "--format", "ipset"])
        .output()
        .unwrap()
        .stdout;
    let mut table = String::new();
    let mut calls = 0;
    let t = Instant::now();
    for line in String::from_utf8(sets)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("create "))
    {
        let name = line.split_whitespace().nth(1).unwrap();
        run(&[
            "ipset", "create", name, "hash:net", "family", "inet", "-exist",
        ]);
        calls += 1;
    }
    for line in script.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap();
            run(&["iptables", "-w", "-t", &table, "-N", name]);
            calls += 1;
        } else if line.starts_with("-A ") {
            let mut argv = vec![
                "iptables".to_string(),
                "-w".into(),
                "-t".into(),
                table.clone(),
            ];
            argv.extend(split_quoted(line));
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            run(&refs);
            calls += 1;
        }
    }
    let baseline = t.elapsed();
    run(&[bin, "cleanup", "-c", path]);
    (median(times), baseline, calls)
}

/// Splits a rule line on spaces, keeping "quoted words" together.
fn split_quoted(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in line.split('"').enumerate() {
        if i % 2 == 1 {
            out.push(part.to_string());
        } else {
            out.extend(part.split_whitespace().map(str::to_string));
        }
    }
    out
}

fn report_apply(apply: Duration, baseline: Duration, calls: usize) {
    println!("## apply with {PINS} pinned hosts");
    println!("| what | time |");
    println!("|---|---|");
    println!(
        "| `multiwan apply` (whole command: netlink, ipset, iptables-restore, verify), median of 7 | {:.1} ms |",
        ms(apply)
    );
    println!(
        "| same {calls} chains and rules, one `iptables` call each | {:.1} ms |",
        ms(baseline)
    );
    println!(
        "| ratio (baseline / multiwan) | {:.1}x |",
        baseline.as_secs_f64() / apply.as_secs_f64()
    );
    println!();
}

/// A weight change with the pins present: delta swap (balance chain only) against a full
/// re-apply of every chain, alternating 70/30 and 60/40.
fn bench_swap(a: &str, b: &str) -> (Vec<Duration>, Vec<Duration>) {
    let ca = config::parse(a, "a.yaml").unwrap();
    let cb = config::parse(b, "b.yaml").unwrap();
    let pa = Plan::build(&ca, &Observed::default());
    let pb = Plan::build(&cb, &Observed::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(multiwan::kernel::ipset::update(&pa.sets))
        .unwrap();
    rt.block_on(netfilter::apply(&pa)).unwrap();
    let (mut delta, mut full) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (from, to) = if i % 2 == 0 { (&pa, &pb) } else { (&pb, &pa) };
        let t = Instant::now();
        let changes = rt.block_on(netfilter::apply_delta(from, to)).unwrap();
        delta.push(t.elapsed());
        assert_eq!(changes.chains(), vec!["mangle/MULTIWAN_BALANCE"]);
        let saved = rt.block_on(netfilter::save(Family::Ipv4)).unwrap();
        netfilter::script::verify(to, &saved).unwrap();
        // Baseline: the same change made by re-sending every chain in one transaction
        // (what a tool that rewrites its whole rule set on each change does).
        let t = Instant::now();
        let out = Command::new("iptables-restore")
            .args(["-w", "5", "--noflush"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(from.iptables_restore().as_bytes())?;
                c.wait()
            });
        assert!(out.unwrap().success());
        full.push(t.elapsed());
        rt.block_on(netfilter::apply_delta(from, to)).unwrap();
    }
    (delta, full)
}

fn report_swap(delta: &[Duration], full: &[Duration]) {
    let (d, f) = (median(delta.to_vec()), median(full.to_vec()));
    println!("## weight change with {PINS} pins present (10 swaps)");
    println!("| what | median | worst |");
    println!("|---|---|---|");
    println!(
        "| multiwan delta (balance chain only, one transaction) | {:.2} ms | {:.2} ms |",
        ms(d),
        ms(*delta.iter().max().unwrap())
    );
    println!(
        "| the same change re-sending every chain (one iptables-restore) | {:.2} ms | {:.2} ms |",
        ms(f),
        ms(*full.iter().max().unwrap())
    );
    println!(
        "| ratio (full / delta) | {:.1}x | |",
        f.as_secs_f64() / d.as_secs_f64()
    );
    println!();
}

fn iperf(lab: &lab::Lab) -> f64 {
    let out = lab.exec("lan", &["iperf3", "-c", "192.0.2.10", "-t", "4", "-J"]);
    assert!(
        out.status.success(),
        "iperf3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
}

/// Alternates plain masquerade and multiwan (with the 1000 pins), five runs each: on two
/// shared cores a single run varies by +-8 %.
fn bench_throughput(lab: &lab::Lab) {
    let mut server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("inet"),
            "iperf3",
            "-s",
            "-B",
            "192.0.2.10",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let path = lab
        .file("pins.yaml", &config_text(70))
        .to_string_lossy()
        .into_owned();
    let masq = [
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan1",
        "-j",
        "MASQUERADE",
    ];
    let (mut plain, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        lab.multiwan_ok(&["cleanup", "-c", &path]);
        lab.exec_ok("rt", &masq);
        plain.push(iperf(lab));
        lab.exec_ok(
            "rt",
            &[
                "iptables",
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-o",
                "wan1",
                "-j",
                "MASQUERADE",
            ],
        );
        lab.multiwan_ok(&["apply", "-c", &path]);
        ours.push(iperf(lab));
    }
    let counters = lab.exec_ok("rt", &["iptables-save", "-c", "-t", "mangle"]);
    let _ = server.kill();
    let _ = server.wait();
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (p, pmin, pmax) = stats(plain);
    let (o, omin, omax) = stats(ours);
    println!("## TCP throughput LAN -> internet (iperf3, 4 s, 5 alternating runs)");
    println!("| setup | median | min - max |");
    println!("|---|---|---|");
    println!(
        "| plain masquerade, main table | {:.2} Gbit/s | {:.2} - {:.2} |",
        p / 1e9,
        pmin / 1e9,
        pmax / 1e9
    );
    println!(
        "| multiwan, full rule set with {PINS} pins | {:.2} Gbit/s | {:.2} - {:.2} |",
        o / 1e9,
        omin / 1e9,
        omax / 1e9
    );
    println!("| ratio of medians (multiwan / plain) | {:.3} | |", o / p);
    println!();
    println!(
        "Rules an established LAN packet traverses in mangle: PREROUTING's jump, `-i lan0 -g MULTIWAN_LAN`,"
    );
    println!("the CONNMARK restore and the `decided` RETURN: 4. Counters of the last run:");
    for line in counters.lines().filter(|l| {
        l.contains("multiwan restore")
            || l.contains("multiwan decided")
            || l.contains("multiwan not new")
    }) {
        let packets = line
            .trim_start_matches('[')
            .split(':')
            .next()
            .unwrap_or("?");
        let name = line
            .split("--comment \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?");
        println!("- `{name}`: {packets} packets");
    }
}
