//! keepalived.conf and conntrackd.conf rendered from the HA profiles, checked on their text.

use std::path::PathBuf;

use super::render::*;
use crate::config::Config;

fn profile(name: &str) -> Config {
    let text = match name {
        "ha-pair-r1.yaml" => include_str!("../../profiles/ha-pair-r1.yaml"),
        "ha-pair-r2.yaml" => include_str!("../../profiles/ha-pair-r2.yaml"),
        "home-dual-wan.yaml" => include_str!("../../profiles/home-dual-wan.yaml"),
        other => panic!("no profile {other} in this test"),
    };
    crate::config::parse(text, name).expect("profile loads")
}

fn ctx() -> Context {
    Context {
        binary: PathBuf::from("/usr/sbin/multiwan"),
        config_path: PathBuf::from("/etc/multiwan/multiwan.yaml"),
        sync_address: "10.60.0.1".parse().unwrap(),
    }
}

#[test]
fn keepalived_holds_every_shared_address_and_notifies_multiwan() {
    let text = keepalived(&profile("ha-pair-r1.yaml"), &ctx()).unwrap();
    for line in [
        "    enable_script_security",
        "    interface lan0",
        "    virtual_router_id 51",
        "    priority 150",
        "    advert_int 0.2",
        "    preempt_delay 30",
        "        10.50.0.1/24 dev lan0",
        "        100.70.1.1/24 dev wan1",
        "        100.70.2.1/24 dev wan2",
        "        wan1 weight -100",
        "    notify_master \"/usr/sbin/multiwan ha notify master --config /etc/multiwan/multiwan.yaml\"",
        "    notify_backup \"/usr/sbin/multiwan ha notify backup --config /etc/multiwan/multiwan.yaml\"",
        "    notify_fault \"/usr/sbin/multiwan ha notify fault --config /etc/multiwan/multiwan.yaml\"",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(text.matches('{').count(), text.matches('}').count());
    // Adverts go on the LAN, not over the sync link: cutting the sync link must not make
    // both nodes master.
    assert!(!text.contains("unicast"), "{text}");
    assert!(!text.contains("sync0"), "{text}");
}

#[test]
fn conntrackd_syncs_over_the_sync_link_and_ignores_the_routers_own_addresses() {
    let text = conntrackd(&profile("ha-pair-r1.yaml"), &ctx()).unwrap();
    for line in [
        "    Mode FTFW {",
        "        IPv4_address 10.60.0.1",
        "        IPv4_Destination_Address 10.60.0.2",
        "        Interface sync0",
        "        Path /run/multiwan/conntrackd-r1.ctl",
        "    LockFile /run/multiwan/conntrackd-r1.lock",
        "            IPv4_address 10.50.0.1",
        "            IPv4_address 127.0.0.1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Connections NATed to a shared uplink address are exactly what must be synced.
    assert!(!text.contains("100.70.1.1"), "{text}");
    assert_eq!(text.matches('{').count(), text.matches('}').count());
}

#[test]
fn advert_interval_is_written_in_seconds() {
    let d = std::time::Duration::from_millis;
    assert_eq!(centiseconds(d(200)), "0.2");
    assert_eq!(centiseconds(d(1000)), "1");
    assert_eq!(centiseconds(d(1250)), "1.25");
    assert_eq!(centiseconds(d(50)), "0.05");
}

#[test]
fn a_path_keepalived_would_split_is_refused() {
    let mut c = ctx();
    c.config_path = PathBuf::from("/etc/multi wan.yaml");
    let err = keepalived(&profile("ha-pair-r1.yaml"), &c).unwrap_err();
    assert!(err.to_string().contains("contains a space"), "{err}");
}

#[test]
fn a_config_without_ha_is_not_rendered() {
    let err = keepalived(&profile("home-dual-wan.yaml"), &ctx()).unwrap_err();
    assert!(matches!(err, RenderError::NotHa));
}

#[test]
fn the_two_profile_nodes_agree() {
    let d = crate::ha::peer::differences(&profile("ha-pair-r1.yaml"), &profile("ha-pair-r2.yaml"));
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn swapped_ids_and_a_different_router_id_are_reported() {
    let r1 = profile("ha-pair-r1.yaml");
    let mut r2 = profile("ha-pair-r2.yaml");
    r2.uplinks[0].id = 2;
    r2.uplinks[1].id = 1;
    r2.ha.as_mut().unwrap().virtual_router_id = 52;
    let d = crate::ha::peer::differences(&r1, &r2);
    assert!(
        d.iter()
            .any(|l| l.contains("virtual_router_id: 51 here, 52 on the peer")),
        "{d:#?}"
    );
    assert!(
        d.iter()
            .any(|l| l.contains("plan differs") && l.contains("0x100")),
        "{d:#?}"
    );
}

#[test]
fn the_same_node_twice_is_reported() {
    let r1 = profile("ha-pair-r1.yaml");
    let d = crate::ha::peer::differences(&r1, &r1);
    assert!(
        d.iter().any(|l| l.contains("both nodes are named r1")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|l| l.contains("both files name 10.60.0.2")),
        "{d:#?}"
    );
}
