//! What a distribution needs from the crate: full metadata, the licence texts, a release
//! profile chosen deliberately, and package metadata that ships what the docs promise.

fn manifest() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap()
}

#[test]
fn the_crate_carries_its_metadata_and_licence() {
    let m = manifest();
    for line in [
        "license = \"MIT OR Apache-2.0\"",
        "rust-version = ",
        "description = ",
        "readme = \"README.md\"",
    ] {
        assert!(m.contains(line), "Cargo.toml lacks {line}");
    }
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.len() > 1000, "{file} is missing or empty");
    }
}

#[test]
fn the_release_profile_and_the_package_ship_what_the_docs_promise() {
    let m = manifest();
    let release = m
        .split("[profile.release]")
        .nth(1)
        .expect("a release profile")
        .split("\n[")
        .next()
        .unwrap();
    for setting in [
        "lto = \"fat\"",
        "codegen-units = 1",
        "strip = true",
        "panic = \"abort\"",
    ] {
        assert!(release.contains(setting), "release profile lacks {setting}");
    }
    let deb = m
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("deb metadata");
    for asset in [
        "\"usr/sbin/\"",
        "etc/multiwan/multiwan.yaml",
        "usr/share/man/man8/",
        "usr/share/man/man5/",
        "bash-completion/completions/multiwan",
        "zsh/vendor-completions/_multiwan",
        "fish/vendor_completions.d/multiwan.fish",
        "grafana/multiwan-dashboard.json",
    ] {
        assert!(deb.contains(asset), "the package lacks {asset}");
    }
    assert!(deb.contains("depends = \"$auto, iptables, conntrack, iproute2\""));
    assert!(deb.contains("recommends = \"ipset, keepalived, conntrackd, dnsmasq\""));
    let prerm = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/debian/prerm"
    ))
    .unwrap();
    assert!(
        prerm.contains("multiwan cleanup") && prerm.contains("stop multiwan.service"),
        "removal stops the daemon, then cleans up"
    );
}
