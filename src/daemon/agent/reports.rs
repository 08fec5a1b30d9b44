//! The agent's side of the kernel actor: what it sends on a health change, and what it
//! makes of each report (the plan now installed, what was read from the kernel, what was
//! changed, deleted or refused), for the log, status and metrics.

use std::time::{Instant, SystemTime};

use tracing::{error, info, warn};

use super::Agent;
use crate::daemon::hooks::HookEvent;
use crate::health::{Health, Track, Transition};
use crate::kernel::actor::{Purpose, Report};
use crate::plan::Plan;

impl Agent {
    /// Health changed: tell the kernel actor (it swaps the changed chains, then deletes the
    /// dead uplinks' connections), and everyone else.
    pub(super) fn act(&mut self) {
        let transitions = std::mem::take(&mut self.pending);
        // A recovery is news; anything else is a warning (`journalctl -p warning`).
        macro_rules! changed {
            ($level:ident, $t:expr) => {
                $level!(
                    uplink = %$t.uplink,
                    from = %$t.from,
                    to = %$t.to,
                    reason = %$t.cause,
                    loss_percent = format!("{:.1}", $t.loss * 100.0),
                    rtt_ms = $t.rtt.map(|r| format!("{:.3}", r.as_secs_f64() * 1000.0)).unwrap_or_default(),
                    family = %$t.family,
                    "uplink state changed"
                )
            };
        }
        for t in &transitions {
            if t.to == Health::Up {
                changed!(info, t);
            } else {
                changed!(warn, t);
            }
        }
        let (flushable, withheld): (Vec<Transition>, Vec<Transition>) = transitions
            .iter()
            .cloned()
            .partition(|t| self.may_flush_for(t));
        self.log_withheld(&withheld);
        let mut desired = self.desired(Purpose::Change);
        desired.flush_for = flushable;
        self.kernel.install(desired);
        self.replan();
        for t in &transitions {
            self.announce(t);
        }
    }

    /// Records a transition for status, metrics and hooks (hooks run in the background).
    fn announce(&mut self, t: &Transition) {
        let now = SystemTime::now();
        self.since.insert(t.track(), now);
        self.last.insert(t.track(), (t.clone(), now));
        self.metrics.transition(t);
        let family = match t.family {
            crate::family::Family::Ipv4 => String::new(),
            crate::family::Family::Ipv6 => " (IPv6)".into(),
        };
        self.history_event(
            "uplink",
            format!("{}{family}: {} → {}: {}", t.uplink, t.from, t.to, t.cause),
            &t.to.to_string(),
        );
        let active: Vec<String> = self
            .health(t.family)
            .into_iter()
            .filter(|(_, h)| *h != Health::Down)
            .map(|(n, _)| n)
            .collect();
        let interface = self
            .config
            .uplink(&t.uplink)
            .map_or("", |u| u.interface.as_str());
        let event = HookEvent::uplink(t, interface, &active);
        self.hooks
            .run_all(&self.config.hooks, &event, self.config.hook_timeout);
    }

    pub(super) fn on_report(&mut self, mut report: Report) {
        let installed = report.error.is_none();
        for line in &report.settings {
            warn!("{line}");
        }
        if let (Some(plan), Some(counters)) = (&report.plan, &report.counters) {
            self.policy_hits.clear();
            for fp in plan.families() {
                for (i, n) in fp.hits_by_policy(counters) {
                    *self.policy_hits.entry(i).or_default() += n;
                }
                let marked = fp.marked_by_uplink(counters);
                self.metrics.set_marked(fp.family, &marked);
                for (uplink, total) in marked {
                    self.marked.insert(Track::new(&uplink, fp.family), total);
                }
            }
        }
        if let Some(counts) = report.set_counts.take() {
            self.metrics.set_members(&self.set_counts, &counts);
            self.set_counts = counts;
        }
        self.log_changes(&report);
        let reloaded = report.purposes.contains(&Purpose::Reload);
        if let Some(e) = report.error.take() {
            let why = crate::error_chain(&e);
            // Only the reload's own report may consume the previous config: a reconcile that
            // failed meanwhile (under the old config) must leave it for the verdict.
            let previous = if reloaded { self.previous.take() } else { None };
            match previous {
                Some(previous) => self.revert(previous, why),
                None => {
                    warn!(error = %why, "installing the rules failed; retrying");
                    self.resync_at = Some(Instant::now());
                }
            }
        } else if reloaded && self.previous.take().is_some() {
            self.metrics.reloaded(true);
            self.history_event("reload", "config reloaded".into(), "ok");
            self.last_reload = Some(super::status::Reload::succeeded());
            self.record_ownership();
        }
        if installed && report.observed.is_some() {
            self.end_hold(Some(report.started), Instant::now());
        }
        if let Some((observed, view)) = report.observed.take() {
            let gateways = |o: &crate::plan::Observed| {
                (
                    o.gateways.clone(),
                    o.v6.as_ref().map(|v6| v6.gateways.clone()),
                )
            };
            let gateways_changed = gateways(&observed) != gateways(&self.observed);
            let old = std::mem::replace(&mut self.observed, observed);
            self.view = view;
            if gateways_changed {
                let states = self.all_health();
                self.rebuild_monitors(&states, self.initial());
            }
            self.sync_links(Instant::now());
            self.sync_routes(Instant::now());
            let flushes = self.flushes_for_new_addresses(&old);
            if !flushes.is_empty() {
                let mut desired = self.desired(Purpose::Change);
                desired.flushes = flushes;
                self.kernel.install(desired);
            }
            self.log_warnings(std::mem::take(&mut report.warnings));
            self.replan();
        }
    }

