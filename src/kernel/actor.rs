//! The daemon's one owner of the kernel. A task on a thread of its own (with its own
//! runtime, so neither a tool's run nor parsing a thousand rules can delay a probe's reply
//! on the daemon's thread) takes desired states and answers each transaction with a typed
//! [`Report`].
//!
//! Desired states queue while a transaction runs; the next transaction merges them and
//! installs the latest once (three health changes during one slow reconcile cost one more
//! transaction, not three). Within a transaction the order is fixed: the new rules go in
//! first, then the conntrack entries of dead uplinks are deleted, so a connection that
//! re-dials is already balanced over the live uplinks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::install::{InstallError, Installer};
use super::netfilter::{self, Changes, Counters};
use super::routing::{KernelView, RoutingChanges};
use super::{conntrack, sysctl};
use crate::config::Config;
use crate::health::Transition;
use crate::plan::flush::{self, Flush};
use crate::plan::{Judged, Observed, Plan};

/// Why a desired state was sent; a transaction that merged several has them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// The daemon starts: the first install, whose failure is fatal.
    Start,
    /// The config was reloaded.
    Reload,
    /// Uplink health, backends or the HA role changed.
    Change,
    /// The periodic drift check, or the kernel said something changed.
    Reconcile,
}

/// What the kernel should look like, and what to delete once it does.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config: Arc<Config>,
    /// Health, backends found down, prefixes handed over.
    pub judged: Judged,
    /// Re-read the kernel and repair everything (addresses, routes, drift), rather than
    /// only swapping the chains that changed.
    pub full: bool,
    /// Transitions whose uplinks' connections may be deleted.
    pub flush_for: Vec<Transition>,
    /// Deletions asked for as such (a new HA master).
    pub flushes: Vec<Flush>,
    pub purposes: BTreeSet<Purpose>,
}

impl Desired {
    pub fn new(config: Arc<Config>, purpose: Purpose) -> Self {
        Self {
            config,
            judged: Judged::default(),
            full: matches!(
                purpose,
                Purpose::Start | Purpose::Reload | Purpose::Reconcile
            ),
            flush_for: Vec::new(),
            flushes: Vec::new(),
            purposes: BTreeSet::from([purpose]),
        }
    }

    /// The latest state wins; what each asked to repair or delete adds up.
    fn merge(&mut self, later: Desired) {
        self.config = later.config;
        self.judged = later.judged;
        self.full |= later.full;
        self.flush_for.extend(later.flush_for);
        self.flushes.extend(later.flushes);
        self.purposes.extend(later.purposes);
    }
}

/// One conntrack deletion and how it went.
#[derive(Debug)]
pub struct Flushed {
    pub flush: Flush,
    pub result: Result<u64, super::exec::ToolError>,
}

/// What one transaction did.
#[derive(Debug)]
pub struct Report {
    pub purposes: BTreeSet<Purpose>,
    /// How many desired states this transaction installed at once.
    pub merged: usize,
    /// The plan now in the kernel; None when the transaction failed before installing one.
    pub plan: Option<Arc<Plan>>,
    /// What a full pass read from the kernel.
    pub observed: Option<(Observed, KernelView)>,
    pub netfilter: Changes,
    pub routing: RoutingChanges,
    pub sets: Vec<String>,
    /// Each set's member counts (read by a full pass).
    pub set_counts: Option<BTreeMap<String, super::ipset::Count>>,
    pub flushed: Vec<Flushed>,
    /// Our rules' packet counters (read by a full pass).
    pub counters: Option<Counters>,
    /// Kernel settings checked (or set) because the config is new to the actor.
    pub settings: Vec<String>,
    /// Objects that cannot be installed yet (an interface or address missing).
    pub warnings: Vec<String>,
    pub error: Option<InstallError>,
    /// When the transaction began (after every desired state it merged was sent).
    pub started: Instant,
    pub took: Duration,
}

enum Command {
    Install(Box<Desired>),
    AdoptIds(Box<Config>, oneshot::Sender<Result<Config, InstallError>>),
}

/// The handle the agent holds. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    tx: mpsc::UnboundedSender<Command>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("cannot start the kernel thread")]
    Thread(#[source] std::io::Error),
    #[error("the kernel thread has stopped")]
    Gone,
    #[error("cannot start the kernel thread's runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Install(#[from] InstallError),
}

