//! Probing: one health machine per uplink, one probe socket per uplink, and the results
//! fed back. Rounds are started by the machines' own timers; nothing here waits for the
//! kernel.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{debug, warn};

use super::Agent;
use crate::health::{Health, Monitor, Settings};
use crate::kernel::probe::{LOG_TARGET, ProbeEvent, Prober};

impl Agent {
    pub(super) fn on_probe(&mut self, ev: ProbeEvent) {
        let now = Instant::now();
        match ev {
            ProbeEvent::Reply { uplink, seq, rtt } => {
                if let Some(m) = self.monitors.get_mut(&uplink) {
                    self.pending.extend(m.on_reply(seq, rtt, now));
                }
            }
            ProbeEvent::Backend {
                forward,
                index,
                ok,
                why,
            } => self.on_backend(&forward, index, ok, &why),
            ProbeEvent::Failed { uplink, seq, why } => {
                debug!(target: LOG_TARGET, %uplink, seq, %why, "probe failed");
                if let Some(m) = self.monitors.get_mut(&uplink) {
                    self.pending.extend(m.on_failure(seq, now));
                }
            }
        }
    }

    pub(super) fn send_probes(&mut self, now: Instant) {
        let names: Vec<String> = self.monitors.keys().cloned().collect();
        for name in names {
            let requests = self
                .monitors
                .get_mut(&name)
                .expect("listed")
                .due_probes(now);
            if requests.is_empty() {
                continue;
            }
            let tx = self.probe_tx.clone();
            match self.prober(&name) {
                Some(p) => {
                    for r in requests {
                        p.send(&name, r, tx.clone());
                    }
                }
                None => {
                    let m = self.monitors.get_mut(&name).expect("listed");
                    for r in requests {
                        self.pending.extend(m.on_failure(r.seq, now));
                    }
                }
            }
        }
    }

    /// The probe socket of an uplink, (re)made when its interface or address changed.
    fn prober(&mut self, name: &str) -> Option<&Prober> {
        let u = self.config.uplink(name)?;
        let source = *self.observed.addresses.get(name)?;
        let mark = self.config.marks.uplink(u.id);
        let current = self
            .probers
            .get(name)
            .is_some_and(|p| p.interface == u.interface && p.source == source && p.mark == mark);
        if !current {
            let ident = self.ident.wrapping_add(u.id as u16);
            match Prober::new(&u.interface, source, ident, mark) {
                Ok(p) => {
                    self.probers.insert(name.to_string(), p);
                }
                Err(e) => {
                    warn!(uplink = name, interface = %u.interface, error = %e, "cannot open the probe socket");
                    self.probers.remove(name);
                    return None;
                }
            }
        }
        self.probers.get(name)
    }

    /// Every uplink's state. One with nothing to probe (gateway not learned yet) cannot
    /// carry traffic.
    pub(super) fn health(&self) -> BTreeMap<String, Health> {
        self.config
            .uplinks
            .iter()
            .map(|u| {
                let state = self
                    .monitors
                    .get(&u.name)
                    .map_or(Health::Down, Monitor::state);
                (u.name.clone(), state)
            })
            .collect()
    }

    /// Makes one monitor per uplink that has something to probe, keeping existing monitors
    /// whose settings did not change (and the state of those that did).
    pub(super) fn rebuild_monitors(&mut self, states: &BTreeMap<String, Health>, initial: Health) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.monitors);
        for u in self.config.uplinks.iter() {
            let Some(settings) = Settings::for_uplink(u, self.observed.gateway(u)) else {
                warn!(uplink = %u.name, "nothing to probe yet (gateway not learned): treated as down");
                continue;
            };
            let monitor = match old.remove(&u.name) {
                Some(m) if m.settings() == &settings => m,
                m => {
                    let state = m
                        .map(|m| m.state())
                        .or(states.get(&u.name).copied())
                        .unwrap_or(initial);
                    Monitor::new(&u.name, settings, state, now)
                }
            };
            self.monitors.insert(u.name.clone(), monitor);
        }
    }
}