    /// The reloaded config could not be installed: install the previous one again and keep
    /// running it.
    fn revert(&mut self, previous: std::sync::Arc<crate::config::Config>, why: String) {
        self.config = previous;
        self.adopt_config();
        self.reload_failed(
            format!("the new config could not be installed: {why}"),
            "its rules are installed again",
        );
        self.kernel.install(self.desired(Purpose::Reload));
    }

    /// The plan for what the agent knows now (health, backends, the kernel's last read):
    /// what status and metrics show, the same value the actor installs.
    /// Built again only when what it follows from changed (with 10 000 pins, planning costs
    /// milliseconds and this runs after every reconcile).
    pub(super) fn replan(&mut self) {
        let mut observed = self.observed.clone();
        observed.adopt(&self.judged());
        if self.planned_from.as_ref() != Some(&observed) {
            self.plan = Plan::build(&self.config, &observed);
            self.planned_from = Some(observed);
        }
        self.update_standby(Instant::now());
    }

    fn log_changes(&mut self, report: &Report) {
        let changed = report.purposes.contains(&Purpose::Change);
        if changed {
            self.metrics.applied(report.took);
            let installed = report.plan.as_deref().unwrap_or(&self.plan);
            let shares = |p: &Plan| -> String {
                let s: Vec<String> = p
                    .balance
                    .members()
                    .iter()
                    .map(|m| format!("{} {:.1}%", m.uplink, m.share * 100.0))
                    .collect();
                s.join(", ")
            };
            let mut balance = shares(installed);
            if let Some(v6) = &installed.v6 {
                balance.push_str(&format!("; ipv6 {}", shares(v6)));
            }
            info!(
                chains = %report.netfilter.chains().join(","),
                balance = %balance,
                took_ms = format!("{:.2}", report.took.as_secs_f64() * 1000.0),
                merged = report.merged,
                "rules swapped"
            );
        } else if report.purposes.contains(&Purpose::Reload) {
            info!(chains = %report.netfilter.chains().join(","), "rules installed for the reloaded config");
        } else if !report.netfilter.is_empty() && report.purposes.contains(&Purpose::Reconcile) {
            warn!(chains = %report.netfilter.chains().join(","), "iptables rules had drifted: repaired");
        }
        let r = &report.routing;
        if !r.is_empty() {
            info!(
                rules_added = r.rules_added.len(),
                rules_deleted = r.rules_deleted.len(),
                routes_added = r.routes_added.len(),
                routes_deleted = r.routes_deleted.len(),
                "routing reconciled"
            );
        }
        if !report.sets.is_empty() {
            info!(sets = %report.sets.join(","), "ipsets updated");
        }
        for f in &report.flushed {
            match &f.result {
                Ok(n) => {
                    info!(what = %f.flush.what, deleted = n, reason = %f.flush.reason, "conntrack entries deleted")
                }
                Err(e) => {
                    error!(what = %f.flush.what, error = %crate::error_chain(e), "deleting conntrack entries failed")
                }
            }
        }
    }
}
