//! The health machine driven by a discrete-event simulation: a virtual clock, replies
//! scheduled by a test-chosen network, no sleeping.

use super::*;

use std::net::Ipv4Addr;

const T1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const T2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn settings(targets: &[IpAddr]) -> Settings {
    Settings {
        family: Family::Ipv4,
        targets: targets.iter().map(|t| ProbeTarget::icmp(*t)).collect(),
        interval: ms(500),
        standby_interval: None,
        timeout: ms(1000),
        quorum: 1,
        down_after: 3,
        up_after: 5,
        degraded: None,
    }
}

/// The network: given a target and the time since start, the RTT of the reply, or None.
type Network = Box<dyn FnMut(IpAddr, Duration) -> Option<Duration>>;

struct Sim {
    m: Monitor,
    start: Instant,
    now: Instant,
    inflight: Vec<(Instant, u16, Duration)>,
    net: Network,
    log: Vec<(Duration, Transition)>,
}

impl Sim {
    fn new(s: Settings, initial: Health, net: Network) -> Self {
        let start = Instant::now();
        Sim {
            m: Monitor::new("isp1", s, initial, start),
            start,
            now: start,
            inflight: Vec::new(),
            net,
            log: Vec::new(),
        }
    }

    fn record(&mut self, ts: Vec<Transition>) {
        let at = self.now - self.start;
        self.log.extend(ts.into_iter().map(|t| (at, t)));
    }

    fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        loop {
            let reply = self.inflight.iter().map(|r| r.0).min();
            let next = [reply, self.m.next_wakeup()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            if next >= end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.inflight.drain(..).partition(|r| r.0 <= now);
            self.inflight = rest;
            for (_, seq, rtt) in due {
                let ts = self.m.on_reply(seq, rtt, now);
                self.record(ts);
            }
            let ts = self.m.tick(now);
            self.record(ts);
            for p in self.m.due_probes(now) {
                // No reply at all: the deadline counts it lost.
                if let Some(rtt) = (self.net)(p.target.addr, now - self.start) {
                    self.inflight.push((now + rtt, p.seq, rtt));
                }
            }
        }
    }

    fn link(&mut self, up: bool, at: Duration) {
        self.run_until(at);
        let ts = self.m.on_link(up, self.now);
        self.record(ts);
    }

    fn route(&mut self, routable: bool, at: Duration) {
        self.run_until(at);
        let ts = self.m.on_route(routable, self.now);
        self.record(ts);
    }

    fn first(&self, to: Health) -> Option<Duration> {
        self.log.iter().find(|(_, t)| t.to == to).map(|(at, _)| *at)
    }
}

fn outage(from: Duration, to: Duration) -> Network {
    Box::new(move |_, now| (now < from || now >= to).then_some(ms(1)))
}

#[test]
fn hard_outage_is_detected_in_about_a_second() {
    let mut sim = Sim::new(
        settings(&[T1, T2]),
        Health::Up,
        outage(ms(10_000), ms(u64::MAX / 4)),
    );
    sim.run_until(ms(14_000));
    let down = sim.first(Health::Down).expect("goes down");
    let after = down - ms(10_000);
    // The first failing round starts within one interval; it and two confirmation rounds
    // started at once are each lost after the 150 ms floor, not the full 1 s timeout.
    assert!(
        after >= ms(450) && after <= ms(1_000),
        "detected {after:?} after the outage"
    );
    assert!(
        sim.log[0]
            .1
            .cause
            .to_string()
            .contains("3 failed rounds in a row"),
        "{:?}",
        sim.log[0].1
    );
    assert_eq!(sim.log.len(), 1);
}

#[test]
fn recovery_needs_up_after_good_rounds() {
    let mut sim = Sim::new(
        settings(&[T1, T2]),
        Health::Up,
        outage(ms(5_000), ms(10_000)),
    );
    sim.run_until(ms(20_000));
    let up = sim
        .log
        .iter()
        .find(|(_, t)| t.to == Health::Up)
        .map(|(at, _)| *at)
        .expect("comes back");
    let after = up - ms(10_000);
    assert!(
        after >= ms(2_000) && after <= ms(3_100),
        "up {after:?} after the repair"
    );
    assert_eq!(sim.log[1].1.cause.to_string(), "5 good rounds in a row");
}

#[test]
fn one_dead_target_of_two_keeps_quorum_one_up() {
    let net: Network = Box::new(|t, _| (t == T2).then_some(ms(5)));
    let mut sim = Sim::new(settings(&[T1, T2]), Health::Up, net);
    sim.run_until(ms(60_000));
    assert!(sim.log.is_empty(), "{:?}", sim.log);
    let stats = sim.m.stats();
    assert!(
        (stats.loss - 0.5).abs() < 0.01,
        "half the probes lost: {}",
        stats.loss
    );
    assert_eq!(stats.targets[0].loss, 1.0);
}

