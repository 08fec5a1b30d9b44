//! Planning decisions: tiers, degraded weights, fallbacks, when_all_down.

use multiwan::config::{self, Config};
use multiwan::health::Health;
use multiwan::plan::{Balance, Decision, Observed, Plan, Target};

fn config(yaml: &str) -> Config {
    config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

const THREE: &str = "
lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 10.1.0.1, weight: 60}
  - {name: b, interface: wan2, gateway: 10.2.0.1, weight: 40,
     probe: {degraded: {loss: 20%, weight_factor: 0.5}}}
  - {name: c, interface: wan3, gateway: 10.3.0.1, tier: 2}
policies:
  - {name: pin-b, match: {source: 10.0.0.5}, uplink: b}
  - {name: pin-a-strict, match: {source: 10.0.0.6}, uplink: a, fallback: drop}
";

fn with(states: &[(&str, Health)]) -> Observed {
    let mut o = Observed::default();
    for (n, h) in states {
        o.health.insert(n.to_string(), *h);
    }
    o
}

fn shares(plan: &Plan) -> Vec<(String, f64)> {
    plan.balance
        .members()
        .iter()
        .map(|m| (m.uplink.clone(), (m.share * 1000.0).round() / 1000.0))
        .collect()
}

#[test]
fn best_tier_carries_everything() {
    let c = config(THREE);
    let plan = Plan::build(&c, &Observed::default());
    assert_eq!(shares(&plan), vec![("a".into(), 0.6), ("b".into(), 0.4)]);
    assert_eq!(plan.uplink("c").unwrap().share, 0.0);
}

#[test]
fn degraded_weight_is_scaled() {
    let c = config(THREE);
    let plan = Plan::build(&c, &with(&[("b", Health::Degraded)]));
    // 60 vs 40 * 0.5 = 20
    assert_eq!(shares(&plan), vec![("a".into(), 0.75), ("b".into(), 0.25)]);
    // Degraded still counts as up: pins stay.
    assert_eq!(
        plan.policies[0].decision,
        Decision::Pinned { uplink: "b".into() }
    );
}

#[test]
fn lower_tier_takes_over_when_the_best_is_down() {
    let c = config(THREE);
    let plan = Plan::build(&c, &with(&[("a", Health::Down), ("b", Health::Down)]));
    assert!(matches!(plan.balance, Balance::Weighted { tier: 2, .. }));
    assert_eq!(shares(&plan), vec![("c".into(), 1.0)]);
    assert_eq!(
        plan.policies[0].decision,
        Decision::FallbackBalance { uplink: "b".into() }
    );
    assert_eq!(
        plan.policies[1].decision,
        Decision::FallbackDrop { uplink: "a".into() }
    );
    let policy_chain = plan.mangle.chain("MULTIWAN_POLICY").unwrap();
    assert_eq!(
        policy_chain.rules[0].target,
        Target::Jump("MULTIWAN_BALANCE".into())
    );
    assert_eq!(policy_chain.rules[1].target, Target::Drop);
}

#[test]
fn all_down_balance_all_is_the_all_up_plan() {
    let c = config(THREE);
    let down = with(&[
        ("a", Health::Down),
        ("b", Health::Down),
        ("c", Health::Down),
    ]);
    let plan = Plan::build(&c, &down);
    let up = Plan::build(&c, &Observed::default());
    assert!(plan.all_down);
    assert_eq!(plan.iptables_restore(), up.iptables_restore());
}

#[test]
fn all_down_unreachable_marks_new_connections_unreachable() {
    let c = config(&format!("{THREE}when_all_down: unreachable\n"));
    let down = with(&[
        ("a", Health::Down),
        ("b", Health::Down),
        ("c", Health::Down),
    ]);
    let plan = Plan::build(&c, &down);
    assert_eq!(plan.balance, Balance::Unreachable);
    let balance = plan.mangle.chain("MULTIWAN_BALANCE").unwrap();
    assert_eq!(balance.rules.len(), 1);
    assert_eq!(
        balance.rules[0].target,
        Target::SetMark {
            value: 0xfe00,
            mask: 0xff00
        }
    );
    // Refused in FORWARD: a TCP reset at once (an ICMP answer would be rate-limited).
    let text = plan.iptables_restore();
    assert!(
        text.contains("*filter\n:MULTIWAN_FORWARD - [0:0]\n"),
        "{text}"
    );
    assert!(text.contains("-A MULTIWAN_FORWARD -p tcp -m mark --mark 0xfe00/0xff00 -m comment --comment \"multiwan all uplinks down\" -j REJECT --reject-with tcp-reset"), "{text}");
    assert!(
        text.contains("-j REJECT --reject-with icmp-net-unreachable"),
        "{text}"
    );
    assert!(
        plan.jumps
            .iter()
            .any(|j| j.table == "filter" && j.from == "FORWARD")
    );
}

