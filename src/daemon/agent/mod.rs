//! `multiwan run`: the daemon's event loop. It probes every uplink through that uplink,
//! feeds the health machines, and tells the kernel actor ([`crate::kernel::actor`]) what
//! the kernel should look like: a health change at once, a full reconcile every second and
//! after kernel events. The loop never waits for the kernel: the actor's reports come back
//! as events, so probes keep their schedule whatever a transaction costs. Errors at run
//! time are logged and retried, never fatal.

mod backends;
mod ha;
mod history;
mod ipv6;
mod links;
mod probing;
mod reports;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, InitialState};
use crate::control::{self, Request};
use crate::daemon::metrics::{self, Metrics};
use crate::health::backend::{BackendMonitor, BackendTransition};
use crate::health::{Family, Health, Monitor, Track, Transition};
use crate::kernel::actor::{ActorError, Desired, Kernel, Purpose, Report};
use crate::kernel::events;
use crate::kernel::probe::{ProbeEvent, Prober};
use crate::kernel::routing::KernelView;
use crate::plan::{Observed, Plan};

/// How often the kernel is compared with the plan (drift repair).
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Address and route events come in bursts; wait this long before re-reading.
const RESYNC_DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("initial install failed")]
    Install(#[source] crate::kernel::install::InstallError),
    #[error("the kernel actor")]
    Kernel(#[from] ActorError),
    #[error("{what}")]
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
    let mut hup = signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?;
    crate::daemon::signals::unblock();
    let config = crate::files::load_config(path)?;
    let backend = crate::kernel::install::select_backend(&config)
        .await
        .map_err(AgentError::Install)?;
    info!(backend = backend.kind.name(), why = %backend.why, "iptables backend");
    for w in &backend.warnings {
        warn!("{w}");
    }
    crate::kernel::netfilter::session::enable();
    let (probe_tx, mut probe_rx) = unbounded_channel();
    let mut kernel_events = events::subscribe().map_err(io("subscribe to netlink events"))?;
    let (mut agent, mut reports) = Agent::start(path, config, probe_tx).await?;
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Request>(16);
    spawn_services(
        &agent.config,
        agent.metrics.clone(),
        agent.history.clone(),
        control_tx,
    );
    if let Err(e) = crate::daemon::notify::notify("READY=1") {
        warn!(error = %e, "could not tell systemd we are ready");
    }
    loop {
        let wake = tokio::time::Instant::from_std(agent.next_wakeup());
        tokio::select! {
            Some(ev) = probe_rx.recv() => agent.on_probe(ev),
            Some(report) = reports.recv() => agent.on_report(report),
            Some(request) = control_rx.recv() => match request {
                Request::Status(reply) => {
                    let _ = reply.send((agent.status(), agent.config.marks));
                }
                Request::HaRole(role, problem) => agent.set_role(role, problem),
                Request::Prefix6 { uplink, prefix, reply } => {
                    let _ = reply.send(agent.set_prefix6(&uplink, prefix));
                }
            },
            Some(ev) = kernel_events.recv() => agent.on_kernel(ev),
            _ = tokio::time::sleep_until(wake) => {}
            _ = hup.recv() => agent.reload(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if agent.probes_overdue(Instant::now()) {
            read_arrived_replies(&mut agent, &mut probe_rx).await;
        }
        agent.step();
    }
    let _ = crate::daemon::notify::notify("STOPPING=1");
    info!("stopping: probing ends, the installed rules stay in place");
    Ok(())
}

/// Before a probe is judged lost, reads the replies that have already reached the host. When
/// the daemon was not running for a while (a busy CPU, a stop), its deadline timer and the
/// replies become ready together; the timer must not win, or an answered probe counts as
/// lost and a healthy uplink goes down. Each yield lets the runtime poll the sockets and
/// run the tasks that hand a reply over (the socket's reader, then the probe's task).
async fn read_arrived_replies(agent: &mut Agent, probe_rx: &mut UnboundedReceiver<ProbeEvent>) {
    for _ in 0..4 {
        tokio::task::yield_now().await;
        while let Ok(ev) = probe_rx.try_recv() {
            agent.on_probe(ev);
        }
    }
}

/// The control socket, the metrics endpoint and the status page, on a thread (and runtime) of their own:
/// however many clients connect, reading, writing and encoding their answers never runs on
/// the thread that times the probes. Failing to open either is logged; the router keeps
/// routing.
fn spawn_services(
    config: &Config,
    metrics: Arc<Metrics>,
    history: Arc<std::sync::Mutex<crate::history::History>>,
    control_tx: tokio::sync::mpsc::Sender<Request>,
) {
    let (socket, group) = (config.control.socket.clone(), config.control.group.clone());
    let metrics_addr = config.metrics;
    let web = config.web.as_ref().map(|w| {
        let page = crate::daemon::web::Web::new(control_tx.clone(), history, w.token_sha256);
        (w.listen, Arc::new(page))
    });
    let spawned = std::thread::Builder::new()
        .name("multiwan-services".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "cannot start the services' runtime: no status, no metrics");
                    return;
                }
            };
            rt.block_on(async move {
                if let Some(addr) = metrics_addr {
                    tokio::spawn(async move {
                        if let Err(e) = metrics::serve(addr, metrics).await {
                            error!(%addr, error = %crate::error_chain(&e), "metrics endpoint failed");
                        }
                    });
                }
                if let Some((addr, page)) = web {
                    tokio::spawn(async move {
                        if let Err(e) = crate::daemon::web::serve(addr, page).await {
                            error!(%addr, error = %crate::error_chain(&e), "status page failed");
                        }
                    });
                }
                if let Err(e) = control::server::serve(socket.clone(), group, control_tx).await {
                    error!(socket = %socket.display(), error = %crate::error_chain(&e), "control socket failed: `multiwan status` will not work");
                    std::future::pending::<()>().await;
                }
            });
        });
    if let Err(e) = spawned {
        error!(error = %e, "cannot start the services' thread: no status, no metrics");
    }
}

