//! The agent's answer to `multiwan status`, built from the plan, the health monitors and
//! the transitions it has seen.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Agent;
use crate::control::proto::{
    FamilyStatus, LastTransition, PolicyStatus, ReloadStatus, SetStatus, Status, UplinkStatus,
};
use crate::health::{Family, Track};
use crate::plan::UplinkPlan;

/// How the last reload went, for status.
#[derive(Debug, Clone)]
pub(super) struct Reload {
    at: SystemTime,
    error: Option<String>,
}

impl Reload {
    pub fn succeeded() -> Self {
        Self {
            at: SystemTime::now(),
            error: None,
        }
    }

    pub fn failed(why: String) -> Self {
        Self {
            at: SystemTime::now(),
            error: Some(why),
        }
    }

    fn status(&self) -> ReloadStatus {
        ReloadStatus {
            ok: self.error.is_none(),
            at_unix: unix(self.at),
            error: self.error.clone(),
        }
    }
}

pub(super) fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn ms(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

impl Agent {
    /// One family of one uplink, as status shows it.
    fn family_status(&self, u: &UplinkPlan, family: Family) -> FamilyStatus {
        let track = Track::new(&u.name, family);
        let monitor = self.monitors.get(&track);
        let stats = monitor.map(|m| m.stats());
        let health = monitor.map_or(crate::health::Health::Down, |m| m.state());
        FamilyStatus {
            state: health.to_string(),
            since_unix: unix(*self.since.get(&track).unwrap_or(&self.started)),
            effective_weight: u.effective_weight,
            share_percent: u.share * 100.0,
            rtt_ms: stats.as_ref().and_then(|s| ms(s.rtt)),
            jitter_ms: stats.as_ref().and_then(|s| ms(s.jitter)),
            loss_percent: stats.as_ref().map_or(0.0, |s| s.loss * 100.0),
            probes_sent: stats.as_ref().map_or(0, |s| s.sent),
            probes_lost: stats.as_ref().map_or(0, |s| s.lost),
            probes_late: stats.as_ref().map_or(0, |s| s.late),
            last_transition: self.last.get(&track).map(|(t, at)| LastTransition {
                from: t.from.to_string(),
                to: t.to.to_string(),
                reason: t.cause.to_string(),
                at_unix: unix(*at),
            }),
            address: u.address.to_string(),
            gateway: u.gateway.to_string(),
            connections: None,
            bytes: None,
            standby: monitor.is_some_and(|m| m.on_standby()),
        }
    }

    pub(super) fn status(&self) -> Status {
        let v6 = self.plan.v6.as_deref();
        let uplinks = self.plan.uplinks.iter().map(|u| {
            let v4 = self.family_status(u, Family::Ipv4);
            let ipv6 = v6
                .and_then(|p| p.uplink(&u.name))
                .map(|u6| self.family_status(u6, Family::Ipv6));
            UplinkStatus {
                name: u.name.clone(),
                interface: u.interface.clone(),
                state: v4.state,
                since_unix: v4.since_unix,
                link_up: self.links.get(&u.interface).copied().unwrap_or(false),
                weight: u.weight,
                effective_weight: v4.effective_weight,
                share_percent: v4.share_percent,
                rtt_ms: v4.rtt_ms,
                jitter_ms: v4.jitter_ms,
                loss_percent: v4.loss_percent,
                probes_sent: v4.probes_sent,
                probes_lost: v4.probes_lost,
                probes_late: v4.probes_late,
                last_transition: v4.last_transition,
                address: v4.address,
                gateway: v4.gateway,
                mark: u.mark,
                table: u.table,
                connections: None,
                bytes: None,
                standby: v4.standby,
                ipv6,
            }
        });
        let policies = self
            .plan
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| PolicyStatus {
                name: p.name.clone(),
                target: p.decision.to_string(),
                hits: self.policy_hits.get(&i).copied(),
            });
        let forwards = self
            .config
            .port_forwards
            .iter()
            .zip(&self.plan.forwards)
            .map(|(f, p)| crate::control::proto::ForwardStatus {
                name: f.name.clone(),
                backends: f
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| crate::control::proto::BackendStatus {
                        target: b.target(),
                        up: !self.backends_down.contains(&(f.name.clone(), i)),
                        in_rotation: p.live.contains(&i),
                    })
                    .collect(),
            });
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: self.path.display().to_string(),
            started_unix: unix(self.started),
            pid: std::process::id(),
            all_down: self.plan.all_down,
            uplinks: uplinks.collect(),
            policies: policies.collect(),
            forwards: forwards.collect(),
            sets: self.sets_status(),
            ha: self.ha_status(),
            last_reload: self.last_reload.as_ref().map(Reload::status),
            warnings: self.last_warnings.clone(),
        }
    }

    fn sets_status(&self) -> Vec<SetStatus> {
        use crate::kernel::ipset::Count;
        self.set_counts
            .iter()
            .filter_map(|(name, c)| {
                let (members, learned) = match *c {
                    Count::Members(n) => (n, None),
                    Count::Learned(n) => (0, Some(n)),
                    Count::Unknown => return None,
                };
                Some(SetStatus {
                    name: name.clone(),
                    members,
                    learned,
                })
            })
            .collect()
    }
}

impl Agent {
    /// systemd's one-line view (STATUS=) and its watchdog keep-alive.
    pub(super) fn tell_systemd(&mut self, now: std::time::Instant) {
        let plan = &self.plan;
        let since = &self.since;
        let wall = SystemTime::now();
        let v6 = plan.v6.as_deref();
        self.systemd.tick(now, || {
            let lines: Vec<crate::daemon::systemd::Line> = plan
                .uplinks
                .iter()
                .map(|u| {
                    let track = Track::new(&u.name, Family::Ipv4);
                    let v6_down = v6
                        .and_then(|p| p.uplinks.iter().find(|x| x.name == u.name))
                        .is_some_and(|x| {
                            x.health == crate::health::Health::Down
                                && u.health != crate::health::Health::Down
                        });
                    crate::daemon::systemd::Line {
                        name: &u.name,
                        health: u.health,
                        share: u.share,
                        since: since.get(&track).and_then(|t| wall.duration_since(*t).ok()),
                        other_family_down: v6_down.then_some("IPv6"),
                    }
                })
                .collect();
            crate::daemon::systemd::status_line(&lines)
        });
    }
}
