//! What the service manager sees of the daemon besides readiness: a one-line `STATUS=`
//! (`systemctl status multiwan` shows "fibre up 70%, cable down 1m12s") and watchdog
//! keep-alives from the event loop, so a wedged daemon is restarted (`WatchdogSec=`).
//! Nothing is sent when systemd did not ask (no `NOTIFY_SOCKET`).

use std::time::{Duration, Instant};

use super::notify::notify;
use crate::health::Health;

/// One uplink (one family of it) as the status line shows it.
pub struct Line<'a> {
    pub name: &'a str,
    pub health: Health,
    /// Share of balanced new connections, 0..=1.
    pub share: f64,
    /// How long it has been in this state, when known.
    pub since: Option<Duration>,
    /// The uplink's other family ("IPv6") when that one is down and this one is not.
    pub other_family_down: Option<&'static str>,
}

/// "fibre up 70%, cable down 1m12s": the share of an uplink that carries traffic, the
/// time since an uplink that does not went down.
pub fn status_line(lines: &[Line]) -> String {
    let parts: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut s = format!("{} {}", l.name, l.health);
            match l.health {
                Health::Down => {
                    if let Some(d) = l.since {
                        s.push(' ');
                        s.push_str(&crate::control::render::ago(d.as_secs_f64()));
                    }
                }
                _ => s.push_str(&format!(" {:.0}%", l.share * 100.0)),
            }
            if let Some(family) = l.other_family_down {
                s.push_str(&format!(" ({family} down)"));
            }
            s
        })
        .collect();
    if parts.is_empty() {
        "no uplinks".into()
    } else {
        parts.join(", ")
    }
}

/// The daemon's side of `Type=notify`: STATUS= when it changes, WATCHDOG=1 at half the
/// period systemd asked for.
pub struct Systemd {
    enabled: bool,
    watchdog: Option<Duration>,
    pinged: Instant,
    status: String,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog is ours only
    /// when the pid is ours or absent).
    pub fn from_env(now: Instant) -> Systemd {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && enabled && ours)
            .map(|u| Duration::from_micros(u) / 2);
        Systemd {
            enabled,
            watchdog,
            pinged: now,
            status: String::new(),
        }
    }

    /// When the next keep-alive is due.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.watchdog.map(|w| self.pinged + w)
    }

    /// Sends a keep-alive when one is due, and the status line when it changed.
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        if let Some(w) = self.watchdog
            && now >= self.pinged + w
        {
            let _ = notify("WATCHDOG=1");
            self.pinged = now;
        }
        let line = status();
        if line != self.status {
            let _ = notify(&format!("STATUS={line}"));
            self.status = line;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_gives_shares_of_the_living_and_the_age_of_the_dead() {
        let lines = [
            Line {
                name: "fibre",
                health: Health::Up,
                share: 0.7,
                since: Some(Duration::from_secs(5)),
                other_family_down: None,
            },
            Line {
                name: "cable",
                health: Health::Down,
                share: 0.0,
                since: Some(Duration::from_secs(72)),
                other_family_down: None,
            },
            Line {
                name: "lte",
                health: Health::Degraded,
                share: 0.3,
                since: None,
                other_family_down: Some("IPv6"),
            },
        ];
        assert_eq!(
            status_line(&lines),
            "fibre up 70%, cable down 1m12s, lte degraded 30% (IPv6 down)"
        );
        assert_eq!(status_line(&[]), "no uplinks");
    }
}
