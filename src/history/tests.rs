//! The history rings: bounded, thinned for charts, outages kept visible.

use super::*;

fn point(t: u32, state: u8, rtt: f32) -> Point {
    Point {
        t,
        state,
        rtt_ms: rtt,
        jitter_ms: 0.1,
        loss: if state == 0 { 1.0 } else { 0.0 },
        effective_weight: 50.0,
        connections: 3,
        bytes: 100.0,
    }
}

#[test]
fn an_hour_by_the_second_is_thinned_and_keeps_an_outage_visible() {
    let mut h = History::default();
    let start = 1_000_000;
    for i in 0..3600 {
        // One second of outage in the middle.
        let state = if i == 1800 { 0 } else { 2 };
        h.record("fibre", point(start + i, state, 10.0));
    }
    let c = h.chart(Range::Hour, start + 3599);
    let s = &c.series["fibre"];
    assert!(
        s.t.len() <= MAX_POINTS && s.t.len() >= MAX_POINTS - 1,
        "{}",
        s.t.len()
    );
    assert_eq!(
        s.state.iter().filter(|x| **x == 0).count(),
        1,
        "the outage is a down point"
    );
    assert!(s.rtt_ms.iter().all(|r| *r == Some(10.0)));
}

#[test]
fn minutes_are_folded_into_the_week_and_rings_are_bounded() {
    let mut h = History::default();
    let start = 60 * 1_000_000;
    for i in 0..(FINE as u32 + 600) {
        // Nothing answers during minute 3.
        let rtt = if (180..240).contains(&i) {
            f32::NAN
        } else {
            20.0
        };
        h.record("cable", point(start + i, 2, rtt));
    }
    let s = &h.series["cable"];
    assert_eq!(s.fine.points.len(), FINE, "the hour ring is full, not more");
    assert_eq!(
        s.coarse.points.len(),
        (FINE + 600) / 60 - 1,
        "one point per finished minute"
    );
    let week = h.chart(Range::Week, start + FINE as u32 + 600);
    let w = &week.series["cable"];
    assert_eq!(w.rtt_ms[3], None, "a minute with no answer has no RTT");
    assert_eq!(w.rtt_ms[4], Some(20.0));
}

#[test]
fn events_are_bounded_newest_first_and_of_the_range() {
    let mut h = History::default();
    for i in 0..(EVENTS + 10) {
        h.event(Event {
            at_unix: i as f64,
            kind: "uplink",
            text: format!("e{i}"),
            level: "down".into(),
        });
    }
    assert_eq!(h.events.len(), EVENTS);
    let c = h.chart(Range::Hour, 4000);
    assert_eq!(c.events[0].text, format!("e{}", EVENTS + 9));
    assert!(c.events.len() <= 200);
    let old = h.chart(Range::Hour, 100_000);
    assert!(old.events.is_empty(), "nothing older than the range");
}

#[test]
fn memory_is_bounded_for_four_dual_stack_uplinks() {
    // The bound: 4 MB for 4 uplinks (both families here: 8 series).
    let per_series = (FINE + COARSE + 60) * std::mem::size_of::<Point>();
    let events = EVENTS * (std::mem::size_of::<Event>() + 120);
    assert_eq!(std::mem::size_of::<Point>(), 32);
    assert!(
        8 * per_series + events <= 4 << 20,
        "{}",
        8 * per_series + events
    );
}

#[test]
fn a_week_chart_answers_in_under_50_kb_for_four_uplinks() {
    let mut h = History::default();
    let start = 60 * 1_000_000;
    for name in ["a", "b", "c", "d"] {
        for i in 0..(COARSE as u32) {
            h.series
                .entry(name.into())
                .or_insert_with(Series::new)
                .coarse
                .push(point(start + i * 60, 2, 12.345));
        }
    }
    let c = h.chart(Range::Week, start + COARSE as u32 * 60);
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.len() < 50_000, "{}", json.len());
}
