//! Link and kernel events: a link's carrier or admin state acts on the health machines at
//! once; address and route changes ask the kernel actor for a full reconcile.

use std::time::{Duration, Instant};

/// The longest the health machines wait for a repair of multiwan's own rules and routes.
const HOLD_AT_MOST: Duration = Duration::from_secs(3);

use tracing::{info, warn};

use super::{Agent, RESYNC_DEBOUNCE};
use crate::kernel::events::KernelEvent;
use crate::kernel::routing::{PROTO, model};

impl Agent {
    pub(super) fn on_kernel(&mut self, ev: KernelEvent) {
        let now = Instant::now();
        match ev {
            KernelEvent::Link { name, up } => {
                if self.config.uplinks.iter().any(|u| u.interface == name) {
                    self.link_changed(&name, up, now);
                }
            }
            KernelEvent::Changed | KernelEvent::Netfilter => {
                self.resync_at.get_or_insert(now + RESYNC_DEBOUNCE);
            }
            KernelEvent::RuleDeleted { priority, protocol } => {
                let ours = protocol == PROTO && model::owns_priority(&self.config, priority);
                self.repair(ours, now);
            }
            KernelEvent::RouteDeleted { table } => {
                let ours = model::owns_table(&self.config, table);
                self.repair(ours, now);
            }
            KernelEvent::Overrun => {
                warn!("netlink events were lost: full resync");
                self.resync_at = Some(now);
            }
        }
    }

    /// A rule or route was deleted. One of ours steers the probes: until it is back, a lost
    /// probe says nothing about the ISP, so the health machines hold their judgement (an
    /// `ip rule flush` must not look like every ISP dying) and the repair starts at once.
    fn repair(&mut self, ours: bool, now: Instant) {
        if !ours {
            self.resync_at.get_or_insert(now + RESYNC_DEBOUNCE);
            return;
        }
        if self.holding.is_none() {
            warn!(
                "a rule or route of multiwan's was deleted by someone else: repairing; probes are not judged meanwhile"
            );
            for m in self.monitors.values_mut() {
                m.hold();
            }
        }
        self.holding = Some(now);
        self.resync_at = Some(now);
    }

    /// Ends a hold once a transaction that began after the last deletion has put things
    /// back, or after [`HOLD_AT_MOST`] whatever happened (then the probes judge again).
    pub(super) fn end_hold(&mut self, repaired_from: Option<Instant>, now: Instant) {
        let Some(since) = self.holding else {
            return;
        };
        let repaired = repaired_from.is_some_and(|t| t >= since);
        if repaired || now.duration_since(since) > HOLD_AT_MOST {
            self.holding = None;
            for m in self.monitors.values_mut() {
                m.release(now);
            }
            info!(repaired, "probing resumes");
        }
    }

    pub(super) fn link_changed(&mut self, interface: &str, up: bool, now: Instant) {
        if self.links.get(interface) == Some(&up) {
            return;
        }
        self.links.insert(interface.to_string(), up);
        info!(interface, up, "link event");
        for u in self
            .config
            .uplinks
            .iter()
            .filter(|u| u.interface == interface)
        {
            for m in self
                .monitors
                .iter_mut()
                .filter(|(t, _)| t.uplink == u.name)
                .map(|(_, m)| m)
            {
                self.pending.extend(m.on_link(up, now));
            }
        }
        // A link that went down lost its routes (admin down deletes them silently); one that
        // came back needs them again.
        self.resync_at = Some(now);
    }

    /// Tells each health machine whether its family of the uplink can be routed at all
    /// (interface, address and next hop present), as the last kernel read saw it.
    pub(super) fn sync_routes(&mut self, now: Instant) {
        for track in self.tracks() {
            let Some(u) = self.config.uplink(&track.uplink) else {
                continue;
            };
            let routable = self.observed.family_routable(u, track.family);
            if let Some(m) = self.monitors.get_mut(&track) {
                self.pending.extend(m.on_route(routable, now));
            }
        }
    }

    /// The connections NATed to an uplink address that is gone (a PPP reconnect, a DHCP
    /// renewal with a new address) are dead: the ISP drops their packets. Deletes exactly
    /// those (that address, that uplink's mark, that family), so LAN clients re-dial at once.
    /// (The kernel's MASQUERADE forgets them too when the address is removed; SNAT does
    /// not.) An address still on the host (it only stopped being the first) is not gone.
    pub(super) fn flushes_for_new_addresses(
        &self,
        old: &crate::plan::Observed,
    ) -> Vec<crate::plan::flush::Flush> {
        use crate::plan::flush::{Flush, FlushReason};
        let mut out = Vec::new();
        for track in self.tracks() {
            let Some(u) = self.config.uplink(&track.uplink) else {
                continue;
            };
            let before = old.of(track.family).addresses.get(&u.name).copied();
            let now = self
                .observed
                .of(track.family)
                .addresses
                .get(&u.name)
                .copied();
            let gone = before.filter(|b| Some(*b) != now && !self.view.local.contains(b));
            if let Some(gone) = gone {
                info!(uplink = %u.name, family = %track.family, old = %gone, new = ?now, "uplink address changed: its connections through the old one are deleted");
                out.push(Flush {
                    family: track.family,
                    mark: self.config.marks.uplink(u.id),
                    mask: self.config.marks.mask,
                    reply_dst: Some(gone),
                    what: format!("{track} via {gone}"),
                    reason: FlushReason::AddressChanged {
                        uplink: track.to_string(),
                        old: gone,
                    },
                });
            }
        }
        out
    }

    /// Applies the links' state as the last kernel read saw it (at start and after a full
    /// reconcile).
    pub(super) fn sync_links(&mut self, now: Instant) {
        let interfaces: Vec<String> = self
            .config
            .uplinks
            .iter()
            .map(|u| u.interface.clone())
            .collect();
        for i in interfaces {
            let up = self.view.usable.contains(&i);
            self.link_changed(&i, up, now);
        }
    }
}
