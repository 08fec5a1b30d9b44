//! Tests of the ipset adapter's pure half: what `ipset save` says, and the restore script
//! that brings the kernel to the plan.

use super::*;
use std::net::IpAddr;

/// The kernel's sets written as `ipset save` prints them, for the tests (the daemon reads
/// them over netlink: [`super::dump`]).
fn parse_save(save: &str) -> HashMap<String, Present> {
    let mut out: HashMap<String, Present> = HashMap::new();
    for line in save.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, rest @ ..] if is_ours(name) => {
                out.entry(name.to_string()).or_default().timeout = option(rest, "timeout");
            }
            ["add", name, member, rest @ ..] if is_ours(name) => {
                // ipset prints single addresses without /32 or /128.
                let net = member
                    .parse::<IpNet>()
                    .or_else(|_| member.parse::<IpAddr>().map(IpNet::from));
                let Ok(net) = net else { continue };
                let set = out.entry(name.to_string()).or_default();
                match option(rest, "timeout") {
                    Some(left) if left > 0 => {
                        set.learned.insert(net, left);
                    }
                    _ => {
                        set.permanent.insert(net);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The number after `key` in an ipset option list.
fn option(words: &[&str], key: &str) -> Option<u32> {
    let at = words.iter().position(|w| *w == key)?;
    words.get(at + 1)?.parse().ok()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn fixed(name: &str, nets: &[&str]) -> IpSet {
    IpSet::fixed(
        crate::plan::Family::Ipv4,
        name,
        Resolved::Known(nets.iter().map(|n| net(n)).collect()),
    )
}

fn learned(name: &str, timeout: u32) -> IpSet {
    IpSet {
        learned_timeout: Some(timeout),
        ..fixed(name, &[])
    }
}

#[test]
fn a_missing_set_is_created_and_filled() {
    let sets = vec![
        IpSet::fixed(
            crate::plan::Family::Ipv4,
            "multiwan_connected",
            Resolved::Unknown("connected".into()),
        ),
        fixed("multiwan_s", &["10.1.0.0/16"]),
        learned("multiwan_tv.dns", 3600),
    ];
    assert_eq!(
        script(&sets, &HashMap::new()),
        "create multiwan_connected hash:net family inet -exist\n\
         create multiwan_s hash:net family inet -exist\n\
         create multiwan_tv.dns hash:net family inet timeout 3600 -exist\n\
         add multiwan_s 10.1.0.0/16 -exist\n"
    );
    // The members of a set that is created come after every create, as one step.
    let ops = plan_ops(&sets.iter().collect::<Vec<_>>(), &HashMap::new());
    assert_eq!(ops.len(), 4);
    assert!(matches!(&ops[3], Op::Add { name, members, .. }
        if name == "multiwan_s" && members == &[(net("10.1.0.0/16"), None)]));
}

#[test]
fn a_set_whose_content_differs_is_swapped() {
    let sets = vec![fixed("multiwan_s", &["10.1.0.0/16"])];
    let mut current =
        parse_save("create multiwan_s hash:net family inet\nadd multiwan_s 10.1.0.0/16\n");
    assert_eq!(script(&sets, &current), "");
    current.get_mut("multiwan_s").unwrap().permanent.clear();
    assert_eq!(
        script(&sets, &current),
        "create multiwan_.new hash:net family inet -exist\n\
         add multiwan_.new 10.1.0.0/16 -exist\n\
         swap multiwan_.new multiwan_s\n\
         destroy multiwan_.new\n"
    );
    // A temporary set left over by an update that died goes first.
    current.insert(TEMP.into(), Present::default());
    assert!(script(&sets, &current).starts_with("destroy multiwan_.new\ncreate multiwan_.new"));
}

#[test]
fn learned_members_are_never_removed() {
    let save = "create multiwan_tv.dns hash:net family inet hashsize 1024 maxelem 65536 timeout 3600 bucketsize 12 initval 0x1\n\
                add multiwan_tv.dns 198.51.100.7 timeout 3512\n\
                add multiwan_tv.dns 192.0.2.9 timeout 12\n";
    let current = parse_save(save);
    let tv = &current["multiwan_tv.dns"];
    assert_eq!(tv.timeout, Some(3600));
    assert_eq!(tv.learned[&net("198.51.100.7/32")], 3512);
    let sets = vec![learned("multiwan_tv.dns", 3600)];
    assert_eq!(script(&sets, &current), "");
    assert_eq!(
        counts(&sets.iter().collect::<Vec<_>>(), &current)["multiwan_tv.dns"],
        Count::Learned(2)
    );
}

#[test]
fn a_new_timeout_swaps_and_keeps_what_was_learned() {
    let save = "create multiwan_tv.dns hash:net family inet timeout 3600\n\
                add multiwan_tv.dns 198.51.100.7 timeout 3000\n\
                add multiwan_tv.dns 192.0.2.9 timeout 12\n";
    let current = parse_save(save);
    let shorter = vec![learned("multiwan_tv.dns", 600)];
    assert_eq!(
        script(&shorter, &current),
        "create multiwan_.new hash:net family inet timeout 600 -exist\n\
         add multiwan_.new 192.0.2.9/32 timeout 12 -exist\n\
         add multiwan_.new 198.51.100.7/32 timeout 600 -exist\n\
         swap multiwan_.new multiwan_tv.dns\n\
         destroy multiwan_.new\n"
    );
}

#[test]
fn a_fixed_set_that_had_a_timeout_is_swapped_without_it() {
    let current = parse_save(
        "create multiwan_s hash:net family inet timeout 60\nadd multiwan_s 10.1.0.0/16 timeout 40\n",
    );
    let sets = vec![fixed("multiwan_s", &["10.1.0.0/16"])];
    assert_eq!(
        script(&sets, &current),
        "create multiwan_.new hash:net family inet -exist\n\
         add multiwan_.new 10.1.0.0/16 -exist\n\
         swap multiwan_.new multiwan_s\n\
         destroy multiwan_.new\n"
    );
}

#[test]
fn ipv6_sets_have_their_own_family_and_temporary_set() {
    let six = IpSet::fixed(
        crate::plan::Family::Ipv6,
        "multiwan6_s",
        Resolved::Known(vec![net("2001:db8:10::/64")]),
    );
    let current = parse_save(
        "create multiwan6_s hash:net family inet6 hashsize 1024 maxelem 65536\nadd multiwan6_s 2001:db8::5\n",
    );
    assert_eq!(
        current["multiwan6_s"].permanent,
        BTreeSet::from([net("2001:db8::5/128")])
    );
    assert_eq!(
        script(&[six], &current),
        "create multiwan6_.new hash:net family inet6 -exist\n\
         add multiwan6_.new 2001:db8:10::/64 -exist\n\
         swap multiwan6_.new multiwan6_s\n\
         destroy multiwan6_.new\n"
    );
}

#[test]
fn names_the_sets_a_step_creates_or_swaps_in() {
    let swap = Op::Swap("multiwan_.new".into(), "multiwan_s".into());
    assert!(swap.names("multiwan_s"));
    assert!(!swap.names("multiwan_.new"));
    let create = Op::create("multiwan_t", &fixed("multiwan_t", &[]));
    assert!(create.names("multiwan_t"));
    assert!(!create.names("multiwan_s2"));
    assert!(!Op::Destroy("multiwan_s".into()).names("multiwan_s"));
}

#[test]
fn a_large_set_is_created_with_room_for_its_members() {
    let many: Vec<IpNet> = (0..5000u32)
        .map(|i| IpNet::from(IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + i))))
        .collect();
    let big = IpSet::fixed(
        crate::plan::Family::Ipv4,
        "multiwan_big",
        Resolved::Known(many),
    );
    assert_eq!(
        big.create_line("multiwan_big"),
        "create multiwan_big hash:net family inet hashsize 8192 -exist"
    );
    // Small sets keep the kernel's default.
    assert_eq!(
        fixed("multiwan_s", &["10.1.0.0/16"]).create_line("multiwan_s"),
        "create multiwan_s hash:net family inet -exist"
    );
}
