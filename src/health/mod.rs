//! Uplink health: a sans-IO state machine per uplink, fed with probe results, link events
//! and the current time. It decides up / degraded / down with hysteresis; a thin task owns
//! the sockets and timers (see `probe` and `agent`). Tests step a clock instead of sleeping.
//!
//! Every `interval` a round starts: one echo request per target. A round is good when at
//! least `quorum` targets answer before their deadline (see [`rtt`]), failed as soon as
//! that can no longer happen. `down_after` failed rounds in a row take the uplink down,
//! `up_after` good rounds in a row bring it back; a link going down takes it down at once.
//!
//! A failed round is confirmed at once: the next round starts as soon as it is decided
//! instead of an interval later. Each round still fails with the same probability on a
//! lossy link, so false alarms are as rare as before; a real outage is confirmed in
//! `down_after` loss deadlines (~150 ms each on a fast path) instead of `down_after`
//! intervals. Recovery keeps the normal pace.

pub mod backend;
mod cause;
pub mod rtt;

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use cause::{Cause, Crossed};

use crate::config::{Degraded, ProbeTarget, Uplink};
pub use crate::family::Family;
use rtt::{RttEstimator, WINDOW};

/// An uplink's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Up,
    Degraded,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        })
    }
}

/// One family of one uplink: what a health machine judges and a probe socket serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Track {
    pub uplink: String,
    pub family: Family,
}

impl Track {
    pub fn new(uplink: &str, family: Family) -> Self {
        Self {
            uplink: uplink.to_string(),
            family,
        }
    }
}

/// `isp1` for IPv4 (as before IPv6 existed), `isp1 ipv6` for IPv6.
impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.family {
            Family::Ipv4 => f.write_str(&self.uplink),
            Family::Ipv6 => write!(f, "{} ipv6", self.uplink),
        }
    }
}

/// Leave `degraded` only when loss and latency are below this share of their thresholds,
/// so an uplink hovering at a threshold does not flap.
const RECOVER_FACTOR: f64 = 0.75;

/// What the machine needs from the config, with the targets resolved. One machine judges
/// one family of one uplink: IPv6 can be broken while IPv4 works.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub family: Family,
    pub targets: Vec<ProbeTarget>,
    pub interval: Duration,
    pub standby_interval: Option<Duration>,
    pub timeout: Duration,
    pub quorum: u32,
    pub down_after: u32,
    pub up_after: u32,
    pub degraded: Option<Degraded>,
}

impl Settings {
    /// The family's targets, or `fallback` (its gateway, or a point-to-point peer) when it
    /// has none; None when there is nothing to probe yet.
    pub fn for_uplink(u: &Uplink, family: Family, fallback: Option<IpAddr>) -> Option<Self> {
        let mut targets: Vec<ProbeTarget> = u
            .probe
            .targets
            .iter()
            .filter(|t| Family::of_addr(&t.addr) == family)
            .cloned()
            .collect();
        if targets.is_empty() {
            let fallback = fallback.filter(|g| Family::of_addr(g) == family)?;
            targets.push(ProbeTarget::icmp(fallback));
        }
        Some(Self {
            family,
            targets,
            interval: u.probe.interval,
            standby_interval: u.probe.standby_interval,
            timeout: u.probe.timeout,
            quorum: u.probe.quorum,
            down_after: u.probe.down_after,
            up_after: u.probe.up_after,
            degraded: u.probe.degraded.clone(),
        })
    }
}

/// An echo request the owner of the socket must send now, and how long a reply is worth
/// waiting for (after that the socket may give up on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub target: ProbeTarget,
    pub seq: u16,
    pub timeout: Duration,
}

/// A change of state, with why and the figures at the time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub uplink: String,
    pub family: Family,
    pub from: Health,
    pub to: Health,
    pub cause: Cause,
    /// Loss ratio (0..=1) over the recent window.
    pub loss: f64,
    /// Mean RTT over the recent window.
    pub rtt: Option<Duration>,
}

