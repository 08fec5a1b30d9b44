//! The agent's side of an HA pair: which role keepalived gave this node, and what follows
//! from it. Only the master deletes conntrack entries (conntrackd carries the deletions to
//! the backup); both nodes probe and keep the same rules, so a takeover needs no install.

use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use super::Agent;
use crate::control::HaStatus;
use crate::daemon::hooks::HookEvent;
use crate::ha::Role;
use crate::health::Health;
use crate::kernel::actor::Purpose;
use crate::kernel::routing::KernelView;
use crate::plan::flush::takeover_flushes;

#[derive(Debug, Clone, Copy)]
pub(super) struct HaState {
    pub role: Role,
    pub since: SystemTime,
}

/// Before keepalived has said anything (the agent restarted under a running pair), the
/// node is master exactly when it holds the LAN gateway address.
pub(super) fn inferred_role(config: &crate::config::Config, view: &KernelView) -> Option<Role> {
    let ha = config.ha.as_ref()?;
    Some(if holds_addresses(ha, view) {
        Role::Master
    } else {
        Role::Backup
    })
}

fn holds_addresses(ha: &crate::config::Ha, view: &KernelView) -> bool {
    ha.lan_addresses
        .first()
        .is_some_and(|a| view.local.contains(&std::net::IpAddr::V4(a.addr())))
}

impl Agent {
    /// Whether this node may delete conntrack entries: a single router, or the master.
    pub(super) fn owns_conntrack(&self) -> bool {
        self.ha.is_none_or(|h| h.role == Role::Master)
    }

    /// Whether a transition may delete its uplink's connections. On a node of a pair, a
    /// deletion is synced to the peer, so it must be about the ISP, which both nodes share:
    /// not a link this node alone lost (the node may be dying, and the peer, which still
    /// has the link, is about to carry those connections on).
    pub(super) fn may_flush_for(&self, t: &crate::health::Transition) -> bool {
        self.ha.is_none() || (self.owns_conntrack() && !t.cause.is_link())
    }

    /// Says why an HA node left a down uplink's connections in place.
    pub(super) fn log_withheld(&self, withheld: &[crate::health::Transition]) {
        for t in withheld.iter().filter(|t| t.to == Health::Down) {
            let role = self.ha.map_or("none", |h| h.role.name());
            if self.owns_conntrack() {
                info!(uplink = %t.uplink, reason = %t.cause, "HA master: this node lost the link alone; connections stay for the peer (no flush)");
            } else {
                info!(uplink = %t.uplink, role, "HA backup: conntrack entries are left to the master (conntrackd syncs its deletions)");
            }
        }
    }

    /// Sets the HA state after a start or reload.
    pub(super) fn init_ha(&mut self) {
        let role = inferred_role(&self.config, &self.view);
        match (role, self.ha) {
            (None, _) => self.ha = None,
            (Some(_), Some(_)) => {}
            (Some(role), None) => {
                info!(role = %role, "HA: role taken from the shared addresses until keepalived reports one");
                self.ha = Some(HaState {
                    role,
                    since: SystemTime::now(),
                });
                self.metrics.ha_role(role);
            }
        }
    }

    /// keepalived reported a role (through `ha notify`), and what failed on the way.
    pub(super) fn set_role(&mut self, role: Role, problem: Option<String>) {
        if let Some(p) = &problem {
            warn!(role = %role, problem = %p, "HA: ha notify reported a failure (is conntrackd running with the rendered config?)");
        }
        let Some(ha) = self.config.ha.clone() else {
            warn!(role = %role, "HA role reported, but the config has no `ha` section: ignored");
            return;
        };
        let previous = self.ha.map(|h| h.role);
        if previous == Some(role) {
            return;
        }
        let previous = previous.map_or("none", Role::name);
        info!(role = %role, previous, "HA role changed");
        self.history_event(
            "ha_role",
            format!("HA role {previous} → {role}"),
            if role == Role::Master {
                "up"
            } else {
                "degraded"
            },
        );
        self.ha = Some(HaState {
            role,
            since: SystemTime::now(),
        });
        self.metrics.ha_role(role);
        let event = HookEvent::ha_role(&ha.node, &ha.peer.to_string(), role.name(), previous);
        self.hooks
            .run_all(&self.config.hooks, &event, self.config.hook_timeout);
        if role == Role::Master {
            self.flush_down_uplinks();
        }
        // The shared addresses moved: re-read the kernel soon.
        self.resync_at = Some(Instant::now());
    }

    /// A new master may have taken over connections the old one had not moved off an
    /// uplink this node knows is down: the kernel actor deletes them.
    fn flush_down_uplinks(&self) {
        let flushes = takeover_flushes(&self.config, &self.all_health());
        if flushes.is_empty() {
            return;
        }
        let mut desired = self.desired(Purpose::Change);
        desired.flushes = flushes;
        self.kernel.install(desired);
    }

    pub(super) fn ha_status(&self) -> Option<HaStatus> {
        let (config, state) = (self.config.ha.as_ref()?, self.ha?);
        Some(HaStatus {
            node: config.node.clone(),
            peer: config.peer.to_string(),
            role: state.role,
            since_unix: super::status::unix(state.since),
            holds_addresses: holds_addresses(config, &self.view),
            sync: None,
            sync_error: None,
            conntrackd_config: config.conntrackd_config(),
        })
    }
}
