//! Routing objects of the plan: ip rules and per-uplink routes, as plain values, and the
//! builders that make them from the config.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::{Observed, Resolved};
use crate::config::Config;

/// The kernel's main table.
pub const MAIN_TABLE: u32 = 254;

/// Metric of the `unreachable default` in each uplink table: far behind any real default
/// route, so it only answers when the uplink's route is gone (link down, no gateway).
pub const UNREACHABLE_METRIC: u32 = 4_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpRule {
    pub priority: u32,
    pub from: Option<Resolved<IpAddr>>,
    pub fwmark: Option<(u32, u32)>,
    pub action: RuleAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Lookup {
        table: u32,
        suppress_prefixlength: Option<u8>,
    },
    Unreachable,
}

impl fmt::Display for IpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: from ", self.priority)?;
        match &self.from {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("all")?,
        }
        if let Some((value, mask)) = self.fwmark {
            write!(f, " fwmark {value:#x}/{mask:#x}")?;
        }
        match self.action {
            RuleAction::Lookup {
                table,
                suppress_prefixlength,
            } => {
                if table == MAIN_TABLE {
                    f.write_str(" lookup main")?;
                } else {
                    write!(f, " lookup {table}")?;
                }
                if let Some(len) = suppress_prefixlength {
                    write!(f, " suppress_prefixlength {len}")?;
                }
                Ok(())
            }
            RuleAction::Unreachable => f.write_str(" unreachable"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutePlan {
    pub table: u32,
    pub kind: RouteKind,
    pub metric: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `default via GATEWAY dev INTERFACE`
    Default {
        gateway: Resolved<super::NextHop>,
        interface: String,
    },
    /// `unreachable default`
    Unreachable,
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Default {
                gateway: Resolved::Known(super::NextHop::Device),
                interface,
            } => write!(f, "default dev {interface} table {}", self.table)?,
            RouteKind::Default { gateway, interface } => write!(
                f,
                "default via {gateway} dev {interface} table {}",
                self.table
            )?,
            RouteKind::Unreachable => write!(f, "unreachable default table {}", self.table)?,
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

/// Offsets inside the rule priority range.
const PRIO_SUPPRESS_MAIN: u32 = 0;

/// fwmark rules come before the `from <address>` rules: the router's own traffic has its
/// source address chosen by main's route before OUTPUT marks it for another uplink.
const PRIO_FWMARK: u32 = 100;

const PRIO_FROM: u32 = 200;

/// Main's specific routes first (LAN, connected networks, a VPN), then the router's own
/// traffic by source address, then forwarded traffic by mark.
pub(super) fn ip_rules(config: &Config, observed: &Observed) -> Vec<IpRule> {
    let base = config.rule_priority_base;
    let mut out = vec![IpRule {
        priority: base + PRIO_SUPPRESS_MAIN,
        from: None,
        fwmark: None,
        action: RuleAction::Lookup {
            table: MAIN_TABLE,
            suppress_prefixlength: Some(0),
        },
    }];
    for u in &config.uplinks {
        out.push(IpRule {
            priority: base + PRIO_FROM + u.id,
            from: Some(observed.address(u)),
            fwmark: None,
            action: lookup(config.table(u)),
        });
    }
    for u in &config.uplinks {
        out.push(IpRule {
            priority: base + PRIO_FWMARK + u.id,
            from: None,
            fwmark: Some((config.marks.uplink(u.id), config.marks.mask)),
            action: lookup(config.table(u)),
        });
    }
    out.sort_by_key(|r| r.priority);
    out
}

fn lookup(table: u32) -> RuleAction {
    RuleAction::Lookup {
        table,
        suppress_prefixlength: None,
    }
}

pub(super) fn routes(config: &Config, observed: &Observed) -> Vec<RoutePlan> {
    let mut out = Vec::new();
    for u in &config.uplinks {
        let table = config.table(u);
        out.push(RoutePlan {
            table,
            kind: RouteKind::Default {
                gateway: observed.resolved_gateway(u),
                interface: u.interface.clone(),
            },
            metric: 0,
        });
        out.push(RoutePlan {
            table,
            kind: RouteKind::Unreachable,
            metric: UNREACHABLE_METRIC,
        });
    }
    out
}
