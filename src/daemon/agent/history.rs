//! The agent's side of the status page's history (see [`crate::history`]): one point per
//! uplink and family a second, and the events that explain them.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Agent;
use crate::family::Family;
use crate::health::{Health, Monitor, Track};
use crate::history::{Event, Point};

/// The series of a family of an uplink: `fibre`, `fibre ipv6`.
fn series(uplink: &str, family: Family) -> String {
    match family {
        Family::Ipv4 => uplink.to_string(),
        Family::Ipv6 => format!("{uplink} ipv6"),
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Agent {
    /// Records this second of every uplink and family.
    pub(super) fn record_history(&mut self) {
        let t = now_unix() as u32;
        let mut points = Vec::new();
        for plan in self.plan.families() {
            for u in &plan.uplinks {
                let track = Track::new(&u.name, plan.family);
                let stats = self.monitors.get(&track).map(Monitor::stats);
                let ms = |d: Option<std::time::Duration>| {
                    d.map_or(f32::NAN, |d| d.as_secs_f32() * 1000.0)
                };
                // The interface's traffic, once per uplink (on its IPv4 series).
                let bytes = match plan.family {
                    Family::Ipv4 => crate::kernel::ifstats::bytes(&u.interface).map(|now| {
                        let before = self.bytes_recorded.insert(u.name.clone(), now);
                        before.map_or(0, |b| now.saturating_sub(b))
                    }),
                    Family::Ipv6 => None,
                };
                let total = self.marked.get(&track).copied().unwrap_or(0);
                let before = self.marked_recorded.insert(track.clone(), total);
                let new = before.map_or(0, |b| total.saturating_sub(b));
                points.push((
                    series(&u.name, plan.family),
                    Point {
                        t,
                        state: match stats.as_ref().map_or(u.health, |s| s.state) {
                            Health::Down => 0,
                            Health::Degraded => 1,
                            Health::Up => 2,
                        },
                        rtt_ms: ms(stats.as_ref().and_then(|s| s.rtt)),
                        jitter_ms: ms(stats.as_ref().and_then(|s| s.jitter)),
                        loss: stats.as_ref().map_or(0.0, |s| s.loss as f32),
                        effective_weight: u.effective_weight as f32,
                        connections: u32::try_from(new).unwrap_or(u32::MAX),
                        bytes: bytes.map_or(f32::NAN, |b| b as f32),
                    },
                ));
            }
        }
        let Ok(mut h) = self.history.lock() else {
            return;
        };
        let names: Vec<String> = points.iter().map(|(n, _)| n.clone()).collect();
        for (name, p) in points {
            h.record(&name, p);
        }
        h.keep_only(&names);
    }

    /// Adds an event to the timeline (only while the page is on: nothing else reads it).
    pub(super) fn history_event(&self, kind: &'static str, text: String, level: &str) {
        if self.config.web.is_none() {
            return;
        }
        if let Ok(mut h) = self.history.lock() {
            h.event(Event {
                at_unix: now_unix(),
                kind,
                text,
                level: level.to_string(),
            });
        }
    }
}
