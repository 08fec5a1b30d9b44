//! keepalived.conf and conntrackd.conf for this node, rendered from the multiwan config.
//! Pure: the caller supplies what only the running system knows (paths, this node's sync
//! address), so the text is unit-tested as is.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::{Config, Ha};

/// The UDP port conntrackd's FTFW sync uses on the sync link.
pub const SYNC_PORT: u16 = 3780;

/// A node that loses an uplink's link lowers its VRRP priority by this much: more than the
/// usual gap between the two nodes (150 and 100), so a peer that still has every link takes
/// over, while a link both nodes lost (the ISP's modem is down)
/// changes nothing (keepalived keeps priorities at 1 or more).
pub const UPLINK_LINK_WEIGHT: i32 = -100;

/// What rendering needs besides the config.
#[derive(Debug, Clone)]
pub struct Context {
    /// The multiwan binary keepalived runs for `ha notify`.
    pub binary: PathBuf,
    /// The multiwan config file `ha notify` reads.
    pub config_path: PathBuf,
    /// This node's address on the sync interface.
    pub sync_address: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the config has no `ha` section: this router is not part of an HA pair")]
    NotHa,
    #[error("{what} `{path}` contains a space, quote or backslash: keepalived cannot run it")]
    UnsafePath { what: &'static str, path: PathBuf },
}

/// The `ha` section, or an error saying there is none.
pub fn ha_of(config: &Config) -> Result<&Ha, RenderError> {
    config.ha.as_ref().ok_or(RenderError::NotHa)
}

fn checked<'p>(what: &'static str, path: &'p Path) -> Result<&'p str, RenderError> {
    let unsafe_path = || RenderError::UnsafePath {
        what,
        path: path.to_path_buf(),
    };
    let text = path.to_str().ok_or_else(unsafe_path)?;
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(unsafe_path());
    }
    Ok(text)
}

/// Where conntrackd keeps its control socket and lock: beside multiwan's control socket,
/// named for the node, so two nodes sharing a file system (a lab) do not collide.
pub fn conntrackd_runtime(config: &Config, ha: &Ha, kind: &str) -> PathBuf {
    let dir = config
        .control
        .socket
        .parent()
        .map_or_else(|| PathBuf::from("/run/multiwan"), Path::to_path_buf);
    dir.join(format!("conntrackd-{}.{kind}", ha.node))
}

/// keepalived.conf: one VRRP instance holding every shared address, its adverts sent on
/// the (first) LAN segment, where the shared gateway address lives. The election then
/// follows what the LAN's hosts see: cutting the sync link leaves exactly one master (it
/// only stops conntrackd's sync), and a node whose LAN link dies goes to FAULT.
pub fn keepalived(config: &Config, ctx: &Context) -> Result<String, RenderError> {
    let ha = ha_of(config)?;
    let binary = checked("the multiwan binary", &ctx.binary)?;
    let config_path = checked("the config file", &ctx.config_path)?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by `multiwan ha render` for node {} from {config_path}.",
        ha.node
    );
    let _ = writeln!(
        o,
        "# Do not edit: change the multiwan config and render again."
    );
    let _ = writeln!(o, "global_defs {{");
    let _ = writeln!(o, "    router_id multiwan-{}", ha.node);
    let _ = writeln!(o, "    vrrp_version 3");
    // keepalived runs the notify commands only if no one but root can change them.
    let _ = writeln!(o, "    script_user root");
    let _ = writeln!(o, "    enable_script_security");
    let _ = writeln!(o, "}}\n");
    let _ = writeln!(o, "vrrp_instance multiwan {{");
    // Both nodes start as backup: the higher priority wins the election, and a returning
    // node waits `preempt_delay` (its conntrack resync) before taking over.
    let _ = writeln!(o, "    state BACKUP");
    let lan = config.lan_interfaces.first().map_or("lan0", String::as_str);
    let _ = writeln!(o, "    interface {lan}");
    let _ = writeln!(o, "    virtual_router_id {}", ha.virtual_router_id);
    let _ = writeln!(o, "    priority {}", ha.priority);
    let _ = writeln!(o, "    advert_int {}", centiseconds(ha.advert_interval));
    let _ = writeln!(o, "    preempt_delay {}", ha.preempt_delay.as_secs());
    let _ = writeln!(o, "    virtual_ipaddress {{");
    for (lan, addr) in config.lan_interfaces.iter().zip(&ha.lan_addresses) {
        let _ = writeln!(o, "        {addr} dev {lan}");
    }
    for u in &config.uplinks {
        if let Some(addr) = ha.uplink_addresses.get(&u.name) {
            let _ = writeln!(o, "        {addr} dev {}", u.interface);
        }
    }
    let _ = writeln!(o, "    }}");
    // A node without its LAN is useless as master: FAULT (the instance's own interface is
    // tracked anyway). An uplink's link only weighs.
    let _ = writeln!(o, "    track_interface {{");
    for other in config.lan_interfaces.iter().skip(1) {
        let _ = writeln!(o, "        {other}");
    }
    for u in &config.uplinks {
        let _ = writeln!(o, "        {} weight {UPLINK_LINK_WEIGHT}", u.interface);
    }
    let _ = writeln!(o, "    }}");
    for role in ["master", "backup", "fault"] {
        let _ = writeln!(
            o,
            "    notify_{role} \"{binary} ha notify {role} --config {config_path}\""
        );
    }
    let _ = writeln!(o, "}}");
    Ok(o)
}