impl Kernel {
    /// Starts the actor's thread; reports arrive on the receiver.
    pub fn spawn() -> Result<(Kernel, mpsc::UnboundedReceiver<Report>), ActorError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("multiwan-kernel".into())
            .spawn(move || run_thread(rx, report_tx, ready_tx))
            .map_err(ActorError::Thread)?;
        ready_rx.recv().map_err(|_| ActorError::Gone)??;
        Ok((Kernel { tx }, report_rx))
    }

    /// Queues a desired state; its report follows on the receiver.
    pub fn install(&self, desired: Desired) {
        let _ = self.tx.send(Command::Install(Box::new(desired)));
    }

    /// Gives uplinks without an explicit id the ids the installed tables show (a restart
    /// keeps the meaning of established connections' marks). Returns the adjusted config.
    pub async fn adopt_ids(&self, config: Config) -> Result<Config, ActorError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::AdoptIds(Box::new(config), tx))
            .map_err(|_| ActorError::Gone)?;
        Ok(rx.await.map_err(|_| ActorError::Gone)??)
    }
}

fn run_thread(
    rx: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    ready: std::sync::mpsc::Sender<Result<(), ActorError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ActorError::Runtime(e)));
            return;
        }
    };
    rt.block_on(async move {
        let installer = match Installer::new() {
            Ok(i) => i,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        Actor {
            installer,
            installed: None,
            planned_from: None,
            observed: None,
            config: None,
        }
        .run(rx, reports)
        .await;
    });
}

