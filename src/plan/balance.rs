//! Which uplinks share new connections, and the `statistic` cascade that realises the shares.
//!
//! The cascade tests uplink i with probability w_i / (w_i + ... + w_n), given that no earlier
//! rule fired; multiplied out, uplink i receives exactly w_i / sum(w). Independent equal
//! probabilities (the tutorials' bug) would not.

use serde::Serialize;

use super::{Family, Health};
use crate::config::{Config, Nat6, Uplink, WhenAllDown};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub uplink: String,
    /// Configured weight, scaled when degraded.
    pub weight: f64,
    /// Fraction of new connections (0..=1).
    pub share: f64,
    /// The cascade rule's probability (1 for the last, unconditional rule).
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Balance {
    /// The best tier with an uplink up carries all unpinned traffic.
    Weighted { tier: u8, members: Vec<Member> },
    /// No uplink is up and `when_all_down: unreachable`: new connections are refused.
    Unreachable,
}

impl Balance {
    pub fn members(&self) -> &[Member] {
        match self {
            Balance::Weighted { members, .. } => members,
            Balance::Unreachable => &[],
        }
    }
}

/// Uplinks that count as usable: up or degraded. When none is, `when_all_down: balance_all`
/// treats every uplink as up (a dead path is better than none), so the plan is the all-up plan.
pub fn effective_health(config: &Config, health: impl Fn(&Uplink) -> Health) -> Vec<Health> {
    let states: Vec<Health> = config.uplinks.iter().map(&health).collect();
    let any_up = states.iter().any(|h| *h != Health::Down);
    if !any_up && config.when_all_down == WhenAllDown::BalanceAll {
        return vec![Health::Up; states.len()];
    }
    states
}

/// The balance over the best tier that has a usable uplink. An IPv6 side with `nat6: none`
/// is never balanced onto: only connections from its own prefix may use it.
pub fn balance(config: &Config, family: Family, states: &[Health]) -> Balance {
    let balanced =
        |u: &Uplink| family == Family::Ipv4 || u.ipv6.as_ref().is_none_or(|s| s.nat != Nat6::None);
    let usable = |i: usize| states[i] != Health::Down && balanced(&config.uplinks[i]);
    let best_tier = (0..config.uplinks.len())
        .filter(|&i| usable(i))
        .map(|i| config.uplinks[i].tier)
        .min();
    let Some(tier) = best_tier else {
        return Balance::Unreachable;
    };
    let weights: Vec<(String, f64)> = config
        .uplinks
        .iter()
        .enumerate()
        .filter(|(i, u)| usable(*i) && u.tier == tier)
        .map(|(i, u)| (u.name.clone(), effective_weight(u, states[i])))
        .collect();
    Balance::Weighted {
        tier,
        members: cascade(&weights),
    }
}

pub fn effective_weight(uplink: &Uplink, health: Health) -> f64 {
    let w = f64::from(uplink.weight);
    match (health, &uplink.probe.degraded) {
        (Health::Down, _) => 0.0,
        (Health::Degraded, Some(d)) => w * d.weight_factor,
        _ => w,
    }
}

/// Shares and conditional probabilities for weights in cascade order.
pub fn cascade(weights: &[(String, f64)]) -> Vec<Member> {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut remaining = total;
    weights
        .iter()
        .enumerate()
        .map(|(i, (name, w))| {
            let last = i + 1 == weights.len();
            let probability = if last { 1.0 } else { w / remaining };
            remaining -= w;
            Member {
                uplink: name.clone(),
                weight: *w,
                share: w / total,
                probability,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rules::probability_text;

    fn weights(ws: &[f64]) -> Vec<(String, f64)> {
        ws.iter()
            .enumerate()
            .map(|(i, w)| (format!("u{i}"), *w))
            .collect()
    }

    /// Multiplies the cascade out from the probabilities as printed for iptables.
    fn realised(members: &[Member]) -> Vec<f64> {
        let mut left = 1.0;
        members
            .iter()
            .map(|m| {
                let p: f64 = probability_text(m.probability).parse().unwrap();
                let got = left * p;
                left -= got;
                got
            })
            .collect()
    }

    #[test]
    fn printed_cascade_realises_the_weights() {
        for ws in [
            vec![70.0, 30.0],
            vec![50.0, 30.0, 20.0],
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            vec![1000.0, 1.0, 333.0, 7.0],
            vec![17.5, 3.0, 0.25],
        ] {
            let members = cascade(&weights(&ws));
            let total: f64 = ws.iter().sum();
            for (got, w) in realised(&members).iter().zip(&ws) {
                assert!(
                    (got - w / total).abs() < 1e-6,
                    "{ws:?}: {got} vs {}",
                    w / total
                );
            }
            assert_eq!(members.last().unwrap().probability, 1.0);
        }
    }

    #[test]
    fn equal_weights_are_not_equal_probabilities() {
        let m = cascade(&weights(&[1.0, 1.0, 1.0, 1.0]));
        let p: Vec<f64> = m.iter().map(|m| m.probability).collect();
        assert_eq!(p, vec![0.25, 1.0 / 3.0, 0.5, 1.0]);
    }
}