/// Without `when_all_down: unreachable`, the filter table holds only the acceptance of
/// replies to the router's own connections (INPUT): nothing in FORWARD.
#[test]
fn balance_all_touches_filter_only_for_the_routers_replies() {
    let c = config(THREE);
    let plan = Plan::build(&c, &Observed::default());
    let text = plan.iptables_restore();
    assert!(!text.contains("MULTIWAN_FORWARD"), "{text}");
    let filter: Vec<_> = plan.jumps.iter().filter(|j| j.table == "filter").collect();
    assert_eq!(filter.len(), 1, "{filter:?}");
    assert_eq!(
        (filter[0].from.as_str(), filter[0].to.as_str()),
        ("INPUT", "MULTIWAN_INPUT")
    );
    for wan in ["wan1", "wan2", "wan3"] {
        assert!(
            text.contains(&format!("-A MULTIWAN_INPUT -i {wan} -m conntrack --ctstate ESTABLISHED --ctdir REPLY -m comment --comment \"multiwan replies to the router\" -j ACCEPT")),
            "{text}"
        );
    }
}

#[test]
fn initial_state_down_starts_with_uplinks_down() {
    let c = config(&format!(
        "{THREE}initial_state: down\nwhen_all_down: unreachable\n"
    ));
    let plan = Plan::build(&c, &Observed::default());
    assert_eq!(plan.balance, Balance::Unreachable);
}

#[test]
fn explicit_ids_set_marks_tables_and_priorities() {
    let c = config(
        "lan_interfaces: lan0
uplinks:
  - {name: a, interface: wan1, gateway: 10.1.0.1, id: 7}
table_base: 200
rule_priority_base: 2000
mark_mask: 0xf0000
",
    );
    let plan = Plan::build(&c, &Observed::default());
    let u = plan.uplink("a").unwrap();
    assert_eq!((u.mark, u.table), (0x70000, 207));
    let rules: Vec<String> = plan.ip_rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        vec![
            "2000: from all lookup main suppress_prefixlength 0",
            "2107: from all fwmark 0x70000/0xf0000 lookup 207",
            "2207: from <address of wan1> lookup 207",
        ]
    );
}

#[test]
fn only_lan_packets_get_a_packet_mark() {
    // The reply-direction trap: nothing arriving on an uplink may get a packet mark.
    let c = config(THREE);
    let plan = Plan::build(&c, &Observed::default());
    let pre = plan.mangle.chain("MULTIWAN_PREROUTING").unwrap();
    for rule in &pre.rules {
        assert!(
            !matches!(
                rule.target,
                Target::SetMark { .. } | Target::RestoreMark { .. }
            ),
            "{rule:?}"
        );
    }
    let text = plan.iptables_restore();
    assert!(text.contains("-A MULTIWAN_PREROUTING -i wan2 -m conntrack --ctstate NEW -m comment --comment \"multiwan inbound b\" -j CONNMARK --set-xmark 0x200/0xff00"));
    assert!(text.contains(
        "-A MULTIWAN_PREROUTING -i lan0 -m comment --comment \"multiwan lan\" -g MULTIWAN_LAN"
    ));
}

#[test]
fn many_sources_go_into_one_set_and_one_rule() {
    let hosts: Vec<String> = (1..=10).map(|i| format!("10.0.5.{i}")).collect();
    let c = config(&format!(
        "lan_interfaces: [lan0]
uplinks:
  - {{name: a, interface: wan1, gateway: 10.1.0.1}}
  - {{name: b, interface: wan2, gateway: 10.2.0.1}}
policies:
  - {{name: few, match: {{source: [10.0.6.1, 10.0.6.2]}}, uplink: a}}
  - {{name: many, match: {{source: [{}], protocol: tcp}}, uplink: b}}
",
        hosts.join(", ")
    ));
    let plan = Plan::build(&c, &Observed::default());
    let rules = &plan.mangle.chain("MULTIWAN_POLICY").unwrap().rules;
    assert_eq!(rules.len(), 3, "two rules for two sources, one for ten");
    let text = plan.iptables_restore();
    assert!(text.contains("-A MULTIWAN_POLICY -p tcp -m set --match-set multiwan_p1.src src -m mark --mark 0x0/0xff00"), "{text}");
    let set = plan
        .sets
        .iter()
        .find(|s| s.name == "multiwan_p1.src")
        .expect("the policy's set");
    assert_eq!(set.networks.known().unwrap().len(), 10);
    // explain evaluates the set from the plan.
    let packet = multiwan::explain::Packet {
        src: "10.0.5.7".parse().unwrap(),
        dst: "192.0.2.1".parse().unwrap(),
        protocol: multiwan::config::Protocol::Tcp,
        sport: None,
        dport: Some(80),
        in_interface: "lan0".into(),
    };
    assert_eq!(
        multiwan::explain::explain(&c, &plan, &packet).verdict,
        "uplink b"
    );
}