impl Transition {
    pub fn track(&self) -> Track {
        Track::new(&self.uplink, self.family)
    }
}

/// Figures for status and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub state: Health,
    pub link_up: bool,
    pub loss: f64,
    pub rtt: Option<Duration>,
    pub jitter: Option<Duration>,
    pub sent: u64,
    pub lost: u64,
    pub late: u64,
    pub targets: Vec<TargetStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStats {
    pub target: ProbeTarget,
    pub loss: f64,
    pub rtt: Option<Duration>,
    pub jitter: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    probe: ProbeTarget,
    rtt: RttEstimator,
    /// Recent outcomes: answered in time or not.
    outcomes: VecDeque<bool>,
}

impl Target {
    fn record(&mut self, answered: bool) {
        if self.outcomes.len() == WINDOW {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(answered);
    }

    fn loss(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 0.0;
        }
        self.outcomes.iter().filter(|a| !**a).count() as f64 / self.outcomes.len() as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Answered,
    Lost,
}

/// One echo request. Kept until its `timeout` has passed, after its round is decided, so a
/// straggler's loss is still counted and a late reply still feeds the RTT estimate.
#[derive(Debug)]
struct Slot {
    round: u64,
    target: usize,
    seq: u16,
    sent: Instant,
    deadline: Instant,
    outcome: Outcome,
}

/// The health of one uplink.
#[derive(Debug)]
pub struct Monitor {
    name: String,
    settings: Settings,
    state: Health,
    link_up: bool,
    /// The kernel can route through the uplink (interface, address and gateway present).
    routable: bool,
    targets: Vec<Target>,
    slots: VecDeque<Slot>,
    /// Rounds not decided yet, oldest first.
    open_rounds: VecDeque<u64>,
    round_id: u64,
    next_round: Instant,
    seq: u16,
    failed_row: u32,
    good_row: u32,
    counters: (u64, u64, u64),
    rng: u64,
    /// Judgement is suspended: multiwan's own routing is being repaired (see `hold`).
    held: bool,
    /// The uplink carries nothing: rounds come every `standby_interval`.
    standby: bool,
}

impl Monitor {
    /// The machine of one family of uplink `name` (the family is the settings').
    pub fn new(name: &str, settings: Settings, initial: Health, now: Instant) -> Self {
        let targets = settings
            .targets
            .iter()
            .map(|probe| Target {
                probe: probe.clone(),
                rtt: RttEstimator::default(),
                outcomes: VecDeque::new(),
            })
            .collect();
        let salt: &[u8] = match settings.family {
            Family::Ipv4 => b"",
            Family::Ipv6 => b"/6",
        };
        let seed = name
            .bytes()
            .chain(salt.iter().copied())
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        Self {
            name: name.to_string(),
            settings,
            state: initial,
            link_up: true,
            routable: true,
            targets,
            slots: VecDeque::new(),
            open_rounds: VecDeque::new(),
            round_id: 0,
            next_round: now,
            seq: 0,
            failed_row: 0,
            good_row: 0,
            counters: (0, 0, 0),
            rng: seed | 1,
            held: false,
            standby: false,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Someone removed what steers the probes (multiwan's ip rules or routes) and it is
    /// being put back: a probe lost now says nothing about the ISP. The rounds open now are
    /// forgotten, neither good nor failed, and no round starts until [`Monitor::release`].
    pub fn hold(&mut self) {
        self.held = true;
        self.slots.clear();
        self.open_rounds.clear();
    }

    /// The repair is done: probing starts again at once.
    pub fn release(&mut self, now: Instant) {
        if self.held {
            self.held = false;
            self.next_round = now;
        }
    }

    /// Starts a round when one is due; returns the echo requests to send now.
    pub fn due_probes(&mut self, now: Instant) -> Vec<ProbeRequest> {
        if !self.usable() || self.held || now < self.next_round {
            return Vec::new();
        }
        self.round_id += 1;
        let mut out = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let deadline = now + t.rtt.deadline(self.settings.timeout);
            let slot = Slot {
                round: self.round_id,
                target: i,
                seq: self.seq,
                sent: now,
                deadline,
                outcome: Outcome::Pending,
            };
            self.slots.push_back(slot);
            out.push(ProbeRequest {
                target: t.probe.clone(),
                seq: self.seq,
                timeout: self.settings.timeout,
            });
        }
        self.counters.0 += out.len() as u64;
        self.open_rounds.push_back(self.round_id);
        let next = self.next_round + self.interval();
        let next = if self.jitter_early() {
            next - self.jitter()
        } else {
            next + self.jitter()
        };
        // After a stall (suspend, overload) start afresh rather than firing a burst.
        self.next_round = if next < now {
            now + self.interval()
        } else {
            next
        };
        out
    }

    /// The time between rounds now: `standby_interval` while on standby.
    fn interval(&self) -> Duration {
        match (self.standby, self.settings.standby_interval) {
            (true, Some(s)) => s,
            _ => self.settings.interval,
        }
    }

    /// Puts the machine on standby (the uplink carries nothing) or wakes it: a wake-up
    /// starts a round at once, so a backup that is needed is judged at the normal pace.
    pub fn set_standby(&mut self, standby: bool, now: Instant) {
        if standby == self.standby {
            return;
        }
        self.standby = standby;
        if !standby && self.next_round > now {
            self.next_round = now;
        }
    }

    pub fn on_standby(&self) -> bool {
        self.standby && self.settings.standby_interval.is_some()
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Up to 5 % of the interval, early or late (see [`Monitor::jitter_early`]), so uplinks
    /// and routers do not probe in lockstep and the mean interval stays as configured.
    fn jitter(&mut self) -> Duration {
        let spread = (self.interval() / 20).as_nanos() as u64;
        Duration::from_nanos(self.next_random() % spread.max(1))
    }

    fn jitter_early(&mut self) -> bool {
        self.next_random() & 1 == 0
    }

    /// When the machine next needs [`Monitor::tick`]: a round to start or a deadline.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let deadline = self
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .map(|s| s.deadline)
            .min();
        let round = (self.usable() && !self.held).then_some(self.next_round);
        [deadline, round].into_iter().flatten().min()
    }

    /// True when a probe's deadline has passed and no reply was seen: the next
    /// [`Monitor::tick`] would count it lost.
    pub fn overdue(&self, now: Instant) -> bool {
        self.slots
            .iter()
            .any(|s| s.outcome == Outcome::Pending && s.deadline <= now)
    }

    /// An echo reply arrived `rtt` after its request.
    pub fn on_reply(&mut self, seq: u16, rtt: Duration, now: Instant) -> Vec<Transition> {
        let Some((target, outcome)) = self.slot_mut(seq).map(|s| (s.target, s.outcome)) else {
            return Vec::new();
        };
        self.targets[target].rtt.sample(rtt);
        match outcome {
            Outcome::Pending => {
                self.resolve(seq, Outcome::Answered);
            }
            Outcome::Lost => self.counters.2 += 1,
            Outcome::Answered => {}
        }
        self.settle(now)
    }

    /// A request could not be sent, or its reply never came.
    pub fn on_failure(&mut self, seq: u16, now: Instant) -> Vec<Transition> {
        if self
            .slot_mut(seq)
            .is_some_and(|s| s.outcome == Outcome::Pending)
        {
            self.resolve(seq, Outcome::Lost);
        }
        self.settle(now)
    }

    /// Counts overdue replies as lost and decides finished rounds.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let overdue: Vec<u16> = self
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending && s.deadline <= now)
            .map(|s| s.seq)
            .collect();
        for seq in overdue {
            self.resolve(seq, Outcome::Lost);
        }
        let out = self.settle(now);
        // Forget probes of decided rounds once no reply can be expected any more.
        let timeout = self.settings.timeout;
        let oldest_open = self.open_rounds.front().copied().unwrap_or(u64::MAX);
        self.slots.retain(|s| {
            s.round >= oldest_open || s.outcome == Outcome::Pending || now < s.sent + timeout
        });
        out
    }

