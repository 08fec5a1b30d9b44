//! Makes the kernel match a plan, and removes everything multiwan installed. The one place
//! that sequences the adapters: sets before the rules that use them, stale sets after.

use std::collections::BTreeMap;

use super::ipset::{self, IpsetError};
use super::netfilter::{self, Changes, Counters, NetfilterError};
use super::routing::{KernelView, Routing, RoutingChanges, RoutingError, model};
use crate::config::Config;
use std::sync::Arc;

use crate::plan::{Family, Judged, Observed, Plan};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("routing")]
    Routing(#[from] RoutingError),
    #[error("iptables")]
    Netfilter(#[from] NetfilterError),
    #[error("ipset")]
    Ipset(#[from] IpsetError),
    #[error("choosing the iptables backend")]
    Backend(#[from] netfilter::backend::BackendError),
}

/// Chooses the iptables backend for this process (see [`netfilter::backend`]) and removes
/// multiwan's chains from the other one when an earlier run left them there, so rules are
/// never split across the two. Call it before anything touches iptables.
pub async fn select_backend(config: &Config) -> Result<netfilter::backend::Decision, InstallError> {
    let selected = netfilter::backend::select(config.backend).await?;
    if let Some(stale) = &selected.stale {
        for family in Family::ALL {
            let removed = netfilter::cleanup_in(stale, family).await?;
            if removed.removed() > 0 {
                tracing::warn!(
                    from = stale.kind.name(),
                    to = selected.decision.kind.name(),
                    chains = removed.removed(),
                    family = %family,
                    "multiwan's chains moved to the backend in use"
                );
            }
        }
    }
    Ok(selected.decision)
}

/// What one apply did.
#[derive(Debug)]
pub struct Applied {
    pub plan: Arc<Plan>,
    pub observed: Observed,
    pub view: KernelView,
    /// The chains and jumps that had to be (re)installed (none when nothing had drifted).
    pub netfilter: Changes,
    /// Our rules' packet counters, read on the way.
    pub counters: Counters,
    /// Sets created, refilled or changed in place.
    pub sets: Vec<String>,
    /// Each set's member counts.
    pub set_counts: BTreeMap<String, ipset::Count>,
    /// Things that could not be installed yet.
    pub warnings: Vec<String>,
    pub routing: RoutingChanges,
    pub stale_sets: Vec<String>,
}

/// What cleanup removed, and what it could not.
#[derive(Debug, Default)]
pub struct Removed {
    pub netfilter: Changes,
    pub routing: RoutingChanges,
    pub sets: Vec<String>,
    pub errors: Vec<InstallError>,
}

pub struct Installer {
    routing: Routing,
    /// No chain of ours is in ip6tables (checked once while the config has no IPv6).
    v6_clean: std::sync::atomic::AtomicBool,
}

impl Installer {
    /// Needs a tokio runtime with IO enabled.
    pub fn new() -> Result<Self, InstallError> {
        Ok(Self {
            routing: Routing::connect()?,
            v6_clean: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Gives uplinks without an explicit `id` the ids the installed tables show for their
    /// interfaces, so a restart does not change the meaning of established connections'
    /// marks (the list may have been reordered since). Returns whether anything changed.
    pub async fn adopt_installed_ids(&self, config: &mut Config) -> Result<bool, InstallError> {
        let before: Vec<u32> = config.uplinks.iter().map(|u| u.id).collect();
        let installed = self.routing.installed_ids(config).await?;
        config.keep_installed_ids(&installed);
        Ok(config.uplinks.iter().map(|u| u.id).ne(before))
    }

    /// Reads what the plan needs from the kernel, and adds what the agent judged.
    pub async fn observe(
        &self,
        config: &Config,
        judged: &Judged,
    ) -> Result<(Observed, KernelView, Vec<String>), InstallError> {
        let view = self.routing.view().await?;
        let (mut observed, warnings) = model::observe(config, &view);
        observed.adopt(judged);
        Ok((observed, view, warnings))
    }

    /// Observes, plans and installs: sets, then iptables (one transaction per table, then
    /// verified), then ip rules and routes, then stale sets go. `reuse`: a plan already built
    /// from this config and the observations it names, taken instead of planning again when
    /// the kernel and the health are still what it was built from (the daemon's reconcile,
    /// every second: planning 10 000 pins costs milliseconds, comparing costs microseconds).
    pub async fn apply(
        &self,
        config: &Config,
        judged: &Judged,
        reuse: Option<(&Observed, &Arc<Plan>)>,
    ) -> Result<Applied, InstallError> {
        let (observed, view, mut warnings) = self.observe(config, judged).await?;
        let plan = match reuse {
            Some((from, plan)) if *from == observed => Arc::clone(plan),
            _ => Arc::new(Plan::build(config, &observed)),
        };
        let all_sets = plan.all_sets();
        // Reading the tables does not depend on the sets: both run at once.
        let (sets, tables) = tokio::join!(ipset::update(&all_sets), netfilter::read(&plan));
        let (sets, tables) = (sets?, tables?);
        use std::sync::atomic::Ordering::Relaxed;
        let mut v6_clean = self.v6_clean.load(Relaxed);
        let installed = netfilter::apply_read(&plan, tables, &mut v6_clean).await?;
        self.v6_clean.store(v6_clean, Relaxed);
        for (family, save) in &installed.saved {
            if let Some(fp) = plan.of(*family) {
                warnings.extend(netfilter::firewall_warnings(
                    fp,
                    &config.lan_interfaces,
                    save,
                ));
            }
        }
        let routing = self.routing.reconcile(config, &plan, &view).await?;
        warnings.extend(routing.failed.iter().cloned());
        // The sets read before the update: one that appeared since is someone else's
        // business until the next reconcile.
        let stale_sets = ipset::destroy_stale(sets.present, &all_sets).await?;
        Ok(Applied {
            plan,
            observed,
            view,
            netfilter: installed.changes,
            counters: installed.counters,
            sets: sets.changed,
            set_counts: sets.counts,
            warnings,
            routing,
            stale_sets,
        })
    }

    /// Removes everything of ours; keeps going after a failure and reports every error.
    pub async fn cleanup(&self, ranges: crate::owned::Ranges) -> Removed {
        let mut removed = Removed::default();
        // Without IPv6 in the kernel there can be nothing of ours in ip6tables.
        let ipv6 = std::path::Path::new("/proc/net/if_inet6").exists();
        // Ours may be in either backend (a host that switched): look in both.
        for tools in netfilter::backend::installed().await {
            for family in Family::ALL
                .into_iter()
                .filter(|f| *f == Family::Ipv4 || ipv6)
            {
                match netfilter::cleanup_in(&tools, family).await {
                    Ok(changes) => removed.netfilter.tables.extend(changes.tables),
                    Err(e) => removed.errors.push(e.into()),
                }
            }
        }
        let (routing, errors) = self.routing.cleanup(ranges).await;
        removed.routing = routing;
        removed
            .errors
            .extend(errors.into_iter().map(InstallError::from));
        match ipset::destroy_except(&[]).await {
            Ok(sets) => removed.sets = sets,
            Err(e) => removed.errors.push(e.into()),
        }
        removed
    }
}
