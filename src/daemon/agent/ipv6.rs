//! Prefixes handed over at run time: a DHCPv6-PD client's hook tells the agent which prefix
//! the ISP delegated (`multiwan ipv6 prefix UPLINK PREFIX`), and the translation (`npt`)
//! or source-prefix rule (`none`) follows at once.

use ipnet::Ipv6Net;
use tracing::info;

use super::Agent;
use crate::config::Nat6;
use crate::kernel::actor::Purpose;
use crate::plan::Family;
use crate::plan::flush::{Flush, FlushReason};

impl Agent {
    /// Takes (or withdraws) an uplink's prefix. With `npt`, the connections translated to
    /// the old prefix are dead (the ISP no longer routes it back): they are deleted, after
    /// the new translation is in place, so the LAN's hosts re-dial at once.
    pub(super) fn set_prefix6(
        &mut self,
        uplink: &str,
        prefix: Option<Ipv6Net>,
    ) -> Result<String, String> {
        let u = self
            .config
            .uplink(uplink)
            .ok_or_else(|| format!("no uplink named {uplink}"))?;
        let side = u
            .ipv6
            .as_ref()
            .ok_or_else(|| format!("uplink {uplink} has no IPv6 (no gateway6)"))?;
        if side.nat == Nat6::Masquerade {
            return Err(format!(
                "uplink {uplink} masquerades IPv6 (nat6: masquerade): a prefix changes nothing"
            ));
        }
        if let (Nat6::Npt, Some(lan), Some(p)) = (side.nat, self.config.lan_prefix6, prefix)
            && p.prefix_len() > lan.prefix_len()
        {
            return Err(format!(
                "{p} is longer than lan_prefix6 {lan}: it cannot hold the LAN's prefix"
            ));
        }
        let old = self.prefixes.get(uplink).copied();
        if old == prefix {
            return Ok(format!("{uplink} keeps {}", shown(prefix)));
        }
        match prefix {
            Some(p) => self.prefixes.insert(uplink.to_string(), p),
            None => self.prefixes.remove(uplink),
        };
        info!(uplink, prefix = %shown(prefix), was = %shown(old), "IPv6 prefix handed over");
        let mut desired = self.desired(Purpose::Change);
        if side.nat == Nat6::Npt && old.is_some() {
            desired.flushes.push(Flush {
                family: Family::Ipv6,
                reply_dst: None,
                mark: self.config.marks.uplink(u.id),
                mask: self.config.marks.mask,
                what: format!("{uplink} ipv6"),
                reason: FlushReason::PrefixChanged {
                    uplink: uplink.to_string(),
                },
            });
        }
        self.kernel.install(desired);
        self.replan();
        Ok(format!(
            "{uplink} now {} (was {})",
            shown(prefix),
            shown(old)
        ))
    }
}

fn shown(prefix: Option<Ipv6Net>) -> String {
    prefix.map_or("none".to_string(), |p| p.to_string())
}