    /// Carrier or admin state of the uplink's interface changed.
    pub fn on_link(&mut self, up: bool, now: Instant) -> Vec<Transition> {
        if up == self.link_up {
            return Vec::new();
        }
        self.link_up = up;
        self.grounded_changed(up, Cause::LinkDown, now)
    }

    /// Whether the kernel can route through the uplink at all. Without a route, probes
    /// that still get through (a socket bound to a point-to-point device is sent out of it
    /// even when no route matches) say nothing about what the uplink could carry: it is
    /// down until the route is back, then has to earn `up_after` good rounds.
    pub fn on_route(&mut self, routable: bool, now: Instant) -> Vec<Transition> {
        if routable == self.routable {
            return Vec::new();
        }
        self.routable = routable;
        self.grounded_changed(routable, Cause::NoRoute, now)
    }

    /// Link up and routable: probing runs.
    fn usable(&self) -> bool {
        self.link_up && self.routable
    }

    /// The link or the route changed; `now_fine` is that condition's new value.
    fn grounded_changed(&mut self, now_fine: bool, cause: Cause, now: Instant) -> Vec<Transition> {
        self.slots.clear();
        self.open_rounds.clear();
        self.good_row = 0;
        if now_fine {
            if self.usable() {
                // Probing restarts; the uplink still has to earn `up_after` good rounds.
                self.next_round = now;
            }
            return Vec::new();
        }
        self.failed_row = self.settings.down_after;
        self.set(Health::Down, cause).into_iter().collect()
    }

