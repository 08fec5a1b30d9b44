//! The address family of rules, sets and routes. Everything is IPv4 today; the rule
//! builders and the kernel adapters take the family as a parameter, so that IPv6 adds data
//! (its own tables, sets and rules) rather than code paths.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// The iptables front end of this family (`iptables`, `ip6tables`).
    pub fn iptables(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }

    pub fn iptables_save(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables-save",
            Family::Ipv6 => "ip6tables-save",
        }
    }

    pub fn iptables_restore(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables-restore",
            Family::Ipv6 => "ip6tables-restore",
        }
    }

    /// ipset's name for it (`family inet`).
    pub fn ipset(self) -> &'static str {
        match self {
            Family::Ipv4 => "inet",
            Family::Ipv6 => "inet6",
        }
    }

    /// `AF_INET` / `AF_INET6`, as netlink messages carry it.
    pub fn af(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }
}