#[test]
fn quorum_two_needs_both_targets() {
    let net: Network = Box::new(|t, _| (t == T2).then_some(ms(5)));
    let mut s = settings(&[T1, T2]);
    s.quorum = 2;
    let mut sim = Sim::new(s, Health::Up, net);
    sim.run_until(ms(5_000));
    assert!(sim.first(Health::Down).is_some());
}

#[test]
fn link_down_is_immediate_and_link_up_must_earn_its_rounds() {
    let mut sim = Sim::new(settings(&[T1]), Health::Up, Box::new(|_, _| Some(ms(1))));
    sim.link(false, ms(3_000));
    assert_eq!(sim.first(Health::Down), Some(ms(3_000)));
    assert_eq!(sim.log[0].1.cause, Cause::LinkDown);
    assert!(
        sim.m.next_wakeup().is_none(),
        "no probing while the link is down"
    );
    sim.link(true, ms(6_000));
    assert_eq!(sim.m.state(), Health::Down);
    sim.run_until(ms(10_000));
    let up = sim.first(Health::Up).expect("back up");
    assert!(
        up >= ms(8_000) && up < ms(9_000),
        "{up:?}: five rounds after link up"
    );
}

#[test]
fn an_uplink_without_a_route_is_down_whatever_its_probes_say() {
    // Probes keep answering (a socket bound to a point-to-point device gets out without a
    // route), but there is no route: down at once, and back only with the route.
    let mut sim = Sim::new(settings(&[T1]), Health::Up, Box::new(|_, _| Some(ms(1))));
    sim.route(false, ms(2_000));
    assert_eq!(sim.first(Health::Down), Some(ms(2_000)));
    assert_eq!(sim.log[0].1.cause, Cause::NoRoute);
    sim.run_until(ms(8_000));
    assert_eq!(
        sim.m.state(),
        Health::Down,
        "answers without a route do not count"
    );
    // The link comes and goes meanwhile: still no route, still down.
    sim.link(false, ms(8_100));
    sim.link(true, ms(8_200));
    sim.run_until(ms(10_000));
    assert_eq!(sim.m.state(), Health::Down);
    sim.route(true, ms(10_000));
    sim.run_until(ms(14_000));
    let up = sim
        .log
        .iter()
        .find(|(at, t)| *at >= ms(10_000) && t.to == Health::Up);
    let up = up.expect("back with its route").0;
    assert!(
        up >= ms(12_000) && up < ms(13_000),
        "{up:?}: five rounds after"
    );
}

#[test]
fn a_backup_on_standby_probes_slowly_and_wakes_at_once() {
    let s = Settings {
        standby_interval: Some(ms(5_000)),
        ..settings(&[T1])
    };
    let mut sim = Sim::new(s, Health::Up, Box::new(|_, _| Some(ms(1))));
    sim.run_until(ms(1_000));
    let normal = sim.m.stats().sent;
    sim.m.set_standby(true, sim.now);
    sim.run_until(ms(21_000));
    let slow = sim.m.stats().sent - normal;
    assert!((3..=6).contains(&slow), "{slow} rounds in 20 s on standby");
    sim.m.set_standby(false, sim.now);
    sim.run_until(ms(21_010));
    assert_eq!(
        sim.m.stats().sent - normal - slow,
        1,
        "a round at once on waking"
    );
    sim.run_until(ms(26_000));
    assert!(
        sim.m.stats().sent - normal - slow >= 10,
        "the normal pace again"
    );
}

#[test]
fn ten_percent_loss_never_takes_two_targets_down() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let net: Network = Box::new(move |_, _| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 100 >= 10).then_some(ms(20))
    });
    let mut sim = Sim::new(settings(&[T1, T2]), Health::Up, net);
    sim.run_until(ms(600_000));
    assert!(sim.log.is_empty(), "flapped: {:?}", sim.log);
    let loss = sim.m.stats().loss;
    assert!(loss > 0.02 && loss < 0.25, "{loss}");
}

#[test]
fn late_reply_counts_as_lost_but_feeds_the_rtt() {
    // 10 ms normally; the 10th reply takes 400 ms, past the 150 ms floor.
    let mut n = 0;
    let net: Network = Box::new(move |_, _| {
        n += 1;
        Some(if n == 10 { ms(400) } else { ms(10) })
    });
    let mut sim = Sim::new(settings(&[T1]), Health::Up, net);
    sim.run_until(ms(8_000));
    let stats = sim.m.stats();
    assert_eq!(stats.late, 1, "{stats:?}");
    assert_eq!(stats.lost, 1);
    assert!(sim.log.is_empty());
    assert!(
        stats.rtt.unwrap() > ms(20),
        "the late sample raised the mean: {:?}",
        stats.rtt
    );
}