struct Agent {
    path: PathBuf,
    config: Arc<Config>,
    kernel: Kernel,
    observed: Observed,
    view: KernelView,
    /// The plan for what the agent knows now (see `replan`): what status shows.
    plan: Plan,
    /// What `plan` was built from (None: build it again, as after a config change).
    planned_from: Option<Observed>,
    monitors: BTreeMap<Track, Monitor>,
    probers: BTreeMap<Track, Prober>,
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
    /// When each family of each uplink entered its current state.
    since: BTreeMap<Track, SystemTime>,
    /// STATUS= and watchdog keep-alives for systemd.
    systemd: crate::daemon::systemd::Systemd,
    /// What the status page charts (recorded only when `web` is on).
    history: Arc<std::sync::Mutex<crate::history::History>>,
    next_history: Instant,
    /// New connections marked per uplink and family, as the rule counters last said
    /// (running totals), and what the history last recorded of them.
    marked: BTreeMap<Track, u64>,
    marked_recorded: BTreeMap<Track, u64>,
    /// New connections each policy (by index) matched, as the rule counters last said.
    policy_hits: BTreeMap<usize, u64>,
    /// Each uplink interface's byte counter when the history last read it.
    bytes_recorded: BTreeMap<String, u64>,
    /// Each family's last transition and when it happened.
    last: BTreeMap<Track, (Transition, SystemTime)>,
    backends: BTreeMap<(String, usize), BackendMonitor>,
    backends_down: BTreeSet<(String, usize)>,
    backend_changes: Vec<BackendTransition>,
    /// This node's role in an HA pair (None for a single router).
    ha: Option<ha::HaState>,
    hooks: crate::daemon::hooks::Runner,
    /// The config a reload replaced, until the actor has installed the new one.
    previous: Option<Arc<Config>>,
    last_reload: Option<status::Reload>,
    /// IPv6 prefixes DHCPv6-PD clients handed over (`multiwan ipv6 prefix`), by uplink.
    prefixes: BTreeMap<String, ipnet::Ipv6Net>,
    /// Each ipset's member counts, as the last full pass read them.
    set_counts: BTreeMap<String, crate::kernel::ipset::Count>,
    /// Since when the probes are not judged: multiwan's own rules or routes are being
    /// repaired (see `links::repair`).
    holding: Option<Instant>,
}

