//! Builds a [`Plan`] from a config and what is observed. Pure: no I/O, no clock. Each
//! table and object kind has its own builder module; this one puts them together.

use super::balance;
use super::family;
use super::mangle::mangle;
use super::nat::{filter, jumps, nat};
use super::routing::{ip_rules, routes};
use super::sets::sets;
use super::*;
use crate::config::{Fallback, PolicyAction};

/// The IPv4 plan, with the IPv6 plan inside when the config has IPv6.
pub fn build(config: &Config, observed: &Observed) -> Plan {
    let mut plan = build_family(&family::view(config, Family::Ipv4), Family::Ipv4, observed);
    if family::has_ipv6(config) {
        let v6 = build_family(
            &family::view(config, Family::Ipv6),
            Family::Ipv6,
            &observed.of(Family::Ipv6),
        );
        plan.v6 = Some(Box::new(v6));
    }
    plan
}

/// One family's plan, from that family's view of the config and its observations.
fn build_family(config: &Config, family: Family, observed: &Observed) -> Plan {
    let observed_health: Vec<Health> = config
        .uplinks
        .iter()
        .map(|u| observed.health_of(config, u))
        .collect();
    let all_down = observed_health.iter().all(|h| *h == Health::Down);
    // An uplink that cannot be routed carries nothing, whatever its probes say.
    let states = balance::effective_health(config, |u| {
        if observed.routable(u) {
            observed.health_of(config, u)
        } else {
            Health::Down
        }
    });
    let balance = balance::balance(config, family, &states);
    let policies = decide_policies(config, &states);
    let forwards = forward::forward_plans(config, observed);
    let pins = pins::layout(config, family);
    Plan {
        family,
        marks: config.marks,
        all_down,
        uplinks: uplink_plans(config, observed, &observed_health, &balance),
        mangle: mangle(config, family, observed, &balance, &policies, &pins),
        nat: nat(config, family, observed, &forwards),
        filter: filter(config, family),
        jumps: jumps(config, family),
        ip_rules: ip_rules(config, observed),
        routes: routes(config, observed),
        sets: sets(config, family, observed, &pins),
        balance,
        policies,
        forwards,
        pins: pins.1,
        v6: None,
    }
}

fn uplink_plans(
    config: &Config,
    observed: &Observed,
    health: &[Health],
    balance: &Balance,
) -> Vec<UplinkPlan> {
    config
        .uplinks
        .iter()
        .zip(health)
        .map(|(u, h)| {
            let member = balance.members().iter().find(|m| m.uplink == u.name);
            UplinkPlan {
                name: u.name.clone(),
                interface: u.interface.clone(),
                id: u.id,
                mark: config.marks.uplink(u.id),
                table: config.table(u),
                tier: u.tier,
                health: *h,
                weight: u.weight,
                effective_weight: member.map_or(0.0, |m| m.weight),
                share: member.map_or(0.0, |m| m.share),
                address: observed.address(u),
                gateway: observed.resolved_gateway(u),
                routable: observed.routable(u),
            }
        })
        .collect()
}

fn decide_policies(config: &Config, states: &[Health]) -> Vec<PolicyPlan> {
    config
        .policies
        .iter()
        .map(|p| {
            let decision = match &p.action {
                PolicyAction::Main => Decision::Main,
                PolicyAction::Pin { uplink, fallback } => {
                    let idx = config.uplinks.iter().position(|u| &u.name == uplink);
                    let usable = idx.is_some_and(|i| states[i] != Health::Down);
                    let uplink = uplink.clone();
                    match (usable, fallback) {
                        (true, _) => Decision::Pinned { uplink },
                        (false, Fallback::Balance) => Decision::FallbackBalance { uplink },
                        (false, Fallback::Drop) => Decision::FallbackDrop { uplink },
                    }
                }
            };
            PolicyPlan {
                name: p.name.clone(),
                decision,
            }
        })
        .collect()
}
