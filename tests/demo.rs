//! The README's "run it" commands: scripts/demo.sh and scripts/ha-demo.sh tell their steps
//! and exit 0 only if each behaved as shown. Run here with the binary under test and a lab
//! of their own, which they must remove.

mod lab;

/// Runs a demo script with the binary under test and the lab prefix `prefix`; returns its
/// output after checking that it succeeded, printed no escape codes and left no namespace.
fn run_demo(script: &str, prefix: &str) -> String {
    let out =
        std::process::Command::new(format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR")))
            .env("MULTIWAN_BINARY", env!("CARGO_BIN_EXE_multiwan"))
            .env("MULTIWAN_DEMO_PREFIX", prefix)
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when stdout is not a terminal"
    );
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    assert!(
        !String::from_utf8_lossy(&left).contains(prefix),
        "the demo removed its lab"
    );
    text
}

fn assert_contains_all(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
}

#[test]
fn demo_shows_all_five_steps_and_exits_0() {
    if !lab::available() {
        return;
    }
    let text = run_demo(
        "demo.sh",
        &format!("mwdemo{}", std::process::id() % 100_000),
    );
    assert_contains_all(
        &text,
        &[
            "== 1. new connections from the LAN spread over the ISPs by weight ==",
            "== 2. pinned traffic stays on its ISP ==",
            "== 3. ISP fibre fails",
            "== 4. ISP fibre comes back ==",
            "== 5. multiwan status ==",
            "All five steps behaved as shown.",
        ],
    );
    assert_eq!(text.matches("  ok: ").count(), 8, "{text}");
    assert!(text.contains("ok: over IPv6 too"), "{text}");
}

#[test]
fn ha_demo_shows_a_power_cut_and_a_failback_without_loss() {
    if !lab::available() {
        return;
    }
    let text = run_demo(
        "ha-demo.sh",
        &format!("mwhademo{}", std::process::id() % 10_000),
    );
    assert_contains_all(
        &text,
        &[
            "ok: r1 is master",
            "ok: 10 of 10 connections carry on through r2",
            "r1 is backup while it resyncs",
            "ok: 10 of 10 connections still answer after the failback",
            "Every step behaved as shown.",
        ],
    );
    assert_eq!(text.matches("  ok: ").count(), 6, "{text}");
}
