//! Why an uplink changed state, as a value. Every consumer derives what it needs from it:
//! the log's and the hooks' text (one `Display`), the metrics' `cause` label, and whether
//! an HA node may delete the uplink's connections. Nobody parses the text.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A threshold crossed: the value measured and the limit it was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossed<T> {
    pub measured: T,
    pub threshold: T,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// `down_after` probe rounds in a row missed their quorum.
    ProbesFailed {
        rounds: u32,
        /// Targets that answered the last round, of `targets`.
        answered: u32,
        targets: u32,
        quorum: u32,
    },
    /// `up_after` probe rounds in a row met their quorum.
    ProbesAnswered { rounds: u32 },
    /// The uplink's own interface lost carrier or was set down: nothing the ISP did.
    LinkDown,
    /// The uplink cannot be routed through: its interface, its address or its gateway is
    /// missing (a PPP session that dropped, a DHCP lease not yet there).
    NoRoute,
    /// Loss (ratio 0..=1) or mean RTT above the `degraded` thresholds.
    Degraded {
        loss: Option<Crossed<f64>>,
        latency: Option<Crossed<Duration>>,
    },
    /// Loss and latency back under 75 % of the thresholds.
    QualityRecovered { loss: f64, latency: Duration },
}

impl Cause {
    /// The metrics label: `probes`, `link` or `quality`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cause::ProbesFailed { .. } | Cause::ProbesAnswered { .. } => "probes",
            Cause::LinkDown | Cause::NoRoute => "link",
            Cause::Degraded { .. } | Cause::QualityRecovered { .. } => "quality",
        }
    }

    /// The uplink's own link or route changed (carrier, admin state, address, gateway),
    /// not what probes measured.
    pub fn is_link(&self) -> bool {
        matches!(self, Cause::LinkDown | Cause::NoRoute)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ProbesFailed {
                rounds,
                answered,
                targets,
                quorum,
            } => write!(
                f,
                "{rounds} failed rounds in a row ({answered} of {targets} targets answered the last, quorum {quorum})"
            ),
            Cause::ProbesAnswered { rounds } => write!(f, "{rounds} good rounds in a row"),
            Cause::LinkDown => f.write_str("link down"),
            Cause::NoRoute => f.write_str("no route: its interface, address or gateway is missing"),
            Cause::Degraded { loss, latency } => {
                let mut parts = Vec::new();
                if let Some(l) = loss {
                    parts.push(format!(
                        "loss {:.0}% above {:.0}%",
                        l.measured * 100.0,
                        l.threshold * 100.0
                    ));
                }
                if let Some(l) = latency {
                    parts.push(format!(
                        "latency {:.1}ms above {:.1}ms",
                        ms(l.measured),
                        ms(l.threshold)
                    ));
                }
                f.write_str(&parts.join(", "))
            }
            Cause::QualityRecovered { loss, latency } => write!(
                f,
                "loss {:.0}% and latency {:.1}ms back under 75% of the thresholds",
                loss * 100.0,
                ms(*latency)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_and_one_label_per_cause() {
        let failed = Cause::ProbesFailed {
            rounds: 3,
            answered: 0,
            targets: 2,
            quorum: 1,
        };
        assert_eq!(
            failed.to_string(),
            "3 failed rounds in a row (0 of 2 targets answered the last, quorum 1)"
        );
        assert_eq!(failed.kind(), "probes");
        assert!(!failed.is_link() && Cause::LinkDown.is_link());
        let degraded = Cause::Degraded {
            loss: Some(Crossed {
                measured: 0.3,
                threshold: 0.2,
            }),
            latency: Some(Crossed {
                measured: Duration::from_millis(150),
                threshold: Duration::from_millis(100),
            }),
        };
        assert_eq!(
            degraded.to_string(),
            "loss 30% above 20%, latency 150.0ms above 100.0ms"
        );
        assert_eq!(degraded.kind(), "quality");
        assert_eq!(Cause::LinkDown.kind(), "link");
    }
}
