//! `ha check-peer`: the two nodes must mean the same by every mark, table and rule, or a
//! connection synced from the peer would be routed by the wrong uplink after a failover.

use crate::config::{Config, Ha};
use crate::plan::{Observed, Plan};

/// Every way the two nodes' configs disagree where they must agree; empty when they match.
pub fn differences(mine: &Config, theirs: &Config) -> Vec<String> {
    let (Some(a), Some(b)) = (&mine.ha, &theirs.ha) else {
        return vec!["both files need an `ha` section".into()];
    };
    let mut out = ha_differences(a, b);
    out.extend(plan_differences(mine, theirs));
    out
}

fn ha_differences(a: &Ha, b: &Ha) -> Vec<String> {
    let mut out = Vec::new();
    let mut same = |what: &str, x: String, y: String| {
        if x != y {
            out.push(format!("ha.{what}: {x} here, {y} on the peer"));
        }
    };
    same(
        "virtual_router_id",
        a.virtual_router_id.to_string(),
        b.virtual_router_id.to_string(),
    );
    same(
        "advert_interval",
        format!("{:?}", a.advert_interval),
        format!("{:?}", b.advert_interval),
    );
    same(
        "lan_addresses",
        format!("{:?}", a.lan_addresses),
        format!("{:?}", b.lan_addresses),
    );
    same(
        "uplink_addresses",
        format!("{:?}", a.uplink_addresses),
        format!("{:?}", b.uplink_addresses),
    );
    if a.node == b.node {
        out.push(format!("ha.node: both nodes are named {}", a.node));
    }
    if a.peer == b.peer {
        out.push(format!(
            "ha.peer: both files name {} as the peer: each names the other's sync address",
            a.peer
        ));
    }
    out
}

/// The plans with nothing observed (uplinks up, addresses unknown) must be identical:
/// uplink ids, marks, tables, rule priorities, balance and every rule.
fn plan_differences(mine: &Config, theirs: &Config) -> Vec<String> {
    let a = Plan::build(mine, &Observed::default()).human();
    let b = Plan::build(theirs, &Observed::default()).human();
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(""),
            b.get(i).copied().unwrap_or(""),
        );
        if x != y {
            out.push(format!("plan differs:\n  here: {x}\n  peer: {y}"));
            if out.len() == 5 {
                out.push("(more plan lines differ)".into());
                break;
            }
        }
    }
    out
}
