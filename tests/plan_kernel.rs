//! The rendered plan is accepted by the real kernel tools (in a throwaway namespace).

mod lab;

#[test]
fn every_profile_plan_passes_iptables_restore_test() {
    if !lab::available() {
        return;
    }
    let lab = lab::Lab::new(1);
    let root = env!("CARGO_MANIFEST_DIR");
    for profile in [
        "home-dual-wan",
        "failover-only",
        "branch-office",
        "pppoe-lte",
    ] {
        let cfg = format!("{root}/profiles/{profile}.yaml");
        for down in [None, Some("fibre")] {
            let mut args = vec!["plan", "-c", &cfg];
            if let (Some(d), "home-dual-wan") = (down, profile) {
                args.extend(["--down", d]);
            }
            let ipset = lab.multiwan_ok(&[args.clone(), vec!["--format", "ipset"]].concat());
            let path = lab.file("sets", &ipset);
            lab.exec_ok(
                "rt",
                &[
                    "ipset",
                    "restore",
                    "-exist",
                    "-file",
                    path.to_str().unwrap(),
                ],
            );
            let rules = lab.multiwan_ok(&[args, vec!["--format", "iptables"]].concat());
            let path = lab.file("rules", &rules);
            let out = lab.exec(
                "rt",
                &[
                    "iptables-restore",
                    "--noflush",
                    "--test",
                    path.to_str().unwrap(),
                ],
            );
            assert!(
                out.status.success(),
                "{profile}: {}\n{rules}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
