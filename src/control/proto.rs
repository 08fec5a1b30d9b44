//! What travels over the control socket: the request words and the status document
//! (`multiwan status --json`), whose field names are stable (docs/operations.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::MarkLayout;
use crate::ha::Role;
use crate::ha::conntrackd::SyncCounters;

pub const STATUS: &str = "status";

/// What `multiwan status --json` prints. Field names are stable; see docs/operations.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub config: String,
    pub started_unix: f64,
    /// The daemon's process id (`multiwan reload` signals it).
    #[serde(default)]
    pub pid: u32,
    /// True when no uplink is up and `when_all_down` decides.
    pub all_down: bool,
    pub uplinks: Vec<UplinkStatus>,
    pub policies: Vec<PolicyStatus>,
    pub forwards: Vec<ForwardStatus>,
    /// multiwan's ipsets and their member counts, as the last reconcile read them.
    #[serde(default)]
    pub sets: Vec<SetStatus>,
    /// Present on a node of an HA pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
    /// How the last reload went (absent until one happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadStatus>,
    /// What needs the admin's attention now: the firewall drops what multiwan routes, a
    /// route that cannot be installed yet, a sysctl to fix.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub at_unix: f64,
    /// Why it failed: the file's errors, or what the kernel refused.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    pub node: String,
    pub peer: String,
    pub role: Role,
    pub since_unix: f64,
    /// Whether this node holds the shared addresses right now.
    pub holds_addresses: bool,
    /// conntrackd's counters; None when it could not be asked.
    pub sync: Option<SyncCounters>,
    pub sync_error: Option<String>,
    /// Where conntrackd's config is (the agent fills it; not part of the JSON).
    #[serde(skip)]
    pub conntrackd_config: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetStatus {
    /// The ipset's name: `multiwan_<set>` for a config set, `multiwan_<set>.dns` for the
    /// addresses a resolver adds to it.
    pub name: String,
    /// The members multiwan keeps (0 in a resolver's set).
    pub members: usize,
    /// In a resolver's set: the addresses that have not aged out yet (else None).
    pub learned: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardStatus {
    pub name: String,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `address` or `address:port`
    pub target: String,
    /// The last checks succeeded (true when not checked).
    pub up: bool,
    /// Receives new connections (every backend does when all are down).
    pub in_rotation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub name: String,
    pub interface: String,
    /// up | degraded | down
    pub state: String,
    pub since_unix: f64,
    pub link_up: bool,
    pub weight: u32,
    pub effective_weight: f64,
    /// Share of new balanced connections, 0-100.
    pub share_percent: f64,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_percent: f64,
    pub probes_sent: u64,
    pub probes_lost: u64,
    pub probes_late: u64,
    pub last_transition: Option<LastTransition>,
    pub address: String,
    pub gateway: String,
    pub mark: u32,
    pub table: u32,
    /// Connections in conntrack carrying this uplink's mark.
    pub connections: Option<u64>,
    /// Their bytes, both directions (needs `net.netfilter.nf_conntrack_acct=1`).
    pub bytes: Option<u64>,
    /// Probed every `standby_interval`: it carries nothing now.
    #[serde(default)]
    pub standby: bool,
    /// The uplink's IPv6, judged and balanced on its own (absent: no IPv6 on it). The
    /// fields above are IPv4's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<FamilyStatus>,
}

/// One address family of an uplink: the IPv4 fields of [`UplinkStatus`], for IPv6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyStatus {
    /// up | degraded | down
    pub state: String,
    pub since_unix: f64,
    pub effective_weight: f64,
    pub share_percent: f64,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_percent: f64,
    pub probes_sent: u64,
    pub probes_lost: u64,
    pub probes_late: u64,
    pub last_transition: Option<LastTransition>,
    pub address: String,
    pub gateway: String,
    pub connections: Option<u64>,
    pub bytes: Option<u64>,
    #[serde(default)]
    pub standby: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastTransition {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub at_unix: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub name: String,
    /// What matching connections get now, e.g. `pinned to isp1`, `isp1 is down: balanced
    /// instead` (the one text form of a decision, as `plan` and `explain` print it).
    pub target: String,
    /// New connections it matched since its rules were installed (both families; null
    /// for a policy kept as set members, or before the first count).
    #[serde(default)]
    pub hits: Option<u64>,
}

/// A request to the agent, answered on the oneshot.
pub type StatusRequest = oneshot::Sender<(Status, MarkLayout)>;

/// `ha-role ROLE [PROBLEM]`: keepalived's notify script telling the agent its VRRP role
/// and what went wrong on the way, if anything (root only).
pub const HA_ROLE: &str = "ha-role";

/// `ipv6-prefix UPLINK PREFIX|none`: a DHCPv6-PD client's hook handing over the prefix the
/// ISP delegated (root only).
pub const IPV6_PREFIX: &str = "ipv6-prefix";

/// What a control-socket client asks the agent.
#[derive(Debug)]
pub enum Request {
    Status(StatusRequest),
    /// The role, and the conntrackd steps that failed (keepalived discards the notify
    /// script's output, so the agent logs them).
    HaRole(Role, Option<String>),
    /// An uplink's delegated IPv6 prefix (None: withdrawn); answered with what was done,
    /// or why not.
    Prefix6 {
        uplink: String,
        prefix: Option<ipnet::Ipv6Net>,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// The arguments of an `ipv6-prefix` request: an uplink name and a prefix or `none`.
pub fn parse_prefix6(text: &str) -> Result<(String, Option<ipnet::Ipv6Net>), String> {
    let (uplink, prefix) = text
        .trim()
        .split_once(' ')
        .ok_or("give an uplink and a prefix (or none)")?;
    if let Err(e) = crate::config::names::check_name(uplink, 15) {
        return Err(format!("uplink: {e}"));
    }
    let prefix = match prefix.trim() {
        "none" => None,
        p => Some(
            p.parse::<ipnet::Ipv6Net>()
                .ok()
                .filter(|n| (1..=64).contains(&n.prefix_len()))
                .ok_or_else(|| {
                    format!(
                        "`{}` is not an IPv6 prefix of /1 to /64",
                        crate::config::printable(p)
                    )
                })?
                .trunc(),
        ),
    };
    Ok((uplink.to_string(), prefix))
}
