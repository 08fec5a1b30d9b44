//! Round-trip estimation per probe target, as TCP computes its retransmission timeout
//! (RFC 6298): a reply overdue by far more than the path's usual RTT is counted lost early
//! instead of waiting the full configured timeout.

use std::collections::VecDeque;
use std::time::Duration;

/// The shortest a probe is waited for, whatever the RTT: below this a busy router's
/// scheduling noise would count as loss.
pub const MIN_DEADLINE: Duration = Duration::from_millis(150);

/// How many recent samples the rolling mean, jitter and loss use.
pub const WINDOW: usize = 20;

#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    srtt: Option<f64>,
    rttvar: f64,
    /// Recent RTT samples in seconds (late replies included).
    samples: VecDeque<f64>,
}

impl RttEstimator {
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64();
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(s) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (s - r).abs();
                self.srtt = Some(0.875 * s + 0.125 * r);
            }
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(r);
    }

    /// How long to wait for a reply before counting it lost: srtt + 4·rttvar, at least
    /// [`MIN_DEADLINE`], at most `timeout` (and `timeout` until a first reply).
    pub fn deadline(&self, timeout: Duration) -> Duration {
        match self.srtt {
            None => timeout,
            Some(s) => {
                let rto = Duration::from_secs_f64(s + 4.0 * self.rttvar);
                rto.max(MIN_DEADLINE).min(timeout)
            }
        }
    }

    /// Mean of the recent samples.
    pub fn mean(&self) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let sum: f64 = self.samples.iter().sum();
        Some(Duration::from_secs_f64(sum / self.samples.len() as f64))
    }

    /// Mean absolute difference of consecutive samples (RFC 3550's jitter, unsmoothed).
    pub fn jitter(&self) -> Option<Duration> {
        if self.samples.len() < 2 {
            return None;
        }
        let diffs: Vec<f64> = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| (a - b).abs())
            .collect();
        Some(Duration::from_secs_f64(
            diffs.iter().sum::<f64>() / diffs.len() as f64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn deadline_follows_rtt_with_floor_and_cap() {
        let mut e = RttEstimator::default();
        assert_eq!(
            e.deadline(ms(1000)),
            ms(1000),
            "no sample yet: the full timeout"
        );
        for _ in 0..10 {
            e.sample(ms(20));
        }
        assert_eq!(
            e.deadline(ms(1000)),
            MIN_DEADLINE,
            "a steady 20 ms path gets the floor, not a second"
        );
        let mut slow = RttEstimator::default();
        for r in [300, 500, 250, 600] {
            slow.sample(ms(r));
        }
        let d = slow.deadline(ms(1000));
        assert!(d > ms(600) && d <= ms(1000), "{d:?}");
    }

    #[test]
    fn mean_and_jitter_keep_microseconds() {
        let mut e = RttEstimator::default();
        for us in [50, 70, 50, 70] {
            e.sample(Duration::from_micros(us));
        }
        assert_eq!(e.mean().unwrap().as_micros(), 60);
        assert_eq!(e.jitter().unwrap().as_micros(), 20);
    }
}