impl Agent {
    /// Installs the plan with every uplink in its initial state and waits for it: a
    /// router that cannot install its rules must not report itself started.
    async fn start(
        path: &Path,
        config: Config,
        probe_tx: UnboundedSender<ProbeEvent>,
    ) -> Result<(Self, UnboundedReceiver<Report>), AgentError> {
        let started = Instant::now();
        let (kernel, mut reports) = Kernel::spawn()?;
        let before: Vec<u32> = config.uplinks.iter().map(|u| u.id).collect();
        let config = match kernel.adopt_ids(config.clone()).await {
            Ok(adopted) => {
                if adopted.uplinks.iter().map(|u| u.id).ne(before) {
                    info!("uplink ids kept from the installed tables (the list order changed)");
                }
                adopted
            }
            Err(e) => {
                warn!(error = %crate::error_chain(&e), "could not read the installed tables: ids follow the list order");
                config
            }
        };
        let config = Arc::new(config);
        let initial = initial_health(&config);
        let mut desired = Desired::new(config.clone(), Purpose::Start);
        desired.judged.health = config
            .uplinks
            .iter()
            .flat_map(|u| {
                let v6 = u.ipv6.as_ref().map(|_| Track::new(&u.name, Family::Ipv6));
                std::iter::once(Track::new(&u.name, Family::Ipv4)).chain(v6)
            })
            .map(|t| (t, initial))
            .collect();
        kernel.install(desired);
        let mut first = reports.recv().await.ok_or(ActorError::Gone)?;
        if let Some(e) = first.error.take() {
            return Err(AgentError::Install(e));
        }
        let (observed, view) = first.observed.take().expect("a full pass observes");
        let mut agent = Agent {
            path: path.to_path_buf(),
            kernel,
            observed,
            view,
            plan: Arc::unwrap_or_clone(
                first
                    .plan
                    .take()
                    .expect("an install without error has a plan"),
            ),
            planned_from: None,
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
            systemd: crate::daemon::systemd::Systemd::from_env(Instant::now()),
            history: Arc::default(),
            next_history: Instant::now(),
            marked: BTreeMap::new(),
            marked_recorded: BTreeMap::new(),
            policy_hits: BTreeMap::new(),
            bytes_recorded: BTreeMap::new(),
            last: BTreeMap::new(),
            backends: BTreeMap::new(),
            backends_down: Default::default(),
            backend_changes: Vec::new(),
            ha: None,
            hooks: Default::default(),
            previous: None,
            last_reload: None,
            set_counts: BTreeMap::new(),
            prefixes: BTreeMap::new(),
            holding: None,
            config,
        };
        agent.init_ha();
        agent.rebuild_backends();
        for line in &first.settings {
            warn!("{line}");
        }
        agent.log_warnings(first.warnings);
        // Status shows the sets from the start, not after the first reconcile.
        if let Some(counts) = first.set_counts.take() {
            agent.metrics.set_members(&agent.set_counts, &counts);
            agent.set_counts = counts;
        }
        agent.rebuild_monitors(&BTreeMap::new(), initial);
        agent.sync_links(Instant::now());
        agent.sync_routes(Instant::now());
        agent.record_ownership();
        agent.history_event(
            "start",
            format!(
                "multiwan started with {} uplink(s)",
                agent.config.uplinks.len()
            ),
            "ok",
        );
        info!(
            uplinks = agent.config.uplinks.len(),
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            config = %path.display(),
            "started: rules installed, probing"
        );
        Ok((agent, reports))
    }

    /// True when some probe's loss deadline has passed without a reply read.
    fn probes_overdue(&self, now: Instant) -> bool {
        self.monitors.values().any(|m| m.overdue(now))
    }

    fn next_wakeup(&self) -> Instant {
        let monitors = self.monitors.values().filter_map(Monitor::next_wakeup);
        let backends = self.backends.values().filter_map(|b| b.next_wakeup());
        let hold = self.holding.map(|t| t + Duration::from_secs(3));
        monitors
            .chain(backends)
            .chain(hold)
            .chain(self.resync_at)
            .chain(self.systemd.next_wakeup())
            .chain(self.config.web.as_ref().map(|_| self.next_history))
            .chain([self.next_reconcile])
            .min()
            .expect("reconcile is always due")
    }