struct Actor {
    installer: Installer,
    /// The plan in the kernel, as far as this actor knows; None after a failure.
    installed: Option<Arc<Plan>>,
    /// What `installed` was planned from (the kernel's facts and the health), so that a
    /// reconcile that finds the same facts installs it again without planning.
    planned_from: Option<Observed>,
    observed: Option<Observed>,
    /// The config of the last transaction: a new one has its kernel settings checked.
    config: Option<Arc<Config>>,
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        reports: mpsc::UnboundedSender<Report>,
    ) {
        while let Some(command) = rx.recv().await {
            let mut desired = match command {
                Command::Install(d) => *d,
                Command::AdoptIds(config, reply) => {
                    let mut config = *config;
                    let result = self.installer.adopt_installed_ids(&mut config).await;
                    let _ = reply.send(result.map(|_| config));
                    continue;
                }
            };
            let mut merged = 1;
            while let Ok(Command::Install(next)) = rx.try_recv() {
                desired.merge(*next);
                merged += 1;
            }
            let report = self.transact(desired, merged).await;
            if reports.send(report).is_err() {
                return;
            }
        }
    }

    async fn transact(&mut self, mut desired: Desired, merged: usize) -> Report {
        let started = Instant::now();
        let mut report = Report {
            purposes: desired.purposes.clone(),
            merged,
            plan: None,
            observed: None,
            netfilter: Changes::default(),
            routing: RoutingChanges::default(),
            sets: Vec::new(),
            flushed: Vec::new(),
            counters: None,
            set_counts: None,
            settings: Vec::new(),
            warnings: Vec::new(),
            error: None,
            started,
            took: Duration::ZERO,
        };
        let new_config = !self
            .config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &desired.config));
        if new_config {
            report.settings = sysctl::enforce(&desired.config);
            self.config = Some(desired.config.clone());
            desired.full = true;
        }
        // Both are set again below, by the swap or by the full pass.
        let before = self.installed.take();
        let planned_from = self.planned_from.take();
        let swapped = match (&before, self.observed.clone()) {
            (Some(plan), Some(observed)) if !desired.full => {
                self.swap(plan, observed, &desired, &mut report).await
            }
            _ => false,
        };
        if !swapped {
            let reuse = planned_from.as_ref().zip(before.as_ref());
            self.full(&desired, reuse.filter(|_| !new_config), &mut report)
                .await;
        }
        let mut todo = match (&before, &self.installed) {
            (Some(old), Some(new)) => flush::flushes(&desired.config, old, new, &desired.flush_for),
            // Not installed: still delete what dead uplinks held (their connections are
            // dead anyway); nothing that depends on the new plan.
            (Some(old), None) => flush::flushes(&desired.config, old, old, &desired.flush_for),
            (None, _) => Vec::new(),
        };
        todo.extend(desired.flushes.iter().cloned());
        self.flush(todo, &mut report).await;
        report.plan = self.installed.clone();
        report.took = started.elapsed();
        report
    }

    /// Swaps only the chains that changed; false when that failed (a full pass follows).
    async fn swap(
        &mut self,
        installed: &Plan,
        mut observed: Observed,
        desired: &Desired,
        report: &mut Report,
    ) -> bool {
        observed.adopt(&desired.judged);
        let plan = Plan::build(&desired.config, &observed);
        match netfilter::apply_delta(installed, &plan).await {
            Ok(changes) => {
                report.netfilter = changes;
                self.installed = Some(Arc::new(plan));
                self.planned_from = Some(observed);
                true
            }
            Err(e) => {
                report.warnings.push(format!(
                    "swapping the changed chains failed ({}); reinstalling everything",
                    crate::error_chain(&e)
                ));
                false
            }
        }
    }

    /// Re-reads the kernel, plans (unless `reuse` was planned from the same facts) and
    /// installs everything that differs.
    async fn full(
        &mut self,
        desired: &Desired,
        reuse: Option<(&Observed, &Arc<Plan>)>,
        report: &mut Report,
    ) {
        let applied = self
            .installer
            .apply(&desired.config, &desired.judged, reuse)
            .await;
        match applied {
            Ok(applied) => {
                report.netfilter.tables.extend(applied.netfilter.tables);
                report.routing = applied.routing;
                report.sets = applied.sets;
                report.sets.extend(applied.stale_sets);
                report.counters = Some(applied.counters);
                report.set_counts = Some(applied.set_counts);
                report.warnings.extend(applied.warnings);
                self.observed = Some(applied.observed.clone());
                self.planned_from = Some(applied.observed.clone());
                report.observed = Some((applied.observed, applied.view));
                // The next swap (a failover) goes through a standing restore process.
                for fp in applied.plan.families() {
                    netfilter::session::prepare(fp.family).await;
                }
                self.installed = Some(applied.plan);
            }
            Err(e) => {
                // What is in the kernel now is not known: the next pass installs in full.
                self.installed = None;
                report.error = Some(e);
            }
        }
    }

    async fn flush(&self, todo: Vec<Flush>, report: &mut Report) {
        for f in todo {
            let result = conntrack::delete_mark(f.family, f.mark, f.mask, f.reply_dst).await;
            report.flushed.push(Flushed { flush: f, result });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Cause;
    use crate::health::{Health, Track};

    fn config() -> Arc<Config> {
        Arc::new(
            crate::config::parse(
                "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1}\n  - {name: b, interface: wan2}\n",
                "t.yaml",
            )
            .unwrap(),
        )
    }

    fn change(config: &Arc<Config>, a: Health) -> Desired {
        let mut d = Desired::new(config.clone(), Purpose::Change);
        let v4 = |n: &str| Track::new(n, crate::plan::Family::Ipv4);
        d.judged.health = BTreeMap::from([(v4("a"), a), (v4("b"), Health::Up)]);
        d.flush_for = vec![Transition {
            uplink: "a".into(),
            family: crate::plan::Family::Ipv4,
            from: Health::Up,
            to: a,
            cause: Cause::LinkDown,
            loss: 1.0,
            rtt: None,
        }];
        d
    }

    #[test]
    fn queued_states_merge_into_the_latest_with_every_flush_and_purpose() {
        let c = config();
        let mut d = change(&c, Health::Down);
        assert!(!d.full, "a health change swaps chains, no full pass");
        d.merge(Desired::new(c.clone(), Purpose::Reconcile));
        d.merge(change(&c, Health::Up));
        assert_eq!(
            d.judged.health[&Track::new("a", crate::plan::Family::Ipv4)],
            Health::Up,
            "the latest state wins"
        );
        assert_eq!(d.flush_for.len(), 2, "every transition's flush is kept");
        assert!(d.full, "a reconcile among them makes the pass full");
        assert_eq!(
            d.purposes,
            BTreeSet::from([Purpose::Change, Purpose::Reconcile])
        );
    }
}
