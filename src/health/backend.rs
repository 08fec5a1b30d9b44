//! Port-forward backend health: a TCP connect from the router every `interval`; a backend
//! leaves the rotation after `down_after` failures in a row and returns after `up_after`
//! successes. Pure, like the uplink monitor.

use std::time::Instant;

use crate::config::BackendCheck;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTransition {
    pub forward: String,
    pub index: usize,
    pub target: String,
    pub up: bool,
    pub reason: String,
}

#[derive(Debug)]
pub struct BackendMonitor {
    pub forward: String,
    pub index: usize,
    pub target: String,
    check: BackendCheck,
    up: bool,
    fails: u32,
    goods: u32,
    next: Instant,
    in_flight: bool,
}

impl BackendMonitor {
    pub fn new(
        forward: &str,
        index: usize,
        target: String,
        check: BackendCheck,
        now: Instant,
    ) -> Self {
        Self {
            forward: forward.into(),
            index,
            target,
            check,
            up: true,
            fails: 0,
            goods: 0,
            next: now,
            in_flight: false,
        }
    }

    pub fn up(&self) -> bool {
        self.up
    }

    pub fn check(&self) -> &BackendCheck {
        &self.check
    }

    /// True when a check should start now (one at a time per backend).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.in_flight || now < self.next {
            return false;
        }
        self.in_flight = true;
        self.next = now + self.check.interval;
        true
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.next)
    }

    pub fn on_result(&mut self, ok: bool, why: &str) -> Option<BackendTransition> {
        self.in_flight = false;
        if ok {
            self.goods += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.goods = 0;
        }
        let change = if self.up && self.fails >= self.check.down_after {
            Some((
                false,
                format!("{} failed checks in a row ({why})", self.fails),
            ))
        } else if !self.up && self.goods >= self.check.up_after {
            Some((true, format!("{} good checks in a row", self.goods)))
        } else {
            None
        };
        let (up, reason) = change?;
        self.up = up;
        Some(BackendTransition {
            forward: self.forward.clone(),
            index: self.index,
            target: self.target.clone(),
            up,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn down_after_failures_up_after_successes() {
        let check = BackendCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            down_after: 2,
            up_after: 2,
        };
        let now = Instant::now();
        let mut m = BackendMonitor::new("web", 0, "10.0.0.11".into(), check, now);
        assert!(m.due(now));
        assert!(!m.due(now), "one check at a time");
        assert_eq!(m.on_result(false, "refused"), None);
        assert!(
            !m.due(now + Duration::from_secs(1)),
            "not before the interval"
        );
        assert!(m.due(now + Duration::from_secs(2)));
        let t = m.on_result(false, "refused").unwrap();
        assert!(!t.up && t.reason == "2 failed checks in a row (refused)");
        assert_eq!(m.on_result(true, ""), None);
        assert!(m.on_result(true, "").unwrap().up);
    }
}