/// keepalived wants seconds; VRRPv3 carries centiseconds.
pub(crate) fn centiseconds(d: std::time::Duration) -> String {
    let cs = d.as_millis() / 10;
    let text = format!("{}.{:02}", cs / 100, cs % 100);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// conntrackd.conf: FTFW (reliable) sync over the sync link, with an external cache the
/// backup commits when it becomes master.
pub fn conntrackd(config: &Config, ctx: &Context) -> Result<String, RenderError> {
    let ha = ha_of(config)?;
    let lock = conntrackd_runtime(config, ha, "lock");
    let socket = conntrackd_runtime(config, ha, "ctl");
    let lock = checked("the conntrackd lock file", &lock)?;
    let socket = checked("the conntrackd socket", &socket)?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by `multiwan ha render` for node {}. Do not edit.",
        ha.node
    );
    let _ = writeln!(o, "Sync {{");
    let _ = writeln!(o, "    Mode FTFW {{");
    let _ = writeln!(o, "        DisableExternalCache off");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "    UDP {{");
    let _ = writeln!(o, "        IPv4_address {}", ctx.sync_address);
    let _ = writeln!(o, "        IPv4_Destination_Address {}", ha.peer);
    let _ = writeln!(o, "        Port {SYNC_PORT}");
    let _ = writeln!(o, "        Interface {}", ha.sync_interface);
    let _ = writeln!(o, "        SndSocketBuffer 1249280");
    let _ = writeln!(o, "        RcvSocketBuffer 1249280");
    let _ = writeln!(o, "        Checksum on");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "}}\n");
    let _ = writeln!(o, "General {{");
    let _ = writeln!(o, "    HashSize 32768");
    let _ = writeln!(o, "    HashLimit 131072");
    let _ = writeln!(o, "    LogFile off");
    let _ = writeln!(o, "    Syslog on");
    // Debian's conntrackd.service is Type=notify; outside systemd this does nothing.
    let _ = writeln!(o, "    Systemd on");
    let _ = writeln!(o, "    LockFile {lock}");
    let _ = writeln!(o, "    UNIX {{\n        Path {socket}\n    }}");
    let _ = writeln!(o, "    NetlinkBufferSize 2097152");
    let _ = writeln!(o, "    NetlinkBufferSizeMaxGrowth 8388608");
    let _ = writeln!(o, "    NetlinkOverrunResync on");
    let _ = writeln!(o, "    Filter From Userspace {{");
    // ICMP is not synced: the router's own probes would flood the link, and a ping needs
    // no state to survive a failover.
    let _ = writeln!(
        o,
        "        Protocol Accept {{\n            TCP\n            UDP\n        }}"
    );
    // Connections to the routers themselves (the sync link, the LAN gateway address) stay
    // with the node that has them.
    let _ = writeln!(o, "        Address Ignore {{");
    let mut ignored = vec![Ipv4Addr::LOCALHOST, ctx.sync_address, ha.peer];
    ignored.extend(ha.lan_addresses.iter().map(|a| a.addr()));
    for a in ignored {
        let _ = writeln!(o, "            IPv4_address {a}");
    }
    let _ = writeln!(o, "        }}");
    let _ = writeln!(o, "    }}");
    let _ = writeln!(o, "}}");
    Ok(o)
}
