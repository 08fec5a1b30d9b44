//! How every uplink has been doing: per uplink and family, one point a second for the last
//! hour and one a minute (the minute's averages, its worst state) for the last week, in
//! fixed-size rings; and the events that explain the curves (transitions with their
//! reasons, reloads, HA role changes, port-forward backends). Bounded: about 440 KB per
//! uplink and family, a thousand events. Pure: the agent feeds it, the status page reads it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Seconds kept at full resolution.
pub const FINE: usize = 3600;
/// Minutes kept at the coarse resolution (7 days).
pub const COARSE: usize = 7 * 24 * 60;
/// Events kept.
pub const EVENTS: usize = 1000;
/// At most this many points per series in an answer (a chart is a few hundred pixels
/// wide): keeps the page's JSON small.
pub const MAX_POINTS: usize = 240;

/// One moment of one uplink's family. 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: u32,
    /// 0 down, 1 degraded, 2 up.
    pub state: u8,
    /// Mean round-trip time, ms (NaN when nothing answered).
    pub rtt_ms: f32,
    pub jitter_ms: f32,
    /// 0..=1.
    pub loss: f32,
    pub effective_weight: f32,
    /// New connections sent to the uplink in the second (the minute's average per second
    /// on the coarse ring).
    pub connections: u32,
    /// Bytes that crossed the uplink's interface in the second, both directions (NaN when
    /// unknown: the IPv6 series, an interface that is gone).
    pub bytes: f32,
}

/// A ring of points.
#[derive(Debug, Clone)]
struct Ring {
    cap: usize,
    points: VecDeque<Point>,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            cap,
            points: VecDeque::new(),
        }
    }

    fn push(&mut self, p: Point) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    /// The points at or after `since`, thinned to at most `max` by averaging runs (the
    /// worst state of a run wins: an outage never disappears from a chart).
    fn since(&self, since: u32, max: usize) -> Vec<Point> {
        let start = self.points.partition_point(|p| p.t < since);
        let slice: Vec<Point> = self.points.range(start..).copied().collect();
        let per = slice.len().div_ceil(max.max(1)).max(1);
        slice.chunks(per).map(merge).collect()
    }
}

/// One point for a run: averages, the worst state, the last time.
fn merge(run: &[Point]) -> Point {
    let n = run.len() as f32;
    let mean = |f: fn(&Point) -> f32| {
        let known: Vec<f32> = run.iter().map(f).filter(|v| v.is_finite()).collect();
        if known.is_empty() {
            f32::NAN
        } else {
            known.iter().sum::<f32>() / known.len() as f32
        }
    };
    Point {
        t: run.last().map_or(0, |p| p.t),
        state: run.iter().map(|p| p.state).min().unwrap_or(0),
        rtt_ms: mean(|p| p.rtt_ms),
        jitter_ms: mean(|p| p.jitter_ms),
        loss: run.iter().map(|p| p.loss).sum::<f32>() / n,
        effective_weight: run.iter().map(|p| p.effective_weight).sum::<f32>() / n,
        connections: (run.iter().map(|p| u64::from(p.connections)).sum::<u64>()
            / run.len().max(1) as u64) as u32,
        bytes: mean(|p| p.bytes),
    }
}

/// One uplink's family: the last hour by the second, the last week by the minute.
#[derive(Debug, Clone)]
struct Series {
    fine: Ring,
    coarse: Ring,
    /// The minute being collected.
    minute: Vec<Point>,
}

impl Series {
    fn new() -> Series {
        Series {
            fine: Ring::new(FINE),
            coarse: Ring::new(COARSE),
            minute: Vec::new(),
        }
    }

    fn push(&mut self, p: Point) {
        if self.minute.first().is_some_and(|m| m.t / 60 != p.t / 60) {
            let done = merge(&self.minute);
            self.coarse.push(done);
            self.minute.clear();
        }
        self.minute.push(p);
        self.fine.push(p);
    }
}

/// The span a chart covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
    Week,
}

impl Range {
    pub fn parse(text: &str) -> Option<Range> {
        match text {
            "hour" => Some(Range::Hour),
            "day" => Some(Range::Day),
            "week" => Some(Range::Week),
            _ => None,
        }
    }

    fn seconds(self) -> u32 {
        match self {
            Range::Hour => 3600,
            Range::Day => 86_400,
            Range::Week => 7 * 86_400,
        }
    }
}

/// Something that happened, for the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub at_unix: f64,
    /// `uplink`, `reload`, `ha_role`, `backend`.
    pub kind: &'static str,
    /// One line, as the log says it.
    pub text: String,
    /// `down`, `degraded`, `up`, `failed`, `ok`...: how the page colours it.
    pub level: String,
}

/// Everything the page charts.
#[derive(Debug, Clone, Default)]
pub struct History {
    series: BTreeMap<String, Series>,
    events: VecDeque<Event>,
}

/// The page's answer for one range: per series, columns of numbers (compact JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charted {
    pub range_seconds: u32,
    pub series: BTreeMap<String, Columns>,
    pub events: Vec<Event>,
}

/// One series as columns: `t[i]` goes with `rtt_ms[i]`... (null for no answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Columns {
    pub t: Vec<u32>,
    pub state: Vec<u8>,
    pub rtt_ms: Vec<Option<f32>>,
    pub jitter_ms: Vec<Option<f32>>,
    pub loss_percent: Vec<f32>,
    pub effective_weight: Vec<f32>,
    /// New connections per second.
    pub connections: Vec<u32>,
    /// Bytes per second through the interface (null when unknown).
    pub bytes_per_second: Vec<Option<f32>>,
}

impl History {
    /// Records one point of a series (`fibre`, `fibre ipv6`).
    pub fn record(&mut self, series: &str, p: Point) {
        self.series
            .entry(series.to_string())
            .or_insert_with(Series::new)
            .push(p);
    }

    /// Forgets series that are no longer in the config.
    pub fn keep_only(&mut self, names: &[String]) {
        self.series.retain(|k, _| names.contains(k));
    }

    pub fn event(&mut self, e: Event) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The last `range` up to `now` (unix seconds), at most [`MAX_POINTS`] per series;
    /// events of the range, newest first.
    pub fn chart(&self, range: Range, now: u32) -> Charted {
        let since = now.saturating_sub(range.seconds());
        let series = self
            .series
            .iter()
            .map(|(name, s)| {
                let points = match range {
                    Range::Hour => s.fine.since(since, MAX_POINTS),
                    _ => s.coarse.since(since, MAX_POINTS),
                };
                (name.clone(), columns(&points))
            })
            .collect();
        let events = self
            .events
            .iter()
            .rev()
            .filter(|e| e.at_unix >= f64::from(since))
            .take(200)
            .cloned()
            .collect();
        Charted {
            range_seconds: range.seconds(),
            series,
            events,
        }
    }
}

fn columns(points: &[Point]) -> Columns {
    let finite = |v: f32| v.is_finite().then_some((v * 1000.0).round() / 1000.0);
    let mut c = Columns::default();
    for p in points {
        c.t.push(p.t);
        c.state.push(p.state);
        c.rtt_ms.push(finite(p.rtt_ms));
        c.jitter_ms.push(finite(p.jitter_ms));
        c.loss_percent.push((p.loss * 1000.0).round() / 10.0);
        c.effective_weight
            .push((p.effective_weight * 100.0).round() / 100.0);
        c.connections.push(p.connections);
        c.bytes_per_second
            .push(p.bytes.is_finite().then_some(p.bytes.round()));
    }
    c
}

#[cfg(test)]
mod tests;
