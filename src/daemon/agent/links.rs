//! Link and kernel events: a link's carrier or admin state acts on the health machines at
//! once; address and route changes ask the kernel actor for a full reconcile.

use std::time::Instant;

use tracing::{info, warn};

use super::{Agent, RESYNC_DEBOUNCE};
use crate::kernel::events::KernelEvent;

impl Agent {
    pub(super) fn on_kernel(&mut self, ev: KernelEvent) {
        let now = Instant::now();
        match ev {
            KernelEvent::Link { name, up } => {
                if self.config.uplinks.iter().any(|u| u.interface == name) {
                    self.link_changed(&name, up, now);
                }
            }
            KernelEvent::Changed => {
                self.resync_at.get_or_insert(now + RESYNC_DEBOUNCE);
            }
            KernelEvent::Overrun => {
                warn!("netlink events were lost: full resync");
                self.resync_at = Some(now);
            }
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
            if let Some(m) = self.monitors.get_mut(&u.name) {
                self.pending.extend(m.on_link(up, now));
            }
        }
        // A link that went down lost its routes (admin down deletes them silently); one that
        // came back needs them again.
        self.resync_at = Some(now);
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
