//! The two address families. Everything family-specific that is a name or a number lives
//! here (tool names, ipset families, ICMP names, set prefixes), so the builders and
//! adapters take a family as data.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn of_addr(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    /// `ipv4` / `ipv6`: the word in logs, hooks (`MULTIWAN_FAMILY`), status and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

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

    /// Every ipset of ours of this family starts with this. The IPv6 prefix is not an
    /// extension of the IPv4 one, so a config name can never produce the other's names.
    pub const fn set_prefix(self) -> &'static str {
        match self {
            Family::Ipv4 => "multiwan_",
            Family::Ipv6 => "multiwan6_",
        }
    }

    /// iptables' name for ICMP of this family.
    pub fn icmp(self) -> &'static str {
        match self {
            Family::Ipv4 => "icmp",
            Family::Ipv6 => "ipv6-icmp",
        }
    }

    /// What REJECT answers a non-TCP connection with when no uplink is up.
    pub fn unreachable_reply(self) -> &'static str {
        match self {
            Family::Ipv4 => "icmp-net-unreachable",
            Family::Ipv6 => "icmp6-no-route",
        }
    }

    pub fn holds(self, net: &IpNet) -> bool {
        Family::of_net(net) == self
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
