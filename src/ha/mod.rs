//! High availability: two multiwan routers as a VRRP pair. keepalived moves the shared
//! addresses, conntrackd copies connection state; multiwan renders both daemons' configs
//! from its own, so the nodes cannot disagree, and drives conntrackd on role changes.

pub mod conntrackd;
pub mod peer;
pub mod render;

pub use render::{Context, RenderError, conntrackd_runtime, ha_of};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// This node's VRRP state, as keepalived reports it through `ha notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Backup,
    Fault,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Master, Role::Backup, Role::Fault];

    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
            Role::Fault => "fault",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("`{s}` is not a role (master, backup, fault)"))
    }
}

#[cfg(test)]
mod tests;
