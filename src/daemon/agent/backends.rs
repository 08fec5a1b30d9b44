//! Port-forward backends in the agent: TCP checks on their own timers, and on a change a
//! swap of that forward's chain in one transaction (the other chains are untouched).

use std::net::SocketAddrV4;
use std::time::Instant;

use tracing::{info, warn};

use super::Agent;
use crate::daemon::hooks::HookEvent;
use crate::health::backend::BackendMonitor;
use crate::kernel::actor::Purpose;
use crate::plan::forward::forward_plans;

impl Agent {
    /// One monitor per checked backend; unchanged ones keep their state.
    pub(super) fn rebuild_backends(&mut self) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.backends);
        for f in &self.config.port_forwards {
            let Some(check) = &f.health else { continue };
            for (i, b) in f.backends.iter().enumerate() {
                let key = (f.name.clone(), i);
                let monitor = match old.remove(&key) {
                    Some(m) if m.target == b.target() && m.check() == check => m,
                    _ => BackendMonitor::new(&f.name, i, b.target(), check.clone(), now),
                };
                self.metrics.backend(&f.name, &monitor.target, monitor.up());
                self.backends.insert(key, monitor);
            }
        }
        self.backends_down
            .retain(|k| self.backends.get(k).is_some_and(|m| !m.up()));
    }

    pub(super) fn send_backend_checks(&mut self, now: Instant) {
        for ((forward, index), m) in &mut self.backends {
            if !m.due(now) {
                continue;
            }
            let Some(f) = self
                .config
                .port_forwards
                .iter()
                .find(|f| &f.name == forward)
            else {
                continue;
            };
            let b = &f.backends[*index];
            let addr = SocketAddrV4::new(b.address, b.port.unwrap_or(f.ports.first));
            crate::kernel::probe::check_backend(
                forward,
                *index,
                addr,
                m.check().timeout,
                self.probe_tx.clone(),
            );
        }
    }

    pub(super) fn on_backend(&mut self, forward: &str, index: usize, ok: bool, why: &str) {
        if let Some(t) = self
            .backends
            .get_mut(&(forward.to_string(), index))
            .and_then(|m| m.on_result(ok, why))
        {
            self.backend_changes.push(t);
        }
    }

    /// Backends changed: rebuild the plan, swap the changed forward chains, tell everyone.
    pub(super) fn act_backends(&mut self) {
        let changes = std::mem::take(&mut self.backend_changes);
        for t in &changes {
            let key = (t.forward.clone(), t.index);
            if t.up {
                self.backends_down.remove(&key);
            } else {
                self.backends_down.insert(key);
            }
            let state = if t.up { "up" } else { "down" };
            info!(forward = %t.forward, backend = %t.target, to = %state, reason = %t.reason, "backend state changed");
            self.metrics.backend(&t.forward, &t.target, t.up);
            self.history_event(
                "backend",
                format!(
                    "port forward {}: backend {} {state}: {}",
                    t.forward, t.target, t.reason
                ),
                state,
            );
            let event = HookEvent::backend(&t.forward, &t.target, state, &t.reason);
            self.hooks
                .run_all(&self.config.hooks, &event, self.config.hook_timeout);
        }
        let mut observed = self.observed.clone();
        observed.backends_down = self.backends_down.clone();
        for f in forward_plans(&self.config, &observed)
            .iter()
            .filter(|f| f.all_down)
        {
            warn!(forward = %f.name, "every backend is down: all are kept in rotation (a dead service beats a black-holed one)");
        }
        self.kernel.install(self.desired(Purpose::Change));
        self.replan();
    }
}
