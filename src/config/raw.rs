//! The file's shape as serde reads it: every field optional where the schema has a default,
//! unknown keys refused. Meaning (ranges, references, defaults) is checked in `validate`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{IfAddr, Net, OneOrMany, Percent, PortRange, Span};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUplink {
    pub name: String,
    pub interface: String,
    pub gateway: Option<String>,
    pub gateway6: Option<String>,
    pub nat6: Option<super::Nat6>,
    pub prefix6: Option<String>,
    pub weight: Option<u32>,
    pub tier: Option<u32>,
    pub id: Option<u32>,
    pub probe: Option<RawProbe>,
    pub flush_on_down: Option<bool>,
    pub flush_on_recovery: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub targets: Option<OneOrMany<RawTarget>>,
    pub interval: Option<Span>,
    pub standby_interval: Option<Span>,
    pub timeout: Option<Span>,
    pub quorum: Option<u32>,
    pub down_after: Option<u32>,
    pub up_after: Option<u32>,
    pub degraded: Option<RawDegraded>,
}

/// A probe target: an address (ICMP), or a mapping with a method.
#[derive(Debug, Clone)]
pub enum RawTarget {
    Address(std::net::IpAddr),
    Spec(RawTargetSpec),
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_norway::Value;
        match Value::deserialize(d)? {
            Value::String(s) => s.trim().parse().map(RawTarget::Address).map_err(|_| {
                D::Error::custom(format!(
                    "`{s}` is not an address; other methods are written as a mapping, like {{host: 1.1.1.1, method: dns, query: example.com}}"
                ))
            }),
            v @ Value::Mapping(_) => RawTargetSpec::deserialize(v)
                .map(RawTarget::Spec)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "a target is an address or a mapping (host, method, port, query, url, expect)",
            )),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetSpec {
    pub host: Option<std::net::IpAddr>,
    pub method: Option<RawMethod>,
    pub port: Option<u16>,
    pub query: Option<String>,
    pub url: Option<String>,
    pub expect: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawMethod {
    Icmp,
    Tcp,
    Dns,
    Http,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDegraded {
    pub loss: Option<Percent>,
    pub latency: Option<Span>,
    pub weight_factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub uplink: Option<String>,
    pub action: Option<RawAction>,
    pub fallback: Option<super::Fallback>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawAction {
    Main,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub source: Option<OneOrMany<Net>>,
    pub destination: Option<OneOrMany<Net>>,
    pub protocol: Option<super::Protocol>,
    pub source_ports: Option<OneOrMany<PortRange>>,
    pub destination_ports: Option<OneOrMany<PortRange>>,
    pub destination_set: Option<String>,
}

/// A set written as a mapping: static members, domains a resolver fills it from, or both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    pub members: Option<OneOrMany<Net>>,
    pub domains: Option<OneOrMany<String>>,
    pub timeout: Option<Span>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNat {
    pub masquerade: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub listen: Option<String>,
    pub token_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetfilter {
    pub backend: Option<super::model::NetfilterBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub socket: Option<PathBuf>,
    pub group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub name: String,
    pub protocol: Option<super::Protocol>,
    pub port: Option<PortRange>,
    pub uplinks: Option<OneOrMany<String>>,
    /// Read item by item in validation, so each backend's errors have their own position.
    pub to: Option<OneOrMany<serde_norway::Value>>,
    pub balance: Option<super::ForwardBalance>,
    pub health_check: Option<RawHealthCheck>,
    pub hairpin: Option<bool>,
}

/// A backend: an address, or `{address, port, weight}`.
#[derive(Debug)]
pub struct RawBackend {
    pub address: std::net::Ipv4Addr,
    pub port: Option<PortRange>,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendFull {
    address: std::net::Ipv4Addr,
    port: Option<PortRange>,
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(s) => s
                .parse()
                .map(|address| RawBackend {
                    address,
                    port: None,
                    weight: None,
                })
                .map_err(|_| D::Error::custom(format!("`{s}` is not an IPv4 address"))),
            v => {
                let full = RawBackendFull::deserialize(v).map_err(D::Error::custom)?;
                Ok(RawBackend {
                    address: full.address,
                    port: full.port,
                    weight: full.weight,
                })
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub kind: Option<super::CheckKind>,
    pub interval: Option<Span>,
    pub timeout: Option<Span>,
    pub down_after: Option<u32>,
    pub up_after: Option<u32>,
}

/// `ha`: this node of a VRRP pair. Required fields are checked in `ha::ha` so that each
/// missing one gets its own message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHa {
    pub node: Option<String>,
    pub peer: Option<Ipv4Addr>,
    pub sync_interface: Option<String>,
    pub virtual_router_id: Option<u32>,
    pub priority: Option<u32>,
    pub advert_interval: Option<Span>,
    pub preempt_delay: Option<Span>,
    pub lan_addresses: Option<OneOrMany<IfAddr>>,
    pub uplink_addresses: Option<std::collections::BTreeMap<String, IfAddr>>,
    pub config_dir: Option<PathBuf>,
}
