//! Prometheus metrics (`metrics: 127.0.0.1:9273` in the config): typed families from the
//! Prometheus project's own client crate, updated by the agent, encoded on each scrape.
//! The HTTP side is a minimal GET /metrics responder on the daemon's runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::family::Family as AddressFamily;
use crate::health::{Health, Stats, Transition};
use crate::plan::UplinkPlan;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UplinkLabel {
    pub uplink: String,
    /// ipv4 | ipv6
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub uplink: String,
    pub family: String,
    pub to: String,
    /// probes | link | quality
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub forward: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetLabels {
    pub set: String,
    /// config (multiwan's own members) | resolver (learned, aging out)
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

type GaugeF = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    up: Family<UplinkLabel, Gauge>,
    degraded: Family<UplinkLabel, Gauge>,
    weight: Family<UplinkLabel, GaugeF>,
    share: Family<UplinkLabel, GaugeF>,
    rtt: Family<UplinkLabel, GaugeF>,
    jitter: Family<UplinkLabel, GaugeF>,
    loss: Family<UplinkLabel, GaugeF>,
    sent: Family<UplinkLabel, Counter>,
    lost: Family<UplinkLabel, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    marked: Family<UplinkLabel, Counter>,
    apply_seconds: GaugeF,
    reloads: Family<ResultLabel, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    ha_role: Family<RoleLabel, Gauge>,
    set_members: Family<SetLabels, Gauge>,
    /// Last seen totals, to turn the monitors' and rules' running totals into increments.
    seen: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            up: Family::default(),
            degraded: Family::default(),
            weight: Family::default(),
            share: Family::default(),
            rtt: Family::default(),
            jitter: Family::default(),
            loss: Family::default(),
            sent: Family::default(),
            lost: Family::default(),
            transitions: Family::default(),
            marked: Family::default(),
            apply_seconds: GaugeF::default(),
            reloads: Family::default(),
            backend_up: Family::default(),
            ha_role: Family::default(),
            set_members: Family::default(),
            seen: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        r.register(
            "multiwan_ha_role",
            "1 for this node's current VRRP role (master, backup, fault), 0 for the others",
            m.ha_role.clone(),
        );
        r.register(
            "multiwan_uplink_up",
            "1 when the uplink is up or degraded",
            m.up.clone(),
        );
        r.register(
            "multiwan_uplink_degraded",
            "1 when the uplink is degraded",
            m.degraded.clone(),
        );
        r.register(
            "multiwan_uplink_effective_weight",
            "Weight after tiers, degradation and failover",
            m.weight.clone(),
        );
        r.register(
            "multiwan_uplink_share_ratio",
            "Share of new balanced connections",
            m.share.clone(),
        );
        r.register(
            "multiwan_uplink_rtt_seconds",
            "Mean probe round-trip time over the recent window",
            m.rtt.clone(),
        );
        r.register(
            "multiwan_uplink_jitter_seconds",
            "Mean difference of consecutive round-trip times",
            m.jitter.clone(),
        );
        r.register(
            "multiwan_uplink_loss_ratio",
            "Probe loss over the recent window",
            m.loss.clone(),
        );
        r.register("multiwan_probes_sent", "Probes sent", m.sent.clone());
        r.register(
            "multiwan_probes_lost",
            "Probes lost (or answered too late)",
            m.lost.clone(),
        );
        r.register(
            "multiwan_transitions",
            "Uplink state changes",
            m.transitions.clone(),
        );
        r.register(
            "multiwan_connections_marked",
            "New connections sent to the uplink by balancing or a policy",
            m.marked.clone(),
        );
        r.register(
            "multiwan_last_apply_duration_seconds",
            "Duration of the last rule change",
            m.apply_seconds.clone(),
        );
        r.register(
            "multiwan_config_reloads",
            "Config reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "multiwan_backend_up",
            "1 when a port-forward backend is in rotation",
            m.backend_up.clone(),
        );
        r.register(
            "multiwan_set_members",
            "Members of each of multiwan's ipsets, by source: config or resolver",
            m.set_members.clone(),
        );
        Metrics { registry: r, ..m }
    }

    fn label(uplink: &str, family: AddressFamily) -> UplinkLabel {
        UplinkLabel {
            uplink: uplink.to_string(),
            family: family.name().to_string(),
        }
    }

    /// Adds to a counter what a running total grew by since the last call.
    fn advance(&self, counter: &Counter, key: (String, &'static str), total: u64) {
        let mut seen = self.seen.lock().expect("metrics lock");
        let last = seen.insert(key, total).unwrap_or(0);
        // A total that went down was reset (chain swapped, monitor rebuilt): count afresh.
        counter.inc_by(if total >= last { total - last } else { total });
    }

    pub fn update_uplink(&self, family: AddressFamily, plan: &UplinkPlan, stats: Option<&Stats>) {
        let l = Self::label(&plan.name, family);
        let key = format!("{}/{family}", plan.name);
        let state = stats.map_or(plan.health, |s| s.state);
        self.up
            .get_or_create(&l)
            .set(i64::from(state != Health::Down));
        self.degraded
            .get_or_create(&l)
            .set(i64::from(state == Health::Degraded));
        self.weight.get_or_create(&l).set(plan.effective_weight);
        self.share.get_or_create(&l).set(plan.share);
        let Some(s) = stats else { return };
        self.rtt
            .get_or_create(&l)
            .set(s.rtt.map_or(0.0, |d| d.as_secs_f64()));
        self.jitter
            .get_or_create(&l)
            .set(s.jitter.map_or(0.0, |d| d.as_secs_f64()));
        self.loss.get_or_create(&l).set(s.loss);
        self.advance(&self.sent.get_or_create(&l), (key.clone(), "sent"), s.sent);
        self.advance(&self.lost.get_or_create(&l), (key, "lost"), s.lost);
    }

    pub fn transition(&self, t: &Transition) {
        let labels = TransitionLabels {
            uplink: t.uplink.clone(),
            family: t.family.name().to_string(),
            to: t.to.to_string(),
            cause: t.cause.kind().into(),
        };
        self.transitions.get_or_create(&labels).inc();
    }

    /// The HA role gauge: one series per role, 1 on the current one.
    pub fn ha_role(&self, role: crate::ha::Role) {
        for r in crate::ha::Role::ALL {
            let label = RoleLabel {
                role: r.name().into(),
            };
            self.ha_role.get_or_create(&label).set(i64::from(r == role));
        }
    }

    pub fn applied(&self, took: Duration) {
        self.apply_seconds.set(took.as_secs_f64());
    }

    pub fn backend(&self, forward: &str, backend: &str, up: bool) {
        let labels = BackendLabels {
            forward: forward.into(),
            backend: backend.into(),
        };
        self.backend_up.get_or_create(&labels).set(i64::from(up));
    }

    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// New connections marked per uplink, as totals of the marking rules' counters (read
    /// by the kernel actor's reconcile, never by a scrape).
    pub fn set_marked(&self, family: AddressFamily, totals: &BTreeMap<String, u64>) {
        for (uplink, total) in totals {
            self.advance(
                &self.marked.get_or_create(&Self::label(uplink, family)),
                (format!("{uplink}/{family}"), "marked"),
                *total,
            );
        }
    }

    /// Each set's member counts; sets that are gone lose their series.
    pub fn set_members(
        &self,
        before: &BTreeMap<String, crate::kernel::ipset::Count>,
        now: &BTreeMap<String, crate::kernel::ipset::Count>,
    ) {
        let labels = |set: &str, source: &str| SetLabels {
            set: set.to_string(),
            source: source.to_string(),
        };
        for set in before.keys().filter(|s| !now.contains_key(*s)) {
            self.set_members.remove(&labels(set, "config"));
            self.set_members.remove(&labels(set, "resolver"));
        }
        use crate::kernel::ipset::Count;
        for (set, c) in now {
            let (source, n) = match c {
                Count::Members(n) => ("config", n),
                Count::Learned(n) => ("resolver", n),
                Count::Unknown => continue,
            };
            self.set_members
                .get_or_create(&labels(set, source))
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The exposition text (OpenMetrics, which Prometheus reads).
    /// The registry in Prometheus' text format 0.0.4 (see [`to_prometheus_text`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        to_prometheus_text(&out)
    }
}

/// Turns OpenMetrics text into Prometheus' text format 0.0.4, which every scraper and
/// `promtool check metrics` read: a counter's HELP and TYPE name its samples (`x_total`,
/// where OpenMetrics names the family `x`), and the `# EOF` and `# UNIT` lines go.
pub fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Serves GET /metrics on `addr` until the runtime ends (see [`super::http`] for the
/// limits every connection lives under).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let handler: super::http::Handler = Arc::new(move |get: super::http::Get| {
        let reply = match get.path.as_str() {
            "/metrics" => super::http::Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics.encode(),
            },
            _ => super::http::Reply::text(404, "multiwan serves /metrics\n"),
        };
        Box::pin(async move { reply })
    });
    super::http::serve(addr, "metrics", handler).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_described_under_their_sample_names() {
        let text = "# HELP x_probes Probes sent.\n# TYPE x_probes counter\nx_probes_total{u=\"a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(text),
            "# HELP x_probes_total Probes sent.\n# TYPE x_probes_total counter\nx_probes_total{u=\"a\"} 3\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
        );
    }

    #[test]
    fn encodes_prometheus_names() {
        let m = Metrics::new();
        let t = Transition {
            uplink: "isp1".into(),
            family: crate::family::Family::Ipv4,
            from: Health::Up,
            to: Health::Down,
            cause: crate::health::Cause::ProbesFailed {
                rounds: 3,
                answered: 0,
                targets: 2,
                quorum: 1,
            },
            loss: 1.0,
            rtt: None,
        };
        m.transition(&t);
        m.reloaded(true);
        use crate::kernel::ipset::Count;
        let before = BTreeMap::from([("multiwan_old".to_string(), Count::Members(1))]);
        m.set_members(&BTreeMap::new(), &before);
        let now = BTreeMap::from([
            ("multiwan_tv".to_string(), Count::Members(2)),
            ("multiwan_tv.dns".to_string(), Count::Learned(40)),
        ]);
        m.set_members(&before, &now);
        let text = m.encode();
        assert!(
            text.contains("multiwan_set_members{set=\"multiwan_tv.dns\",source=\"resolver\"} 40"),
            "{text}"
        );
        assert!(
            text.contains("multiwan_set_members{set=\"multiwan_tv\",source=\"config\"} 2"),
            "{text}"
        );
        assert!(!text.contains("multiwan_old"), "{text}");
        assert!(
            text.contains(
                "multiwan_transitions_total{uplink=\"isp1\",family=\"ipv4\",to=\"down\",cause=\"probes\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("multiwan_config_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE multiwan_last_apply_duration_seconds gauge"),
            "{text}"
        );
    }
}
