//! Probing: one health machine per family of each uplink, one probe socket per family of
//! each uplink, and the results fed back. Rounds are started by the machines' own timers;
//! nothing here waits for the kernel.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{debug, warn};

use super::Agent;
use crate::health::{Family, Health, Monitor, Settings, Track};
use crate::kernel::probe::{LOG_TARGET, ProbeEvent, Prober};

impl Agent {
    pub(super) fn on_probe(&mut self, ev: ProbeEvent) {
        let now = Instant::now();
        match ev {
            ProbeEvent::Reply {
                uplink,
                family,
                seq,
                rtt,
            } => {
                if let Some(m) = self.monitors.get_mut(&Track::new(&uplink, family)) {
                    self.pending.extend(m.on_reply(seq, rtt, now));
                }
            }
            ProbeEvent::Backend {
                forward,
                index,
                ok,
                why,
            } => self.on_backend(&forward, index, ok, &why),
            ProbeEvent::Failed {
                uplink,
                family,
                seq,
                why,
            } => {
                debug!(target: LOG_TARGET, %uplink, %family, seq, %why, "probe failed");
                if let Some(m) = self.monitors.get_mut(&Track::new(&uplink, family)) {
                    self.pending.extend(m.on_failure(seq, now));
                }
            }
        }
    }

    pub(super) fn send_probes(&mut self, now: Instant) {
        let tracks: Vec<Track> = self.monitors.keys().cloned().collect();
        for track in tracks {
            let requests = self
                .monitors
                .get_mut(&track)
                .expect("listed")
                .due_probes(now);
            if requests.is_empty() {
                continue;
            }
            let tx = self.probe_tx.clone();
            match self.prober(&track) {
                Some(p) => {
                    for r in requests {
                        p.send(&track.uplink, r, tx.clone());
                    }
                }
                None => {
                    let m = self.monitors.get_mut(&track).expect("listed");
                    for r in requests {
                        self.pending.extend(m.on_failure(r.seq, now));
                    }
                }
            }
        }
    }

    /// The probe socket of one family of an uplink, (re)made when its interface or address
    /// changed.
    fn prober(&mut self, track: &Track) -> Option<&Prober> {
        let u = self.config.uplink(&track.uplink)?;
        let source = *self
            .observed
            .of(track.family)
            .addresses
            .get(&track.uplink)?;
        let index = *self.view.links.get(&u.interface)?;
        let mark = self.config.marks.uplink(u.id);
        let current = self.probers.get(track).is_some_and(|p| {
            p.interface == u.interface && p.index == index && p.source == source && p.mark == mark
        });
        if !current {
            let ident = self.ident.wrapping_add(u.id as u16);
            match Prober::new(&u.interface, index, source, ident, mark) {
                Ok(p) => {
                    self.probers.insert(track.clone(), p);
                }
                Err(e) => {
                    warn!(uplink = %track.uplink, family = %track.family, interface = %u.interface, error = %e, "cannot open the probe socket");
                    self.probers.remove(track);
                    return None;
                }
            }
        }
        self.probers.get(track)
    }

    /// What one family of an uplink probes when it lists no targets (see
    /// [`crate::plan::Observed::default_target`]), in that family's view.
    fn default_target(
        &self,
        u: &crate::config::Uplink,
        family: Family,
    ) -> Option<std::net::IpAddr> {
        let seen = self.observed.of(family);
        match self.observed.family_gateway(u, family)? {
            crate::plan::NextHop::Via(ip) => Some(ip),
            crate::plan::NextHop::Device => seen.peers.get(&u.name).copied(),
        }
    }

    /// Every uplink's state in one family (the uplinks that carry it). One with nothing to
    /// probe (gateway not learned yet) cannot carry traffic.
    pub(super) fn health(&self, family: Family) -> BTreeMap<String, Health> {
        self.tracks()
            .into_iter()
            .filter(|t| t.family == family)
            .map(|t| {
                let state = self.monitors.get(&t).map_or(Health::Down, Monitor::state);
                (t.uplink, state)
            })
            .collect()
    }

    /// The state of every family of every uplink.
    pub(super) fn all_health(&self) -> BTreeMap<Track, Health> {
        self.tracks()
            .into_iter()
            .map(|t| {
                let state = self.monitors.get(&t).map_or(Health::Down, Monitor::state);
                (t, state)
            })
            .collect()
    }

    /// Each family of each uplink: IPv4 always, IPv6 when the uplink has `gateway6`.
    pub(super) fn tracks(&self) -> Vec<Track> {
        self.config
            .uplinks
            .iter()
            .flat_map(|u| {
                let v6 = u.ipv6.as_ref().map(|_| Track::new(&u.name, Family::Ipv6));
                std::iter::once(Track::new(&u.name, Family::Ipv4)).chain(v6)
            })
            .collect()
    }

    /// Puts on standby (see `probe.standby_interval`) each family of an uplink that carries
    /// nothing now: no balanced share, no pinned policy, no port forward, and every uplink
    /// of a better tier healthy. Anything else wakes it.
    pub(super) fn update_standby(&mut self, now: Instant) {
        for plan in self.plan.families() {
            let pinned: Vec<&str> = plan
                .policies
                .iter()
                .filter_map(|p| match &p.decision {
                    crate::plan::Decision::Pinned { uplink } => Some(uplink.as_str()),
                    _ => None,
                })
                .collect();
            for u in &plan.uplinks {
                let forwards = self
                    .config
                    .port_forwards
                    .iter()
                    .any(|f| f.uplinks.contains(&u.name));
                let better_unwell = plan
                    .uplinks
                    .iter()
                    .any(|b| b.tier < u.tier && b.health != Health::Up);
                let idle = u.share == 0.0
                    && !pinned.contains(&u.name.as_str())
                    && !forwards
                    && !better_unwell;
                if let Some(m) = self.monitors.get_mut(&Track::new(&u.name, plan.family)) {
                    m.set_standby(idle, now);
                }
            }
        }
    }

    /// Makes one monitor per family of each uplink that has something to probe, keeping
    /// existing monitors whose settings did not change (and the state of those that did).
    pub(super) fn rebuild_monitors(&mut self, states: &BTreeMap<Track, Health>, initial: Health) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.monitors);
        for track in self.tracks() {
            let u = self
                .config
                .uplink(&track.uplink)
                .expect("a track is an uplink's");
            let fallback = self.default_target(u, track.family);
            let Some(settings) = Settings::for_uplink(u, track.family, fallback) else {
                warn!(uplink = %track.uplink, family = %track.family, "nothing to probe yet (no targets, and no gateway or peer learned): treated as down");
                continue;
            };
            let monitor = match old.remove(&track) {
                Some(m) if m.settings() == &settings => m,
                m => {
                    let state = m
                        .map(|m| m.state())
                        .or(states.get(&track).copied())
                        .unwrap_or(initial);
                    Monitor::new(&track.uplink, settings, state, now)
                }
            };
            self.monitors.insert(track, monitor);
        }
    }
}
