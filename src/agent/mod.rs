//! `multiwan run`: the daemon. It probes every uplink through that uplink, feeds the
//! health machines, and keeps the kernel matching the plan for the current health: a
//! health change swaps the changed chains in one transaction and then deletes the dead
//! uplink's conntrack entries; a reconcile every second repairs drift; link events act at
//! once. Errors at run time are logged and retried, never fatal.

mod backends;
pub mod flush;
mod ha;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tracing::{debug, error, info, warn};

use crate::config::{self, Config, ConfigError, InitialState};
use crate::control::{self, Request};
use crate::events::{self, KernelEvent};
use crate::health::{Monitor, Settings, Transition};
use crate::hooks::{self, HookEvent};
use crate::install::{InstallError, Installer};
use crate::metrics::{self, Metrics};
use crate::plan::{Health, Observed, Plan};
use crate::probe::{ProbeEvent, Prober};
use crate::routing::KernelView;
use crate::{conntrack, netfilter, sysctl};

/// How often the kernel is compared with the plan (drift repair).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Address and route events come in bursts; wait this long before re-reading.
const RESYNC_DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("initial install failed: {0}")]
    Install(#[from] InstallError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { what, source }
}

/// Runs until SIGTERM or SIGINT. The kernel state stays in place on exit, so traffic keeps
/// flowing while the service restarts (`multiwan cleanup` removes it).
pub async fn run(path: &Path) -> Result<(), AgentError> {
    let config = config::load(path)?;
    let (probe_tx, mut probe_rx) = unbounded_channel();
    let mut kernel = events::subscribe().map_err(io("subscribe to netlink events"))?;
    let mut agent = Agent::start(path, config, probe_tx).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Request>(16);
    spawn_services(&agent.config, agent.metrics.clone(), control_tx);
    if let Err(e) = crate::notify::notify("READY=1") {
        warn!(error = %e, "could not tell systemd we are ready");
    }
    loop {
        let wake = tokio::time::Instant::from_std(agent.next_wakeup());
        tokio::select! {
            Some(ev) = probe_rx.recv() => agent.on_probe(ev),
            Some(request) = control_rx.recv() => match request {
                Request::Status(reply) => {
                    let _ = reply.send((agent.status(), agent.config.marks));
                }
                Request::HaRole(role, problem) => agent.set_role(role, problem),
            },
            Some(ev) = kernel.recv() => agent.on_kernel(ev),
            _ = tokio::time::sleep_until(wake) => {}
            _ = hup.recv() => agent.reload().await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        agent.step().await;
    }
    let _ = crate::notify::notify("STOPPING=1");
    info!("stopping: probing ends, the installed rules stay in place");
    Ok(())
}

/// The control socket and the metrics endpoint. Failing to open either is logged; the
/// router keeps routing.
fn spawn_services(
    config: &Config,
    metrics: Arc<Metrics>,
    control_tx: tokio::sync::mpsc::Sender<Request>,
) {
    let (socket, group) = (config.control.socket.clone(), config.control.group.clone());
    tokio::spawn(async move {
        if let Err(e) = control::serve(socket.clone(), group, control_tx).await {
            error!(socket = %socket.display(), error = %e, "control socket failed: `multiwan status` will not work");
        }
    });
    if let Some(addr) = config.metrics {
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, metrics).await {
                error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }
}

struct Agent {
    path: PathBuf,
    config: Config,
    installer: Installer,
    observed: Observed,
    view: KernelView,
    plan: Plan,
    monitors: BTreeMap<String, Monitor>,
    probers: BTreeMap<String, Prober>,
    /// Last known usable state of each uplink interface.
    links: HashMap<String, bool>,
    probe_tx: UnboundedSender<ProbeEvent>,
    pending: Vec<Transition>,
    resync_at: Option<Instant>,
    next_reconcile: Instant,
    last_warnings: Vec<String>,
    ident: u16,
    metrics: Arc<Metrics>,
    started: SystemTime,
    /// When each uplink entered its current state.
    since: BTreeMap<String, SystemTime>,
    /// Each uplink's last transition and when it happened.
    last: BTreeMap<String, (Transition, SystemTime)>,
    backends: BTreeMap<(String, usize), crate::health::backend::BackendMonitor>,
    backends_down: std::collections::BTreeSet<(String, usize)>,
    backend_changes: Vec<crate::health::backend::BackendTransition>,
    /// This node's role in an HA pair (None for a single router).
    ha: Option<ha::HaState>,
}

impl Agent {
    async fn start(
        path: &Path,
        mut config: Config,
        probe_tx: UnboundedSender<ProbeEvent>,
    ) -> Result<Self, AgentError> {
        let installer = Installer::new()?;
        match installer.adopt_installed_ids(&mut config).await {
            Ok(true) => info!("uplink ids kept from the installed tables (the list order changed)"),
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "could not read the installed tables: ids follow the list order")
            }
        }
        for w in sysctl::enforce(&config) {
            warn!("{w}");
        }
        let initial = match config.initial_state {
            InitialState::Up => Health::Up,
            InitialState::Down => Health::Down,
        };
        let health = config
            .uplinks
            .iter()
            .map(|u| (u.name.clone(), initial))
            .collect();
        let started = Instant::now();
        let applied = installer
            .apply(&config, &health, &Default::default())
            .await?;
        let mut agent = Agent {
            path: path.to_path_buf(),
            installer,
            observed: applied.observed,
            view: applied.view,
            plan: applied.plan,
            monitors: BTreeMap::new(),
            probers: BTreeMap::new(),
            links: HashMap::new(),
            probe_tx,
            pending: Vec::new(),
            resync_at: None,
            next_reconcile: Instant::now() + RECONCILE_EVERY,
            last_warnings: Vec::new(),
            ident: (std::process::id() as u16).wrapping_mul(31),
            metrics: Arc::new(Metrics::new()),
            started: SystemTime::now(),
            since: BTreeMap::new(),
            last: BTreeMap::new(),
            backends: BTreeMap::new(),
            backends_down: Default::default(),
            backend_changes: Vec::new(),
            ha: None,
            config,
        };
        agent.init_ha();
        agent.rebuild_backends();
        agent.metrics_marks();
        agent.log_warnings(applied.warnings);
        agent.rebuild_monitors(&BTreeMap::new(), initial);
        agent.sync_links(Instant::now());
        info!(
            uplinks = agent.config.uplinks.len(),
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            config = %path.display(),
            "started: rules installed, probing"
        );
        Ok(agent)
    }

    fn next_wakeup(&self) -> Instant {
        let monitors = self.monitors.values().filter_map(Monitor::next_wakeup);
        let backends = self.backends.values().filter_map(|b| b.next_wakeup());
        monitors
            .chain(backends)
            .chain(self.resync_at)
            .chain([self.next_reconcile])
            .min()
            .expect("reconcile is always due")
    }

    fn on_probe(&mut self, ev: ProbeEvent) {
        let now = Instant::now();
        match ev {
            ProbeEvent::Reply { uplink, seq, rtt } => {
                if let Some(m) = self.monitors.get_mut(&uplink) {
                    self.pending.extend(m.on_reply(seq, rtt, now));
                }
            }
            ProbeEvent::Backend {
                forward,
                index,
                ok,
                why,
            } => self.on_backend(&forward, index, ok, &why),
            ProbeEvent::Failed { uplink, seq, why } => {
                debug!(target: crate::probe::LOG_TARGET, %uplink, seq, %why, "probe failed");
                if let Some(m) = self.monitors.get_mut(&uplink) {
                    self.pending.extend(m.on_failure(seq, now));
                }
            }
        }
    }

    fn on_kernel(&mut self, ev: KernelEvent) {
        let now = Instant::now();
        match ev {
            KernelEvent::Link { name, up } => {
                if self.config.uplinks.iter().any(|u| u.interface == name) {
                    self.link_changed(&name, up, now);
                }
            }
            KernelEvent::Changed => {
                self.resync_at.get_or_insert(now + RESYNC_DEBOUNCE);
            }
            KernelEvent::Overrun => {
                warn!("netlink events were lost: full resync");
                self.resync_at = Some(now);
            }
        }
    }

    fn link_changed(&mut self, interface: &str, up: bool, now: Instant) {
        if self.links.get(interface) == Some(&up) {
            return;
        }
        self.links.insert(interface.to_string(), up);
        info!(interface, up, "link event");
        for u in self
            .config
            .uplinks
            .iter()
            .filter(|u| u.interface == interface)
        {
            if let Some(m) = self.monitors.get_mut(&u.name) {
                self.pending.extend(m.on_link(up, now));
            }
        }
        // A link that went down lost its routes (admin down deletes them silently); one that
        // came back needs them again.
        self.resync_at = Some(now);
    }

    /// Applies the links' state as the last kernel read saw it (at start and after resync).
    fn sync_links(&mut self, now: Instant) {
        let interfaces: Vec<String> = self
            .config
            .uplinks
            .iter()
            .map(|u| u.interface.clone())
            .collect();
        for i in interfaces {
            let up = self.view.usable.contains(&i);
            self.link_changed(&i, up, now);
        }
        self.resync_at = None;
    }

    async fn step(&mut self) {
        let now = Instant::now();
        for m in self.monitors.values_mut() {
            self.pending.extend(m.tick(now));
        }
        self.send_probes(now);
        self.send_backend_checks(now);
        if !self.pending.is_empty() {
            self.act().await;
        }
        if !self.backend_changes.is_empty() {
            self.act_backends();
        }
        let now = Instant::now();
        if self.resync_at.is_some_and(|t| t <= now) || self.next_reconcile <= now {
            self.resync().await;
            self.resync_at = None;
            self.next_reconcile = Instant::now() + RECONCILE_EVERY;
        }
        for u in &self.plan.uplinks {
            let stats = self.monitors.get(&u.name).map(Monitor::stats);
            self.metrics.update_uplink(u, stats.as_ref());
        }
    }

    fn metrics_marks(&self) {
        let marks = self
            .config
            .uplinks
            .iter()
            .map(|u| (self.config.marks.uplink(u.id), u.name.clone()))
            .collect();
        *self.metrics.marks.lock().expect("metrics lock") = marks;
    }

    /// Records a transition for status, metrics and hooks (hooks run in the background).
    fn announce(&mut self, t: &Transition) {
        let now = SystemTime::now();
        self.since.insert(t.uplink.clone(), now);
        self.last.insert(t.uplink.clone(), (t.clone(), now));
        self.metrics.transition(t);
        let active: Vec<String> = self
            .health()
            .into_iter()
            .filter(|(_, h)| *h != Health::Down)
            .map(|(n, _)| n)
            .collect();
        let interface = self
            .config
            .uplink(&t.uplink)
            .map_or("", |u| u.interface.as_str());
        let rtt_ms = t.rtt.map(|r| r.as_secs_f64() * 1000.0);
        let event = HookEvent::uplink(
            &t.uplink,
            interface,
            &t.to.to_string(),
            &t.from.to_string(),
            &t.reason,
            rtt_ms,
            t.loss,
            &active,
        );
        hooks::run_all(&self.config.hooks, &event, self.config.hook_timeout);
    }

    fn send_probes(&mut self, now: Instant) {
        let names: Vec<String> = self.monitors.keys().cloned().collect();
        for name in names {
            let requests = self
                .monitors
                .get_mut(&name)
                .expect("listed")
                .due_probes(now);
            if requests.is_empty() {
                continue;
            }
            let timeout = self.monitors[&name].settings().timeout;
            let tx = self.probe_tx.clone();
            match self.prober(&name) {
                Some(p) => {
                    for r in requests {
                        p.send(&name, r, timeout, tx.clone());
                    }
                }
                None => {
                    let m = self.monitors.get_mut(&name).expect("listed");
                    for r in requests {
                        self.pending.extend(m.on_failure(r.seq, now));
                    }
                }
            }
        }
    }

    /// The probe socket of an uplink, (re)made when its interface or address changed.
    fn prober(&mut self, name: &str) -> Option<&Prober> {
        let u = self.config.uplink(name)?;
        let source = *self.observed.addresses.get(name)?;
        let mark = self.config.marks.uplink(u.id);
        let current = self
            .probers
            .get(name)
            .is_some_and(|p| p.interface == u.interface && p.source == source && p.mark == mark);
        if !current {
            let ident = self.ident.wrapping_add(u.id as u16);
            match Prober::new(&u.interface, source, ident, mark) {
                Ok(p) => {
                    self.probers.insert(name.to_string(), p);
                }
                Err(e) => {
                    warn!(uplink = name, interface = %u.interface, error = %e, "cannot open the probe socket");
                    self.probers.remove(name);
                    return None;
                }
            }
        }
        self.probers.get(name)
    }

    fn health(&self) -> BTreeMap<String, Health> {
        // An uplink with nothing to probe (gateway not learned yet) cannot carry traffic.
        self.config
            .uplinks
            .iter()
            .map(|u| {
                (
                    u.name.clone(),
                    self.monitors
                        .get(&u.name)
                        .map_or(Health::Down, Monitor::state),
                )
            })
            .collect()
    }

    /// Health changed: swap the changed chains, then delete the dead uplinks' connections.
    async fn act(&mut self) {
        let transitions = std::mem::take(&mut self.pending);
        for t in &transitions {
            info!(
                uplink = %t.uplink,
                from = %t.from,
                to = %t.to,
                reason = %t.reason,
                loss_percent = format!("{:.1}", t.loss * 100.0),
                rtt_ms = t.rtt.map(|r| format!("{:.3}", r.as_secs_f64() * 1000.0)).unwrap_or_default(),
                "uplink state changed"
            );
        }
        let old = self.swap_rules(Plan::build(&self.config, &self.observed_now()));
        let (flushable, withheld): (Vec<Transition>, Vec<Transition>) = transitions
            .iter()
            .cloned()
            .partition(|t| self.may_flush_for(t));
        self.log_withheld(&withheld);
        let flushes = flush::flushes(&self.config, &old, &self.plan, &flushable);
        for f in flushes.into_iter().filter(|_| self.owns_conntrack()) {
            match conntrack::delete_mark(f.mark, f.mask) {
                Ok(n) => {
                    info!(what = %f.what, deleted = n, reason = %f.reason, "conntrack entries deleted")
                }
                Err(e) => warn!(what = %f.what, error = %e, "deleting conntrack entries failed"),
            }
        }
        for t in &transitions {
            self.announce(t);
        }
    }

    /// Makes `new` the plan: swaps only the chains that changed, in one transaction, and
    /// logs what changed and how long it took. Returns the previous plan. On failure a full
    /// resync follows at once.
    fn swap_rules(&mut self, new: Plan) -> Plan {
        let started = Instant::now();
        let result = netfilter::apply_delta(&self.plan, &new);
        self.metrics.applied(started.elapsed());
        match result {
            Ok(script) => {
                let chains: Vec<&str> = script
                    .lines()
                    .filter_map(|l| l.strip_prefix(':'))
                    .filter_map(|l| l.split(' ').next())
                    .collect();
                let shares: Vec<String> = new
                    .balance
                    .members()
                    .iter()
                    .map(|m| format!("{} {:.1}%", m.uplink, m.share * 100.0))
                    .collect();
                info!(
                    chains = %chains.join(","),
                    balance = %shares.join(", "),
                    took_ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
                    "rules swapped"
                );
            }
            Err(e) => {
                error!(error = %e, "swapping the rules failed; a full resync follows");
                self.resync_at = Some(Instant::now());
            }
        }
        std::mem::replace(&mut self.plan, new)
    }

    /// Re-reads the kernel and makes it match the plan: repairs drift, follows address and
    /// gateway changes, re-installs routes after a link event.
    async fn resync(&mut self) {
        let health = self.health();
        let applied = match self
            .installer
            .apply(&self.config, &health, &self.backends_down)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "reconcile failed; retrying");
                return;
            }
        };
        if !applied.iptables.is_empty() {
            warn!(
                script_lines = applied.iptables.lines().count(),
                "iptables rules had drifted: repaired"
            );
        }
        let r = &applied.routing;
        if !(r.rules_added.is_empty()
            && r.rules_deleted.is_empty()
            && r.routes_added.is_empty()
            && r.routes_deleted.is_empty())
        {
            info!(
                rules_added = r.rules_added.len(),
                rules_deleted = r.rules_deleted.len(),
                routes_added = r.routes_added.len(),
                routes_deleted = r.routes_deleted.len(),
                "routing reconciled"
            );
        }
        if !applied.sets.is_empty() {
            info!(sets = %applied.sets.join(","), "ipsets updated");
        }
        self.log_warnings(applied.warnings);
        let gateways_changed = applied.observed.gateways != self.observed.gateways;
        self.observed = applied.observed;
        self.view = applied.view;
        self.plan = applied.plan;
        if gateways_changed {
            let states = self.health();
            self.rebuild_monitors(&states, self.initial());
        }
        for u in self.config.uplinks.clone() {
            let up = self.view.usable.contains(&u.interface);
            if self.links.get(&u.interface) != Some(&up) {
                self.link_changed(&u.interface, up, Instant::now());
            }
        }
    }

    fn initial(&self) -> Health {
        match self.config.initial_state {
            InitialState::Up => Health::Up,
            InitialState::Down => Health::Down,
        }
    }

    /// Makes one monitor per uplink that has something to probe, keeping existing monitors
    /// whose settings did not change (and the state of those that did).
    fn rebuild_monitors(&mut self, states: &BTreeMap<String, Health>, initial: Health) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.monitors);
        for u in &self.config.uplinks {
            let gateway = self
                .observed
                .gateways
                .get(&u.name)
                .copied()
                .or(match u.gateway {
                    config::Gateway::Static(ip) => Some(ip),
                    config::Gateway::Auto => None,
                });
            let Some(settings) = Settings::for_uplink(u, gateway) else {
                warn!(uplink = %u.name, "nothing to probe yet (gateway not learned): treated as down");
                continue;
            };
            let monitor = match old.remove(&u.name) {
                Some(m) if m.settings() == &settings => m,
                m => {
                    let state = m
                        .map(|m| m.state())
                        .or(states.get(&u.name).copied())
                        .unwrap_or(initial);
                    Monitor::new(&u.name, settings, state, now)
                }
            };
            self.monitors.insert(u.name.clone(), monitor);
        }
    }

    async fn reload(&mut self) {
        let mut new = match config::load(&self.path) {
            Ok(c) => c,
            Err(ConfigError::Invalid { diagnostics }) => {
                for d in &diagnostics {
                    error!("{d}");
                }
                error!(
                    errors = diagnostics.len(),
                    "reload refused: still running the previous config; the kernel is unchanged"
                );
                self.metrics.reloaded(false);
                return;
            }
            Err(e) => {
                error!(error = %e, "reload refused: still running the previous config; the kernel is unchanged");
                self.metrics.reloaded(false);
                return;
            }
        };
        new.keep_ids_from(&self.config);
        if new.control.socket != self.config.control.socket || new.metrics != self.config.metrics {
            warn!("control socket and metrics address changes take effect at the next restart");
        }
        let states = self.health();
        self.config = new;
        for w in sysctl::enforce(&self.config) {
            warn!("{w}");
        }
        self.probers
            .retain(|name, _| self.config.uplink(name).is_some());
        self.rebuild_monitors(&states, self.initial());
        self.links
            .retain(|i, _| self.config.uplinks.iter().any(|u| &u.interface == i));
        info!(config = %self.path.display(), uplinks = self.config.uplinks.len(), "config reloaded");
        self.metrics.reloaded(true);
        self.metrics_marks();
        self.rebuild_backends();
        self.resync().await;
        self.init_ha();
    }

    /// Logs warnings when they change, not on every reconcile.
    fn log_warnings(&mut self, warnings: Vec<String>) {
        if warnings != self.last_warnings {
            for w in &warnings {
                warn!("{w}");
            }
            self.last_warnings = warnings;
        }
    }
}