    /// Everything due now: rounds, deadlines, checks, and what the kernel must be told.
    fn step(&mut self) {
        let now = Instant::now();
        self.end_hold(None, now);
        for m in self.monitors.values_mut() {
            self.pending.extend(m.tick(now));
        }
        self.send_probes(now);
        self.send_backend_checks(now);
        if !self.pending.is_empty() {
            self.act();
        }
        if !self.backend_changes.is_empty() {
            self.act_backends();
        }
        if self.resync_at.is_some_and(|t| t <= now) || self.next_reconcile <= now {
            self.kernel.install(self.desired(Purpose::Reconcile));
            self.resync_at = None;
            self.next_reconcile = now + RECONCILE_EVERY;
        }
        for plan in self.plan.families() {
            for u in &plan.uplinks {
                let track = Track::new(&u.name, plan.family);
                let stats = self.monitors.get(&track).map(Monitor::stats);
                self.metrics.update_uplink(plan.family, u, stats.as_ref());
            }
        }
        self.tell_systemd(now);
        if self.config.web.is_some() && now >= self.next_history {
            self.next_history = now + Duration::from_secs(1);
            self.record_history();
        }
    }

    /// What the kernel should hold now.
    fn desired(&self, purpose: Purpose) -> Desired {
        let mut d = Desired::new(self.config.clone(), purpose);
        d.judged = self.judged();
        d
    }

    /// What the agent knows that the kernel cannot tell (see [`crate::plan::Judged`]).
    fn judged(&self) -> crate::plan::Judged {
        crate::plan::Judged {
            health: self.all_health(),
            backends_down: self.backends_down.clone(),
            prefixes: self.prefixes.clone(),
        }
    }

    fn initial(&self) -> Health {
        initial_health(&self.config)
    }

    /// Reads the config again. A file that does not validate changes nothing; a valid one
    /// is installed by the actor (uplinks keep their ids, so their connections' marks), and
    /// if that fails the previous config is installed again (see `reports`).
    fn reload(&mut self) {
        let mut new = match crate::files::load_config(&self.path) {
            Ok(c) => c,
            Err(ConfigError::Invalid { diagnostics }) => {
                for d in &diagnostics {
                    error!("{d}");
                }
                let why = format!("{} error(s) in {}", diagnostics.len(), self.path.display());
                self.reload_failed(why, "the kernel is unchanged");
                return;
            }
            Err(e) => {
                self.reload_failed(crate::error_chain(&e), "the kernel is unchanged");
                return;
            }
        };
        new.keep_ids_from(&self.config);
        if new.control.socket != self.config.control.socket || new.metrics != self.config.metrics {
            warn!("control socket and metrics address changes take effect at the next restart");
        }
        let old = std::mem::replace(&mut self.config, Arc::new(new));
        self.previous = Some(old);
        self.adopt_config();
        info!(config = %self.path.display(), uplinks = self.config.uplinks.len(), "config reloaded");
        self.kernel.install(self.desired(Purpose::Reload));
    }

    /// Puts the state that follows from the config in line with it: probe sockets,
    /// monitors, links, backends, the plan, the HA role.
    fn adopt_config(&mut self) {
        self.planned_from = None;
        let states = self.all_health();
        let tracks = self.tracks();
        self.probers.retain(|track, _| tracks.contains(track));
        self.rebuild_monitors(&states, self.initial());
        self.links
            .retain(|i, _| self.config.uplinks.iter().any(|u| &u.interface == i));
        self.rebuild_backends();
        self.replan();
        self.init_ha();
    }

    /// Records the tables and rule priorities installed, so `cleanup` finds them without
    /// a config (see [`crate::owned`]).
    pub(super) fn record_ownership(&self) {
        if let Err(e) = crate::owned::record(&self.config) {
            warn!(error = %e, "could not record what was installed: cleanup will need the config");
        }
    }

    /// A reload that did not take: the previous config runs on, and status says why.
    fn reload_failed(&mut self, why: String, kernel: &str) {
        error!(reason = %why, "reload refused: still running the previous config; {kernel}");
        self.metrics.reloaded(false);
        self.history_event(
            "reload",
            format!("reload refused, the previous config runs on: {why}"),
            "failed",
        );
        self.last_reload = Some(status::Reload::failed(why));
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

fn initial_health(config: &Config) -> Health {
    match config.initial_state {
        InitialState::Up => Health::Up,
        InitialState::Down => Health::Down,
    }
}