    fn slot_mut(&mut self, seq: u16) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.seq == seq)
    }

    fn resolve(&mut self, seq: u16, outcome: Outcome) {
        let Some(slot) = self.slot_mut(seq) else {
            return;
        };
        slot.outcome = outcome;
        let target = slot.target;
        let answered = outcome == Outcome::Answered;
        if !answered {
            self.counters.1 += 1;
        }
        self.targets[target].record(answered);
    }

    /// Decides finished rounds, oldest first, and returns the transitions they cause.
    fn settle(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        while let Some(&round) = self.open_rounds.front() {
            let (answered, lost, n) = self.tally(round);
            let good = if answered >= self.settings.quorum {
                true
            } else if lost > n.saturating_sub(self.settings.quorum) {
                false
            } else {
                break;
            };
            self.open_rounds.pop_front();
            if !good && self.state != Health::Down && self.usable() {
                self.next_round = self.next_round.min(now);
            }
            out.extend(self.count_round(good, answered, n));
            out.extend(self.check_degraded());
        }
        out
    }

    /// Answered, lost and total probes of a round.
    fn tally(&self, round: u64) -> (u32, u32, u32) {
        let mut t = (0, 0, 0);
        for s in self.slots.iter().filter(|s| s.round == round) {
            t.2 += 1;
            match s.outcome {
                Outcome::Answered => t.0 += 1,
                Outcome::Lost => t.1 += 1,
                Outcome::Pending => {}
            }
        }
        t
    }

    fn count_round(&mut self, good: bool, answered: u32, n: u32) -> Option<Transition> {
        if good {
            self.good_row += 1;
            self.failed_row = 0;
            if self.state == Health::Down && self.good_row >= self.settings.up_after {
                let why = Cause::ProbesAnswered {
                    rounds: self.good_row,
                };
                return self.set(Health::Up, why);
            }
        } else {
            self.failed_row += 1;
            self.good_row = 0;
            if self.state != Health::Down && self.failed_row >= self.settings.down_after {
                let why = Cause::ProbesFailed {
                    rounds: self.failed_row,
                    answered,
                    targets: n,
                    quorum: self.settings.quorum,
                };
                return self.set(Health::Down, why);
            }
        }
        None
    }

    fn check_degraded(&mut self) -> Option<Transition> {
        let d = self.settings.degraded.clone()?;
        let samples: usize = self.targets.iter().map(|t| t.outcomes.len()).sum();
        if self.state == Health::Down || samples < WINDOW / 2 {
            return None;
        }
        let (loss, rtt) = (self.loss(), self.rtt());
        let rtt_s = rtt.map_or(0.0, |r| r.as_secs_f64());
        let over_loss = d.loss.is_some_and(|l| loss > l);
        let over_rtt = d.latency.is_some_and(|l| rtt_s > l.as_secs_f64());
        let clear_loss = d.loss.is_none_or(|l| loss <= l * RECOVER_FACTOR);
        let clear_rtt = d
            .latency
            .is_none_or(|l| rtt_s <= l.as_secs_f64() * RECOVER_FACTOR);
        let rtt = rtt.unwrap_or_default();
        match self.state {
            Health::Up if over_loss || over_rtt => {
                let loss = d.loss.filter(|_| over_loss).map(|threshold| Crossed {
                    measured: loss,
                    threshold,
                });
                let latency = d.latency.filter(|_| over_rtt).map(|threshold| Crossed {
                    measured: rtt,
                    threshold,
                });
                self.set(Health::Degraded, Cause::Degraded { loss, latency })
            }
            Health::Degraded if clear_loss && clear_rtt => {
                self.set(Health::Up, Cause::QualityRecovered { loss, latency: rtt })
            }
            _ => None,
        }
    }

    fn set(&mut self, to: Health, cause: Cause) -> Option<Transition> {
        if to == self.state {
            return None;
        }
        let t = Transition {
            uplink: self.name.clone(),
            family: self.settings.family,
            from: self.state,
            to,
            cause,
            loss: self.loss(),
            rtt: self.rtt(),
        };
        if t.from == Health::Down {
            // The outage's lost probes say nothing about the path now: judge loss afresh,
            // or every recovery would be followed by a spurious `degraded`.
            for target in &mut self.targets {
                target.outcomes.clear();
            }
        }
        self.state = to;
        Some(t)
    }

    /// Loss over every target's recent window.
    pub fn loss(&self) -> f64 {
        let total: usize = self.targets.iter().map(|t| t.outcomes.len()).sum();
        if total == 0 {
            return 0.0;
        }
        let lost: usize = self
            .targets
            .iter()
            .map(|t| t.outcomes.iter().filter(|a| !**a).count())
            .sum();
        lost as f64 / total as f64
    }

    /// Mean of the targets' recent mean RTTs.
    pub fn rtt(&self) -> Option<Duration> {
        let means: Vec<Duration> = self.targets.iter().filter_map(|t| t.rtt.mean()).collect();
        (!means.is_empty()).then(|| means.iter().sum::<Duration>() / means.len() as u32)
    }

    pub fn stats(&self) -> Stats {
        let jitters: Vec<Duration> = self.targets.iter().filter_map(|t| t.rtt.jitter()).collect();
        Stats {
            state: self.state,
            link_up: self.link_up,
            loss: self.loss(),
            rtt: self.rtt(),
            jitter: (!jitters.is_empty())
                .then(|| jitters.iter().sum::<Duration>() / jitters.len() as u32),
            sent: self.counters.0,
            lost: self.counters.1,
            late: self.counters.2,
            targets: self
                .targets
                .iter()
                .map(|t| TargetStats {
                    target: t.probe.clone(),
                    loss: t.loss(),
                    rtt: t.rtt.mean(),
                    jitter: t.rtt.jitter(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