#[test]
fn an_ha_node_snats_to_shared_addresses_and_hairpins_them() {
    let c = config(
        "
lan_interfaces: [lan0]
uplinks:
  - {name: a, interface: wan1, gateway: 100.70.1.254, id: 1}
  - {name: b, interface: wan2, gateway: 100.70.2.254, id: 2}
port_forwards:
  - {name: web, protocol: tcp, port: 443, to: [10.50.0.20]}
ha:
  node: r1
  peer: 10.60.0.2
  sync_interface: sync0
  virtual_router_id: 51
  lan_addresses: [10.50.0.1/24]
  uplink_addresses: {a: 100.70.1.1/24}
",
    );
    let mut o = Observed::default();
    o.addresses
        .insert("a".into(), "100.70.1.2".parse().unwrap());
    o.addresses
        .insert("b".into(), "100.70.2.2".parse().unwrap());
    o.connected = Some(Vec::new());
    let plan = Plan::build(&c, &o);
    let wan = plan
        .sets
        .iter()
        .find(|s| s.name == multiwan::plan::WAN_ADDRESSES_SET)
        .expect("hairpin set");
    let known = wan.networks.known().expect("online");
    for a in ["100.70.1.2/32", "100.70.2.2/32", "100.70.1.1/32"] {
        assert!(known.contains(&a.parse().unwrap()), "{a} in {known:?}");
    }
    let nat = plan.nat.restore_text();
    assert!(nat.contains("-o wan1 -m addrtype ! --src-type LOCAL -m comment --comment \"multiwan ha nat a\" -j SNAT --to-source 100.70.1.1"), "{nat}");
    assert!(
        !nat.contains("--comment \"multiwan ha nat b\""),
        "b has no shared address: {nat}"
    );
    let mangle = plan.mangle.restore_text();
    // Right after established packets leave for the restore: the first rule a NEW one meets.
    let guard = mangle
        .lines()
        .filter(|l| l.starts_with("-A MULTIWAN_PREROUTING"))
        .nth(1)
        .unwrap();
    assert!(
        guard.contains("! --tcp-flags FIN,SYN,RST,ACK SYN") && guard.ends_with("-j DROP"),
        "{guard}"
    );
}

/// Pins kept in sets are explained like rules: the policy that matched, by name, and the
/// set it matched through; and the first match in config order wins.
#[test]
fn explain_names_the_pin_policy_behind_a_set() {
    let mut text = String::from(
        "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1}\n  - {name: b, interface: wan2}\npolicies:\n  - {name: host, match: {source: 10.0.0.11}, uplink: b}\n  - {name: net, match: {source: 10.0.0.0/24}, uplink: a}\n",
    );
    for i in 1..=4 {
        text.push_str(&format!(
            "  - {{name: x{i}, match: {{source: 10.9.0.{i}}}, uplink: a}}\n"
        ));
    }
    let c = config::parse(&text, "t.yaml").unwrap();
    let plan = Plan::build(&c, &Observed::default());
    assert_eq!(plan.pins.len(), 1);
    let packet = |src: &str| multiwan::explain::Packet {
        src: src.parse().unwrap(),
        dst: "192.0.2.9".parse().unwrap(),
        protocol: multiwan::config::Protocol::Tcp,
        sport: None,
        dport: Some(443),
        in_interface: "lan0".into(),
    };
    let e = multiwan::explain::explain(&c, &plan, &packet("10.0.0.11"));
    assert_eq!(e.verdict, "uplink b");
    assert!(
        e.text()
            .contains("policy host matches: pinned to b (through set multiwan_r0.u2b)"),
        "{}",
        e.text()
    );
    let e = multiwan::explain::explain(&c, &plan, &packet("10.0.0.12"));
    assert_eq!(e.verdict, "uplink a");
    assert!(e.text().contains("policy net matches"), "{}", e.text());
}

const DUAL: &str = "
lan_interfaces: [lan0]
lan_prefix6: 'fd00:10::/64'
uplinks:
  - {name: a, interface: wan1, gateway: 10.1.0.1, gateway6: 'fe80::1', weight: 60}
  - {name: b, interface: wan2, gateway: 10.2.0.1, gateway6: 'fe80::2', nat6: npt, prefix6: '2001:db8:200::/56', weight: 40}
  - {name: c, interface: wan3, gateway: 10.3.0.1, gateway6: auto, nat6: none, tier: 2}
  - {name: d, interface: wan4, gateway: 10.4.0.1, tier: 2}
