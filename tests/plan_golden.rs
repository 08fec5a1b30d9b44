//! Golden tests: the rendered plan of every profile, with every uplink up and with each one
//! down, must match `tests/golden/`. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test plan_golden`, then review the diff.

use std::path::{Path, PathBuf};

use multiwan::health::Health;
use multiwan::plan::{Observed, Plan};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs at line {}:\n  expected: {:?}\n  actual:   {:?}\n(UPDATE_GOLDEN=1 regenerates it)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

fn profiles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_profile_matches_its_golden_plan() {
    for profile in profiles() {
        let config = multiwan::files::load_config(&profile).unwrap();
        let plan = Plan::build(&config, &Observed::default());
        check_golden(&format!("{}.txt", stem(&profile)), &plan.human());
        for u in &config.uplinks {
            let mut observed = Observed::default();
            observed.health.insert(u.name.clone(), Health::Down);
            let plan = Plan::build(&config, &observed);
            check_golden(
                &format!("{}.down-{}.txt", stem(&profile), u.name),
                &plan.human(),
            );
        }
    }
}

#[test]
fn json_plan_is_parseable_and_complete() {
    let config = multiwan::files::load_config(&root().join("profiles/home-dual-wan.yaml")).unwrap();
    let plan = Plan::build(&config, &Observed::default());
    let v: serde_json::Value = serde_json::to_value(&plan).unwrap();
    for key in [
        "uplinks", "balance", "policies", "mangle", "nat", "jumps", "ip_rules", "routes", "sets",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["uplinks"][0]["mark"], 0x100);
    assert_eq!(v["uplinks"][1]["address"], "<address of wan2>");
}
