//! Which conntrack entries to delete after a change of health: pure, so it is tested
//! without a kernel. Entries go only **after** the new rules are in place, so a connection
//! that re-dials is already balanced over the live uplinks.

use std::fmt;

use crate::config::Config;
use crate::health::{Health, Track, Transition};
use crate::plan::{Balance, Family, Plan};

/// Delete the conntrack entries of `family` whose mark, under `mask`, is `mark`. An uplink's
/// IPv6 failing leaves its IPv4 connections alone, and the other way round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub family: Family,
    pub mark: u32,
    pub mask: u32,
    /// Only the entries NATed to this address (their reply direction's destination).
    pub reply_dst: Option<std::net::IpAddr>,
    /// Whose entries these are, for the log.
    pub what: String,
    pub reason: FlushReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushReason {
    /// The uplink went down and has `flush_on_down`.
    Down { uplink: String },
    /// A metered backup stopped carrying traffic (`flush_on_recovery`).
    BetterUplinkBack { uplink: String },
    /// Connections refused while every uplink was down would stay refused.
    UplinkBack,
    /// This node became the HA master while the uplink was down.
    HaTakeover { uplink: String },
    /// The uplink's delegated IPv6 prefix changed: connections translated to the old one
    /// are dead.
    PrefixChanged { uplink: String },
    /// The uplink's address changed (a reconnect, a renewal): connections NATed to the old
    /// one are dead.
    AddressChanged {
        uplink: String,
        old: std::net::IpAddr,
    },
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushReason::Down { uplink } => write!(f, "{uplink} went down (flush_on_down)"),
            FlushReason::BetterUplinkBack { uplink } => write!(
                f,
                "a better uplink is back; {uplink} no longer carries traffic (flush_on_recovery)"
            ),
            FlushReason::UplinkBack => f.write_str("an uplink is back after all were down"),
            FlushReason::HaTakeover { uplink } => write!(
                f,
                "this node took over as HA master while {uplink} was down"
            ),
            FlushReason::PrefixChanged { uplink } => write!(
                f,
                "the IPv6 prefix of {uplink} changed: its translated connections are dead"
            ),
            FlushReason::AddressChanged { uplink, old } => write!(
                f,
                "{uplink} no longer has {old}: connections NATed to it are dead"
            ),
        }
    }
}

/// The HA takeover's deletions: every down uplink with `flush_on_down`, since the old
/// master may not have moved their connections off.
pub fn takeover_flushes(
    config: &Config,
    health: &std::collections::BTreeMap<Track, Health>,
) -> Vec<Flush> {
    health
        .iter()
        .filter(|(_, h)| **h == Health::Down)
        .filter_map(|(track, _)| {
            let u = config.uplink(&track.uplink).filter(|u| u.flush_on_down)?;
            Some(Flush {
                family: track.family,
                reply_dst: None,
                mark: config.marks.uplink(u.id),
                mask: config.marks.mask,
                what: track.to_string(),
                reason: FlushReason::HaTakeover {
                    uplink: track.to_string(),
                },
            })
        })
        .collect()
}

/// The deletions a change of health calls for, family by family.
pub fn flushes(config: &Config, old: &Plan, new: &Plan, transitions: &[Transition]) -> Vec<Flush> {
    Family::ALL
        .into_iter()
        .filter_map(|f| Some((f, old.of(f)?, new.of(f)?)))
        .flat_map(|(f, old, new)| {
            let ts: Vec<&Transition> = transitions.iter().filter(|t| t.family == f).collect();
            flushes_in(config, f, old, new, &ts)
        })
        .collect()
}

fn flushes_in(
    config: &Config,
    family: Family,
    old: &Plan,
    new: &Plan,
    transitions: &[&Transition],
) -> Vec<Flush> {
    let mask = config.marks.mask;
    let mut out = Vec::new();
    for t in transitions.iter().filter(|t| t.to == Health::Down) {
        let Some(u) = config.uplink(&t.uplink).filter(|u| u.flush_on_down) else {
            continue;
        };
        out.push(Flush {
            family,
            reply_dst: None,
            mark: config.marks.uplink(u.id),
            mask,
            what: t.track().to_string(),
            reason: FlushReason::Down {
                uplink: t.track().to_string(),
            },
        });
    }
    // A metered backup that stopped carrying traffic because a better uplink is back.
    for u in config.uplinks.iter().filter(|u| u.flush_on_recovery) {
        let (Some(before), Some(after)) = (old.uplink(&u.name), new.uplink(&u.name)) else {
            continue;
        };
        if before.share > 0.0 && after.share == 0.0 && after.health != Health::Down {
            out.push(Flush {
                family,
                reply_dst: None,
                mark: before.mark,
                mask,
                what: u.name.clone(),
                reason: FlushReason::BetterUplinkBack {
                    uplink: u.name.clone(),
                },
            });
        }
    }
    // Connections refused while everything was down would stay refused.
    if old.balance == Balance::Unreachable && new.balance != Balance::Unreachable {
        out.push(Flush {
            family,
            reply_dst: None,
            mark: config.marks.unreachable(),
            mask,
            what: "unreachable".into(),
            reason: FlushReason::UplinkBack,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Observed;

    fn config(extra: &str) -> Config {
        crate::config::parse(
            &format!(
                "lan_interfaces: [lan0]
uplinks:
  - {{name: dsl, interface: wan1}}
  - {{name: lte, interface: wan2, tier: 2, flush_on_recovery: true}}
  - {{name: keep, interface: wan3, flush_on_down: false}}
{extra}"
            ),
            "t.yaml",
        )
        .unwrap()
    }

    fn plan(c: &Config, down: &[&str]) -> Plan {
        let mut o = Observed::default();
        for d in down {
            o.health.insert(d.to_string(), Health::Down);
        }
        Plan::build(c, &o)
    }

    fn down(name: &str) -> Transition {
        Transition {
            uplink: name.into(),
            family: Family::Ipv4,
            from: Health::Up,
            to: Health::Down,
            cause: crate::health::Cause::LinkDown,
            loss: 1.0,
            rtt: None,
        }
    }

    #[test]
    fn a_dead_uplink_loses_only_its_own_entries() {
        let c = config("");
        let f = flushes(&c, &plan(&c, &[]), &plan(&c, &["dsl"]), &[down("dsl")]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].mark, f[0].mask), (0x100, 0xff00));
    }

    #[test]
    fn flush_on_down_false_keeps_entries() {
        let c = config("");
        assert!(flushes(&c, &plan(&c, &[]), &plan(&c, &["keep"]), &[down("keep")]).is_empty());
    }

    #[test]
    fn metered_backup_is_flushed_when_the_primary_returns() {
        let c = config("");
        let all_primary_down = plan(&c, &["dsl", "keep"]);
        let back = plan(&c, &["keep"]);
        let up = Transition {
            to: Health::Up,
            from: Health::Down,
            ..down("dsl")
        };
        let f = flushes(&c, &all_primary_down, &back, &[up]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].what.as_str(), f[0].mark), ("lte", 0x200));
    }

    #[test]
    fn unreachable_entries_go_when_an_uplink_returns() {
        let c = config("when_all_down: unreachable\n");
        let f = flushes(
            &c,
            &plan(&c, &["dsl", "lte", "keep"]),
            &plan(&c, &["lte", "keep"]),
            &[],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].mark, 0xfe00);
    }
}