#[test]
fn degraded_has_hysteresis() {
    // Loss 30 % for 20 s, then exactly 20 % (at the threshold: not above it, but not clear
    // of it either), then none. Periodic patterns, so every window holds the same share.
    let mut n = 0u64;
    let net: Network = Box::new(move |_, now| {
        n += 1;
        let lost = if now < ms(20_000) {
            n % 10 < 3
        } else if now < ms(40_000) {
            n.is_multiple_of(5)
        } else {
            false
        };
        (!lost).then_some(ms(5))
    });
    let mut s = settings(&[T1, T2]);
    s.degraded = Some(Degraded {
        loss: Some(0.2),
        latency: None,
        weight_factor: 0.25,
    });
    let mut sim = Sim::new(s, Health::Up, net);
    sim.run_until(ms(20_000));
    assert_eq!(sim.m.state(), Health::Degraded, "{:?}", sim.log);
    assert!(
        sim.log[0].1.cause.to_string().starts_with("loss"),
        "{:?}",
        sim.log[0]
    );
    sim.run_until(ms(40_000));
    assert_eq!(
        sim.m.state(),
        Health::Degraded,
        "20 % is not clear of the threshold: {:?}",
        sim.log
    );
    sim.run_until(ms(60_000));
    assert_eq!(sim.m.state(), Health::Up);
    assert_eq!(sim.log.len(), 2, "{:?}", sim.log);
}

#[test]
fn latency_degrades_too() {
    let net: Network = Box::new(|_, now| Some(if now < ms(10_000) { ms(20) } else { ms(400) }));
    let mut s = settings(&[T1]);
    s.degraded = Some(Degraded {
        loss: None,
        latency: Some(ms(300)),
        weight_factor: 0.25,
    });
    s.timeout = ms(2_000);
    let mut sim = Sim::new(s, Health::Up, net);
    sim.run_until(ms(30_000));
    assert_eq!(sim.m.state(), Health::Degraded, "{:?}", sim.log);
}

#[test]
fn initially_down_comes_up_after_good_rounds() {
    let mut sim = Sim::new(settings(&[T1]), Health::Down, Box::new(|_, _| Some(ms(1))));
    sim.run_until(ms(5_000));
    let up = sim.first(Health::Up).expect("comes up");
    assert!(up >= ms(1_900) && up <= ms(2_200), "{up:?}");
}

#[test]
fn recovery_is_not_followed_by_degraded_from_the_outage_losses() {
    let mut s = settings(&[T1, T2]);
    s.degraded = Some(Degraded {
        loss: Some(0.2),
        latency: None,
        weight_factor: 0.25,
    });
    let mut sim = Sim::new(s, Health::Up, outage(ms(5_000), ms(10_000)));
    sim.run_until(ms(30_000));
    let states: Vec<Health> = sim.log.iter().map(|(_, t)| t.to).collect();
    assert_eq!(states, vec![Health::Down, Health::Up], "{:?}", sim.log);
}

#[test]
fn rounds_lost_while_held_do_not_count() {
    // Every probe is lost from 1 s to 3 s: without a hold, that is an outage...
    let mut plain = Sim::new(
        settings(&[T1, T2]),
        Health::Up,
        outage(ms(1_000), ms(3_000)),
    );
    plain.run_until(ms(10_000));
    assert!(plain.first(Health::Down).is_some(), "{:?}", plain.log);
    // ...but while multiwan's own rules are being repaired it says nothing about the ISP.
    let mut sim = Sim::new(
        settings(&[T1, T2]),
        Health::Up,
        outage(ms(1_000), ms(3_000)),
    );
    sim.run_until(ms(1_000));
    sim.m.hold();
    sim.run_until(ms(3_000));
    assert_eq!(
        sim.m.next_wakeup(),
        None,
        "nothing to wake up for while held"
    );
    sim.m.release(sim.start + ms(3_000));
    sim.run_until(ms(10_000));
    assert!(sim.log.is_empty(), "nothing decided: {:?}", sim.log);
    assert_eq!(sim.m.state(), Health::Up);
    assert!(sim.m.stats().sent > 20, "probing went on after the release");
}

#[test]
fn overdue_is_true_only_past_a_pending_probes_deadline() {
    let start = Instant::now();
    let mut m = Monitor::new("isp1", settings(&[T1]), Health::Up, start);
    assert!(!m.overdue(start + ms(5_000)), "nothing sent yet");
    let sent = m.due_probes(start);
    assert_eq!(sent.len(), 1);
    // No RTT known yet: the deadline is the timeout.
    assert!(!m.overdue(start + ms(900)));
    assert!(m.overdue(start + ms(1_100)));
    // The reply, read late: no longer overdue, and nothing changes.
    let ts = m.on_reply(sent[0].seq, ms(1), start + ms(1_100));
    assert!(ts.is_empty());
    assert!(!m.overdue(start + ms(1_100)));
}
