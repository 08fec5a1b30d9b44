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
use multiwan::kernel::netfilter::{self, session};
use multiwan::plan::{Family, Observed, Plan};

const PINS: usize = 10_000;

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
            let (apply, install, baseline, rules) = in_netns(&rt, move || bench_apply(&path_a));
            report_apply(apply, install, baseline, rules);
            let a = cfg_a.clone();
            netfilter::session::enable();
            let swaps = in_netns(&rt, move || bench_swap(&a, &cfg_b));
            report_swap(&swaps);
            let failover = in_netns(&rt, move || bench_failover_swap(&cfg_a));
            report_failover_swap(&failover);
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
    s.push_str(&lab::pin_policies(pins, 2));
    s
}

fn in_netns<R: Send + 'static>(path: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = path.to_string();
    std::thread::spawn(move || {
        lab::enter_netns(&path);
        // `MULTIWAN_TEST_BACKEND=legacy`: the in-process installs use iptables-legacy, as
        // the daemon would on such a host (the first choice holds for the process).
        if lab::legacy() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(netfilter::backend::select(
                multiwan::config::NetfilterBackend::Legacy,
            ))
            .unwrap();
        }
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

/// A pause before a timed swap or install. A failover or an apply comes at any moment, not
/// right after another change (here: the bench's own cleanup); an nf_tables commit within a
/// grace period of the previous one waits for the kernel to release that generation (~8-12
/// ms here), which would be measured instead.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
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
/// The install alone, in this process (config already read): sets, rules, routing.
fn install_times(path: &str) -> Vec<Duration> {
    let bin = env!("CARGO_BIN_EXE_multiwan");
    let config = multiwan::files::load_config(std::path::Path::new(path)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let installer = rt
        .block_on(async { multiwan::kernel::install::Installer::new() })
        .unwrap();
    (0..7)
        .map(|_| {
            run(&[bin, "cleanup", "-c", path]);
            settle();
            let t = Instant::now();
            rt.block_on(installer.apply(&config, &Default::default(), None))
                .unwrap();
            t.elapsed()
        })
        .collect()
}

fn bench_apply(path: &str) -> (Duration, Duration, Duration, usize) {
    let bin = env!("CARGO_BIN_EXE_multiwan");
    let mut times = Vec::new();
    for _ in 0..7 {
        run(&[bin, "cleanup", "-c", path]);
        settle();
        let t = Instant::now();
        run(&[bin, "apply", "-c", path]);
        times.push(t.elapsed());
    }
    let install = median(install_times(path));
    let script = Command::new(bin)
        .args(["plan", "-c", path, "--format", "iptables"])
        .output()
        .unwrap()
        .stdout;
    // The baseline installs what a per-rule tool would: one rule per pinned host, where
    // multiwan has a few set rules.
    let script = one_rule_per_pin(&String::from_utf8(script).unwrap(), path);
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
    (median(times), install, baseline, calls)
}

/// The plan's iptables text with each pin set's rule replaced by one rule per host in it.
fn one_rule_per_pin(script: &str, path: &str) -> String {
    let config = multiwan::files::load_config(std::path::Path::new(path)).unwrap();
    let plan = Plan::build(&config, &Observed::default());
    let mut out = String::new();
    for line in script.lines() {
        let group = plan
            .pins
            .iter()
            .flat_map(|r| &r.groups)
            .find(|g| line.contains(&format!("--match-set {} src", g.set)));
        match group {
            Some(g) => {
                for n in &g.networks {
                    let rule = line.replace(
                        &format!("-m set --match-set {} src", g.set),
                        &format!("-s {n}"),
                    );
                    out.push_str(&rule);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
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

fn report_apply(apply: Duration, install: Duration, baseline: Duration, calls: usize) {
    println!("## apply with {PINS} pinned hosts");
    println!("| what | time |");
    println!("|---|---|");
    println!(
        "| `multiwan apply` (whole command: reading the 10 000-policy file, netlink, ipset, iptables-restore, verify), median of 7 | {:.1} ms |",
        ms(apply)
    );
    println!(
        "| the install alone (config already read: sets, rules, routing), median of 7 | {:.1} ms |",
        ms(install)
    );
    println!(
        "| the same with one rule per pinned host: {calls} chains and rules, one `iptables` call each | {:.1} ms |",
        ms(baseline)
    );
    println!(
        "| ratio (baseline / whole command) | {:.1}x |",
        baseline.as_secs_f64() / apply.as_secs_f64()
    );
    println!(
        "| ratio (baseline / install) | {:.1}x |",
        baseline.as_secs_f64() / install.as_secs_f64()
    );
    println!();
}

/// A failover of isp1 (half of the pins pinned to it) and back, 10 times: the delta swap
/// of the chains that change (the policy chain's few set rules and the balance chain),
/// through the daemon's standing restore process and, for comparison, one restore process
/// per swap.
fn bench_failover_swap(a: &str) -> (Vec<Duration>, Vec<Duration>) {
    let c = config::parse(a, "a.yaml").unwrap();
    let up = Plan::build(&c, &Observed::default());
    let mut observed = Observed::default();
    observed
        .health
        .insert("isp1".into(), multiwan::health::Health::Down);
    let down = Plan::build(&c, &observed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(multiwan::kernel::ipset::update(
        &up.sets.iter().collect::<Vec<_>>(),
    ))
    .unwrap();
    rt.block_on(netfilter::apply(&up, &mut false)).unwrap();
    let (mut standing, mut one_shot) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let (from, to) = if i % 2 == 0 {
            (&up, &down)
        } else {
            (&down, &up)
        };
        let by_session = i % 4 < 2;
        rt.block_on(async {
            if by_session {
                session::prepare(Family::Ipv4).await;
            } else {
                session::close_all().await;
            }
        });
        settle();
        let t = Instant::now();
        let changes = rt.block_on(netfilter::apply_delta(from, to)).unwrap();
        let took = t.elapsed();
        if i % 2 == 0 {
            if by_session {
                &mut standing
            } else {
                &mut one_shot
            }
            .push(took);
            assert_eq!(
                changes.chains(),
                vec!["mangle/MULTIWAN_POLICY", "mangle/MULTIWAN_BALANCE"]
            );
        }
        let saved = rt.block_on(netfilter::save(Family::Ipv4)).unwrap();
        netfilter::script::verify(to, &saved).unwrap();
    }
    rt.block_on(session::close_all());
    (standing, one_shot)
}

fn report_failover_swap((standing, one_shot): &(Vec<Duration>, Vec<Duration>)) {
    println!(
        "## failover of an uplink with {} of the {PINS} pins ({} + {} times)",
        PINS / 2,
        standing.len(),
        one_shot.len()
    );
    println!(
        "| swap of the policy chain (one rule per set) and the balance chain, one transaction | median | worst |"
    );
    println!("|---|---|---|");
    for (what, times) in [
        ("through the daemon's standing restore process", standing),
        ("one restore process for the swap", one_shot),
    ] {
        println!(
            "| {what} | {:.2} ms | {:.2} ms |",
            ms(median(times.to_vec())),
            ms(*times.iter().max().unwrap())
        );
    }
    println!();
}

/// A weight change with the pins present, alternating 70/30 and 60/40: the delta swap
/// (balance chain only) through the daemon's standing restore process, the same swap with
/// one restore process, and a full re-apply of every chain.
fn bench_swap(a: &str, b: &str) -> [Vec<Duration>; 3] {
    let ca = config::parse(a, "a.yaml").unwrap();
    let cb = config::parse(b, "b.yaml").unwrap();
    let pa = Plan::build(&ca, &Observed::default());
    let pb = Plan::build(&cb, &Observed::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(multiwan::kernel::ipset::update(
        &pa.sets.iter().collect::<Vec<_>>(),
    ))
    .unwrap();
    rt.block_on(netfilter::apply(&pa, &mut false)).unwrap();
    let [mut standing, mut one_shot, mut full] = [Vec::new(), Vec::new(), Vec::new()];
    let swap = |from: &Plan, to: &Plan| {
        settle();
        let t = Instant::now();
        let changes = rt.block_on(netfilter::apply_delta(from, to)).unwrap();
        let took = t.elapsed();
        assert_eq!(changes.chains(), vec!["mangle/MULTIWAN_BALANCE"]);
        let saved = rt.block_on(netfilter::save(Family::Ipv4)).unwrap();
        netfilter::script::verify(to, &saved).unwrap();
        took
    };
    for i in 0..10 {
        let (from, to) = if i % 2 == 0 { (&pa, &pb) } else { (&pb, &pa) };
        rt.block_on(session::prepare(Family::Ipv4));
        standing.push(swap(from, to));
        rt.block_on(session::close_all());
        one_shot.push(swap(to, from));
        swap(from, to);
        // Baseline: the same change made by re-sending every chain in one transaction
        // (what a tool that rewrites its whole rule set on each change does).
        settle();
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
        swap(from, to);
    }
    // The sessions belong to this runtime.
    rt.block_on(session::close_all());
    [standing, one_shot, full]
}

fn report_swap([standing, one_shot, full]: &[Vec<Duration>; 3]) {
    println!("## weight change with {PINS} pins present (10 swaps each)");
    println!("| what | median | worst |");
    println!("|---|---|---|");
    for (what, times) in [
        (
            "multiwan delta (balance chain only) through the daemon's standing restore process",
            standing,
        ),
        ("the same delta, one restore process", one_shot),
        (
            "the same change re-sending every chain (one iptables-restore)",
            full,
        ),
    ] {
        println!(
            "| {what} | {:.2} ms | {:.2} ms |",
            ms(median(times.to_vec())),
            ms(*times.iter().max().unwrap())
        );
    }
    println!(
        "| ratio (full / standing delta) | {:.1}x | |",
        median(full.to_vec()).as_secs_f64() / median(standing.to_vec()).as_secs_f64()
    );
    println!();
}

/// One iperf3 run from the LAN host to the internet server: `reverse` for download,
/// `flows` parallel streams. Bits per second received.
fn iperf(lab: &lab::Lab, reverse: bool, flows: u32) -> f64 {
    let flows = flows.to_string();
    let mut argv = vec!["iperf3", "-c", "192.0.2.10", "-t", "4", "-J", "-P", &flows];
    if reverse {
        argv.push("-R");
    }
    let out = lab.exec("lan", &argv);
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

/// The four ways traffic is measured: upload and download, one flow and four.
const THROUGHPUT_CASES: [(&str, bool, u32); 4] = [
    ("upload, 1 flow", false, 1),
    ("upload, 4 flows", false, 4),
    ("download (-R), 1 flow", true, 1),
    ("download (-R), 4 flows", true, 4),
];

/// Plain masquerade and multiwan (with the pins), alternating, five runs of each case: on
/// two shared cores a single run varies by +-8 %, so medians.
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
    let masq = |op: &str| {
        lab.exec_ok(
            "rt",
            &[
                "iptables",
                "-t",
                "nat",
                op,
                "POSTROUTING",
                "-o",
                "wan1",
                "-j",
                "MASQUERADE",
            ],
        );
    };
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 4];
    for _ in 0..5 {
        lab.multiwan_ok(&["cleanup", "-c", &path]);
        masq("-A");
        for (i, (_, reverse, flows)) in THROUGHPUT_CASES.iter().enumerate() {
            results[i].0.push(iperf(lab, *reverse, *flows));
        }
        masq("-D");
        lab.multiwan_ok(&["apply", "-c", &path]);
        for (i, (_, reverse, flows)) in THROUGHPUT_CASES.iter().enumerate() {
            results[i].1.push(iperf(lab, *reverse, *flows));
        }
    }
    let counters = lab.exec_ok("rt", &["iptables-save", "-c", "-t", "mangle"]);
    let _ = server.kill();
    let _ = server.wait();
    report_throughput(&results, &counters);
}

fn report_throughput(results: &[(Vec<f64>, Vec<f64>)], counters: &str) {
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!("## TCP throughput through the router (iperf3, 4 s, 5 alternating runs each)");
    println!(
        "| traffic | plain masquerade: median (min - max) | multiwan, {PINS} pins | ratio of medians |"
    );
    println!("|---|---|---|---|");
    for ((what, _, _), (plain, ours)) in THROUGHPUT_CASES.iter().zip(results) {
        let (p, pmin, pmax) = stats(plain);
        let (o, omin, omax) = stats(ours);
        println!(
            "| {what} | {:.2} Gbit/s ({:.2} - {:.2}) | {:.2} Gbit/s ({:.2} - {:.2}) | {:.3} |",
            p / 1e9,
            pmin / 1e9,
            pmax / 1e9,
            o / 1e9,
            omin / 1e9,
            omax / 1e9,
            o / p
        );
    }
    println!();
    println!(
        "Rules an established packet traverses in mangle, either direction: PREROUTING's jump,"
    );
    println!(
        "`! --ctstate NEW -g MULTIWAN_RESTORE` and the CONNMARK restore: 3. Counters of the last runs:"
    );
    for line in counters
        .lines()
        .filter(|l| l.contains("--comment \"multiwan "))
    {
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
        let chain = line.split_whitespace().nth(2).unwrap_or("?");
        println!("- {chain} `{name}`: {packets} packets");
    }
    println!();
}
