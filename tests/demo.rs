//! The README's "run it" command: scripts/demo.sh tells its five steps and exits 0 only
//! if each behaved as shown. Run here with the binary under test and a lab of its own.

mod lab;

#[test]
fn demo_shows_all_five_steps_and_exits_0() {
    if !lab::available() {
        return;
    }
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
        .env("MULTIWAN_BINARY", env!("CARGO_BIN_EXE_multiwan"))
        .env(
            "MULTIWAN_DEMO_PREFIX",
            format!("mwdemo{}", std::process::id() % 100_000),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "== 1. new connections from the LAN spread over the ISPs by weight ==",
        "== 2. pinned traffic stays on its ISP ==",
        "== 3. ISP fibre fails",
        "== 4. ISP fibre comes back ==",
        "== 5. multiwan status ==",
        "All five steps behaved as shown.",
    ] {
        assert!(text.contains(step), "missing {step:?}:\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when stdout is not a terminal"
    );
    assert_eq!(text.matches("  ok: ").count(), 6, "{text}");
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    assert!(
        !String::from_utf8_lossy(&left).contains("mwdemo"),
        "the demo removed its lab"
    );
}

#[test]
fn ha_demo_shows_a_power_cut_and_a_failback_without_loss() {
    if !lab::available() {
        return;
    }
    let prefix = format!("mwhademo{}", std::process::id() % 10_000);
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ha-demo.sh"))
            .env("MULTIWAN_BINARY", env!("CARGO_BIN_EXE_multiwan"))
            .env("MULTIWAN_DEMO_PREFIX", &prefix)
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok: r1 is master",
        "ok: 10 of 10 connections carry on through r2",
        "r1 is backup while it resyncs",
        "ok: 10 of 10 connections still answer after the failback",
        "Every step behaved as shown.",
    ] {
        assert!(text.contains(line), "missing {line:?}:\n{text}");
    }
    assert_eq!(text.matches("  ok: ").count(), 6, "{text}");
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    assert!(
        !String::from_utf8_lossy(&left).contains(&prefix),
        "the demo removed its lab"
    );
}
