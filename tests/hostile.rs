//! Hostile and careless input to `check`, `plan` and `explain`, run as the real binary:
//! each case states what must happen, and every run must end within 2 s, below 200 MB of
//! memory, without a panic, with every rejection at FILE:LINE:COLUMN. Large inputs are made
//! here rather than committed. A property test mutates the example profiles at random and
//! holds every mutant to the same rules; the mutants that pass `check` must install in a
//! namespace (`apply`, then `cleanup`).

mod lab;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_multiwan");
const TIME_LIMIT: Duration = Duration::from_secs(2);
const RSS_LIMIT_KB: i64 = 200 * 1024;

/// What one run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
    max_rss_kb: i64,
}

/// Runs the binary and measures it (wall time, peak RSS from wait4's rusage).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn measured(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: waits for our own child; rusage is plain data the kernel fills.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        usage
    };
    let took = start.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Run {
        code,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
        took,
        max_rss_kb: usage.ru_maxrss,
    }
}

/// The rules every run of `check` obeys, whatever the input.
fn assert_well_behaved(run: &Run, file: &Path, what: &str) {
    assert!(
        !run.stderr.contains("panicked") && run.code != 101,
        "{what}: panicked:\n{}",
        run.stderr
    );
    assert!(run.took < TIME_LIMIT, "{what}: took {:?}", run.took);
    assert!(
        run.max_rss_kb < RSS_LIMIT_KB,
        "{what}: {} kB of memory",
        run.max_rss_kb
    );
    assert!(
        !run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'),
        "{what}: an escape sequence reached the terminal"
    );
    if run.code == 0 {
        return;
    }
    assert_eq!(run.code, 1, "{what}: exit code\n{}", run.stderr);
    let prefix = format!("{}:", file.display());
    let lines = std::fs::read_to_string(file)
        .map(|t| t.lines().count() + 1)
        .unwrap_or(usize::MAX);
    for line in run.stderr.lines() {
        if line.ends_with("nothing was changed") || line.starts_with("... and ") {
            continue;
        }
        let pos = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{what}: an error line without FILE:LINE:COLUMN: {line:?}"));
        let mut parts = pos.splitn(3, ':');
        let l: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let c: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(
            l >= 1 && l <= lines && c >= 1,
            "{what}: bad position in {line:?}"
        );
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mw-hostile-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BASE: &str = "lan_interfaces: [lan0]
uplinks:
  - {name: isp1, interface: wan1, gateway: 100.64.1.1}
  - {name: isp2, interface: wan2, gateway: 100.64.2.1}
";

/// Checks `text` and returns the run (already held to the rules).
fn check(dir: &Scratch, name: &str, text: &str) -> (Run, PathBuf) {
    let file = dir.file(name, text);
    let run = measured(&["check", "-c", file.to_str().unwrap()]);
    assert_well_behaved(&run, &file, name);
    (run, file)
}

fn expect_error(dir: &Scratch, name: &str, text: &str, needle: &str) -> Run {
    let (run, _) = check(dir, name, text);
    assert_eq!(run.code, 1, "{name} must be refused:\n{}", run.stdout);
    assert!(
        run.stderr.contains(needle),
        "{name}: expected {needle:?} in:\n{}",
        run.stderr
    );
    run
}

#[test]
fn unicode_keys_are_reported_not_panicked_on() {
    let dir = Scratch::new("unicode");
    for (i, key) in ["uplínks", "日本", "aéé", "ü"].iter().enumerate() {
        expect_error(
            &dir,
            &format!("u{i}.yaml"),
            &format!("{BASE}{key}: 1\n"),
            &format!("unknown setting `{key}`"),
        );
    }
}

#[test]
fn deep_nesting_and_huge_files_are_refused_before_parsing() {
    let dir = Scratch::new("deep");
    for size in [80 * 1024, 1024 * 1024] {
        let text = format!("{BASE}a: {}\n", "[".repeat(size));
        let run = expect_error(&dir, "deep.yaml", &text, "nested 33 levels deep");
        assert!(run.stderr.contains("deep.yaml:5:"), "{}", run.stderr);
    }
    let block: String = (0..40)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    expect_error(&dir, "block.yaml", &format!("{BASE}{block}"), "levels deep");
    let huge = format!("{BASE}# {}\n", "x".repeat(5 << 20));
    expect_error(&dir, "huge.yaml", &huge, "at most 4 MiB");
}

#[test]
fn thousands_of_clashing_forwards_give_one_error_quickly() {
    let dir = Scratch::new("forwards");
    let mut same_port = format!("{BASE}port_forwards:\n");
    let mut no_port = same_port.clone();
    for i in 0..4000 {
        same_port.push_str(&format!(
            "  - {{name: f{i}, protocol: tcp, port: 80, to: [10.0.0.2]}}\n"
        ));
        no_port.push_str(&format!(
            "  - {{name: f{i}, protocol: tcp, to: [10.0.0.2]}}\n"
        ));
    }
    let run = expect_error(
        &dir,
        "same.yaml",
        &same_port,
        "4000 forwards claim overlapping tcp ports on isp1, isp2",
    );
    assert!(run.stderr.contains("and 3997 more"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "one error and the count");
    let run = expect_error(&dir, "noport.yaml", &no_port, "missing `port`");
    assert!(run.stderr.contains("4000 errors: nothing was changed"));
    assert!(
        run.stderr.lines().count() <= 102,
        "at most 100 errors printed, then a count"
    );
}

#[test]
fn a_policy_that_would_expand_to_millions_of_rules_is_refused() {
    let dir = Scratch::new("expand");
    let sources: Vec<String> = (1..=4).map(|i| format!("10.0.0.{i}")).collect();
    let destinations: Vec<String> = (1..=4).map(|i| format!("192.0.2.{i}")).collect();
    let ports: Vec<String> = (1..=2000).map(|p| (p * 2).to_string()).collect();
    let text = format!(
        "{BASE}policies:\n  - name: huge\n    match: {{source: [{}], destination: [{}], protocol: tcp, source_ports: [{}], destination_ports: [{}]}}\n    uplink: isp1\n",
        sources.join(", "),
        destinations.join(", "),
        ports.join(", "),
        ports.join(", ")
    );
    expect_error(&dir, "expand.yaml", &text, "policy `huge` expands to");
}

#[test]
fn what_the_kernel_cannot_install_is_refused_by_check() {
    let dir = Scratch::new("uninstallable");
    expect_error(
        &dir,
        "zero.yaml",
        &format!("{BASE}sets:\n  all: [0.0.0.0/0]\n"),
        "sets.all[0]: 0.0.0.0/0 cannot be a set member",
    );
    let members: Vec<String> = (0..70_000)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    expect_error(
        &dir,
        "big.yaml",
        &format!("{BASE}sets:\n  big: [{}]\n", members.join(", ")),
        "70000 networks: a set holds at most 65536",
    );
}

#[test]
fn control_characters_and_long_values_are_escaped_and_cut() {
    let dir = Scratch::new("escapes");
    let run = expect_error(
        &dir,
        "ansi.yaml",
        &format!("{BASE}\"\\e[2J\\e[Hoops\\nfake.yaml:1:1: forged\": 1\n"),
        "unknown setting",
    );
    assert!(!run.stderr.contains("\nfake.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("\\u{1b}[2J"), "{}", run.stderr);
    let long = "y".repeat(3 << 20);
    let run = expect_error(
        &dir,
        "long.yaml",
        &format!("{BASE}  - {{name: {long}, interface: wan3}}\n"),
        "characters in all",
    );
    assert!(
        run.stderr.len() < 4096,
        "{} bytes of errors",
        run.stderr.len()
    );
}

#[test]
fn a_byte_order_mark_is_accepted_and_tags_are_refused() {
    let dir = Scratch::new("bom");
    let (run, _) = check(&dir, "bom.yaml", &format!("\u{feff}{BASE}"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    expect_error(
        &dir,
        "tag.yaml",
        &format!("{BASE}sysctl: !!python/object/apply:os.system [\"reboot\"]\n"),
        "YAML tags like",
    );
}

#[test]
fn plan_into_a_closed_pipe_ends_quietly_and_explain_refuses_unknown_uplinks() {
    let dir = Scratch::new("pipe");
    let file = dir.file("c.yaml", BASE);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' plan -c '{}' | head -1", file.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && stderr.is_empty(),
        "{stderr}"
    );
    let run = measured(&[
        "explain",
        "-c",
        file.to_str().unwrap(),
        "--from-wan",
        "nope",
        "--dport",
        "80",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--from-wan nope: no such uplink"),
        "{}",
        run.stderr
    );
}

/// A small, seedable generator (xorshift): the seed is printed, so a failing case can be
/// run again with `MULTIWAN_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PROFILES: &[&str] = &[
    "home-dual-wan.yaml",
    "failover-only.yaml",
    "branch-office.yaml",
    "ha-pair-r1.yaml",
];

/// One random edit of a config text: a character replaced (sometimes by a control or a
/// non-ASCII one), a line deleted, duplicated or swapped, a value or a bracket inserted.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let i = rng.below(lines.len());
    match rng.below(7) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let j = rng.below(lines.len());
            lines.swap(i, j);
        }
        3 => {
            let pool = [
                'x', '-', ':', '[', '{', '"', '\'', '#', '0', '9', 'é', '日', '\t', '\u{1b}', ' ',
                '/', '!', '&', '*',
            ];
            let c = pool[rng.below(pool.len())];
            let mut chars: Vec<char> = lines[i].chars().collect();
            let at = rng.below(chars.len() + 1);
            if at < chars.len() && rng.below(2) == 0 {
                chars[at] = c;
            } else {
                chars.insert(at.min(chars.len()), c);
            }
            lines[i] = chars.into_iter().collect();
        }
        4 => {
            let values = [
                "0",
                "-1",
                "99999999999",
                "0.0.0.0/0",
                "''",
                "[]",
                "{}",
                "null",
                "1e400",
                "wan1",
                "0xff00",
                "70000",
            ];
            let v = values[rng.below(values.len())];
            if let Some((k, _)) = lines[i].split_once(": ") {
                lines[i] = format!("{k}: {v}");
            }
        }
        5 => {
            let indent = " ".repeat(rng.below(8));
            lines.insert(
                i,
                format!(
                    "{indent}- {{name: m{}, interface: wan{}}}",
                    rng.below(100),
                    rng.below(5)
                ),
            );
        }
        _ => {
            let n = rng.below(40);
            lines[i].push_str(&"[".repeat(n));
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn random_mutants_of_the_profiles_are_refused_well_or_install() {
    let cases: usize = std::env::var("MULTIWAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("MULTIWAN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("mutation seed {seed} (MULTIWAN_FUZZ_SEED), {cases} cases (MULTIWAN_FUZZ_CASES)");
    let mut rng = Rng(seed);
    let dir = Scratch::new("mutants");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut accepted = Vec::new();
    for case in 0..cases {
        let profile = PROFILES[rng.below(PROFILES.len())];
        let mut text = std::fs::read_to_string(root.join(profile)).unwrap();
        for _ in 0..=rng.below(3) {
            text = mutate(&text, &mut rng);
        }
        let name = format!("m{case}.yaml");
        let (run, file) = check(&dir, &name, &text);
        if run.code == 0 {
            accepted.push(file);
        }
    }
    eprintln!("{} of {cases} mutants passed check", accepted.len());
    if !lab::available() {
        return;
    }
    let lab = lab::Lab::new(3);
    for file in accepted.iter().take(25) {
        let path = file.to_str().unwrap();
        let out = lab.multiwan(&["apply", "-c", path]);
        assert!(
            out.status.success(),
            "{path} passed check but does not install:\n{}\n{}",
            std::fs::read_to_string(file).unwrap(),
            String::from_utf8_lossy(&out.stderr)
        );
        lab.multiwan_ok(&["cleanup", "-c", path]);
    }
}