policies:
  - {name: both, match: {source: [10.0.0.5, 'fd00:10::5']}, uplink: b}
  - {name: v4-only, match: {destination: 192.0.2.0/24}, uplink: a}
  - {name: to-d, match: {source: 'fd00:10::9'}, uplink: d}
";

fn ipv6_rules(plan: &Plan) -> Vec<String> {
    plan.v6
        .as_ref()
        .expect("an IPv6 plan")
        .iptables_restore()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ipv6_is_planned_from_the_uplinks_and_policies_that_carry_it() {
    let c = config(DUAL);
    let mut observed = Observed::default();
    observed
        .v6_mut()
        .prefixes
        .insert("c".into(), "2001:db8:300::/56".parse().unwrap());
    let plan = Plan::build(&c, &observed);
    let v6 = plan.v6.as_ref().unwrap();
    let names: Vec<&str> = v6.uplinks.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "d has no IPv6");
    // a and b share 60/40; c (nat6: none) never carries balanced IPv6.
    assert_eq!(shares(v6), [("a".to_string(), 0.6), ("b".to_string(), 0.4)]);
    let rules = ipv6_rules(&plan);
    let has = |needle: &str| rules.iter().any(|r| r.contains(needle));
    assert!(has(
        "-s fd00:10::5/128 -m mark --mark 0x0/0xff00 -m comment --comment \"multiwan policy both\""
    ));
    assert!(
        !has("policy v4-only"),
        "an IPv4-only policy matches no IPv6"
    );
    assert!(has(
        "-A MULTIWAN_POSTROUTING -o wan1 -m comment --comment \"multiwan nat6 a\" -j MASQUERADE"
    ));
    assert!(has(
        "-A MULTIWAN_POSTROUTING -s fd00:10::/64 -o wan2 -m comment --comment \"multiwan npt b\" -j NETMAP --to 2001:db8:200::/56"
    ));
    assert!(!has("nat6 c"), "nat6: none translates nothing");
    assert!(has(
        "-A MULTIWAN_LAN -s 2001:db8:300::/56 -m comment --comment \"multiwan prefix c\" -j MARK --set-xmark 0x300/0xff00"
    ));
    // A policy pinned to an uplink without IPv6 falls back for IPv6.
    let to_d = v6.policies.iter().find(|p| p.name == "to-d").unwrap();
    assert_eq!(
        to_d.decision,
        Decision::FallbackBalance { uplink: "d".into() }
    );
    // The IPv4 plan is not touched by IPv6 networks.
    let v4 = plan.iptables_restore();
    assert!(!v4.contains("fd00"), "{v4}");
    assert!(v4.contains("-s 10.0.0.5/32"), "{v4}");
}

#[test]
fn ipv6_connected_set_keeps_link_local_and_multicast_on_the_main_table() {
    let c = config(DUAL);
    let mut observed = Observed {
        connected: Some(vec!["10.0.0.0/24".parse().unwrap()]),
        ..Default::default()
    };
    observed.v6_mut().connected = Some(vec!["fd00:10::/64".parse().unwrap()]);
    let plan = Plan::build(&c, &observed);
    let sets = plan.ipset_restore();
    for member in ["fd00:10::/64", "fe80::/10", "ff00::/8"] {
        assert!(
            sets.contains(&format!("add multiwan6_connected {member} -exist")),
            "{sets}"
        );
    }
    assert!(sets.contains("create multiwan6_connected hash:net family inet6 -exist"));
}

#[test]
fn ipv6_health_is_its_own() {
    let c = config(DUAL);
    let mut observed = Observed::default();
    observed.v6_mut().health.insert("a".into(), Health::Down);
    let plan = Plan::build(&c, &observed);
    assert_eq!(
        shares(&plan),
        [("a".to_string(), 0.6), ("b".to_string(), 0.4)],
        "IPv4 keeps both"
    );
    assert_eq!(
        shares(plan.v6.as_ref().unwrap()),
        [("b".to_string(), 1.0)],
        "IPv6 moves off a"
    );
    // With a and b down, c's tier is next, but c (nat6: none) carries only its prefix.
    observed.v6_mut().health.insert("b".into(), Health::Down);
    let plan = Plan::build(&c, &observed);
    assert!(
        shares(plan.v6.as_ref().unwrap()).is_empty(),
        "{:?}",
        plan.v6.as_ref().unwrap().balance
    );
}
