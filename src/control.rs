//! The control socket: `multiwan status` asks the running daemon how it is doing. A Unix
//! socket, mode 0600 (0660 with `control.group`), and the daemon also checks the peer's
//! credentials. One request line, one JSON answer.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::config::MarkLayout;
use crate::ha::Role;
use crate::ha::conntrackd::SyncCounters;

pub const STATUS: &str = "status";

/// What `multiwan status --json` prints. Field names are stable; see docs/operations.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub config: String,
    pub started_unix: f64,
    /// True when no uplink is up and `when_all_down` decides.
    pub all_down: bool,
    pub uplinks: Vec<UplinkStatus>,
    pub policies: Vec<PolicyStatus>,
    pub forwards: Vec<ForwardStatus>,
    /// Present on a node of an HA pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaStatus {
    pub node: String,
    pub peer: String,
    pub role: Role,
    pub since_unix: f64,
    /// Whether this node holds the shared addresses right now.
    pub holds_addresses: bool,
    /// conntrackd's counters; None when it could not be asked.
    pub sync: Option<SyncCounters>,
    pub sync_error: Option<String>,
    /// Where conntrackd's config is (the agent fills it; not part of the JSON).
    #[serde(skip)]
    pub conntrackd_config: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardStatus {
    pub name: String,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// `address` or `address:port`
    pub target: String,
    /// The last checks succeeded (true when not checked).
    pub up: bool,
    /// Receives new connections (every backend does when all are down).
    pub in_rotation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkStatus {
    pub name: String,
    pub interface: String,
    /// up | degraded | down
    pub state: String,
    pub since_unix: f64,
    pub link_up: bool,
    pub weight: u32,
    pub effective_weight: f64,
    /// Share of new balanced connections, 0-100.
    pub share_percent: f64,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_percent: f64,
    pub probes_sent: u64,
    pub probes_lost: u64,
    pub probes_late: u64,
    pub last_transition: Option<LastTransition>,
    pub address: String,
    pub gateway: String,
    pub mark: u32,
    pub table: u32,
    /// Connections in conntrack carrying this uplink's mark.
    pub connections: Option<u64>,
    /// Their bytes, both directions (needs `net.netfilter.nf_conntrack_acct=1`).
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastTransition {
    pub from: String,
    pub to: String,
    pub reason: String,
    pub at_unix: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub name: String,
    /// What matching connections get now, e.g. `isp1`, `balanced (isp1 is down)`.
    pub target: String,
}

/// A request to the agent, answered on the oneshot.
pub type StatusRequest = oneshot::Sender<(Status, MarkLayout)>;

/// `ha-role ROLE [PROBLEM]`: keepalived's notify script telling the agent its VRRP role
/// and what went wrong on the way, if anything (root only).
pub const HA_ROLE: &str = "ha-role";

/// What a control-socket client asks the agent.
#[derive(Debug)]
pub enum Request {
    Status(StatusRequest),
    /// The role, and the conntrackd steps that failed (keepalived discards the notify
    /// script's output, so the agent logs them).
    HaRole(Role, Option<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no multiwan daemon is listening on {path} ({source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("permission denied on {path}: only root (or the control group) may use it")]
    Denied { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon on {path} said: {answer}")]
    Refused { path: PathBuf, answer: String },
}

/// Asks the daemon for its status.
pub fn query(path: &Path) -> Result<Status, ControlError> {
    let answer = ask(path, STATUS)?;
    serde_json::from_str(&answer).map_err(|_| ControlError::Refused {
        path: path.to_path_buf(),
        answer: answer.trim().to_string(),
    })
}

/// Tells the daemon its HA role (from `ha notify`), with what failed on the way.
pub fn set_role(path: &Path, role: Role, problem: Option<&str>) -> Result<(), ControlError> {
    // One request line: a problem's own line breaks become spaces.
    let problem = problem.map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "));
    let request = match problem {
        Some(p) => format!("{HA_ROLE} {role} {p}"),
        None => format!("{HA_ROLE} {role}"),
    };
    let answer = ask(path, &request)?;
    if answer.trim() == "ok" {
        Ok(())
    } else {
        Err(ControlError::Refused {
            path: path.to_path_buf(),
            answer: answer.trim().to_string(),
        })
    }
}

/// Sends one request line and reads the whole answer.
fn ask(path: &Path, request: &str) -> Result<String, ControlError> {
    use std::io::ErrorKind;
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| match source.kind() {
            ErrorKind::PermissionDenied => ControlError::Denied {
                path: path.to_path_buf(),
            },
            _ => ControlError::NotRunning {
                path: path.to_path_buf(),
                source,
            },
        })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    s.write_all(format!("{request}\n").as_bytes()).map_err(io)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(io)?;
    Ok(answer)
}

/// Creates the socket (replacing a stale one), restricts it, and answers requests.
pub async fn serve(
    path: PathBuf,
    group: Option<String>,
    agent: mpsc::Sender<Request>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    let gid = match &group {
        Some(name) => Some(
            group_id(name)
                .ok_or_else(|| std::io::Error::other(format!("no group named {name}")))?,
        ),
        None => None,
    };
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(&path, None, Some(g))?;
    }
    info!(socket = %path.display(), mode = format!("{mode:o}"), "control socket listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let agent = agent.clone();
        tokio::spawn(async move { answer(stream, gid, agent).await });
    }
}

async fn answer(stream: tokio::net::UnixStream, gid: Option<u32>, agent: mpsc::Sender<Request>) {
    let cred = stream.peer_cred().ok();
    let root = cred.is_some_and(|c| c.uid() == 0);
    let allowed = root || cred.is_some_and(|c| gid.is_some_and(|g| c.gid() == g));
    let (read, mut write) = stream.into_split();
    // Read the request before answering, even a refusal: closing with unread data would
    // reset the connection and the client would never see why.
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    let got = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    if !allowed {
        warn!("control socket: refused a peer that is neither root nor in the control group");
        let _ = write.write_all(b"permission denied\n").await;
        return;
    }
    let request = line.trim();
    let answer = match request.split_once(' ') {
        _ if got.is_err() => "unknown request: try `status`\n".to_string(),
        None if request == STATUS => status_answer(&agent).await,
        Some((HA_ROLE, rest)) if root => match role_and_problem(rest) {
            Ok((role, problem)) => match agent.send(Request::HaRole(role, problem)).await {
                Ok(()) => "ok\n".into(),
                Err(_) => "the agent is stopping\n".into(),
            },
            Err(e) => format!("{e}\n"),
        },
        Some((HA_ROLE, _)) => "permission denied: only root may set the HA role\n".into(),
        _ => "unknown request: try `status`\n".into(),
    };
    let _ = write.write_all(answer.as_bytes()).await;
}

fn role_and_problem(text: &str) -> Result<(Role, Option<String>), String> {
    let (role, problem) = match text.split_once(' ') {
        Some((r, p)) => (r, Some(p.trim().to_string()).filter(|p| !p.is_empty())),
        None => (text, None),
    };
    Ok((role.parse()?, problem))
}

async fn status_answer(agent: &mpsc::Sender<Request>) -> String {
    let (tx, rx) = oneshot::channel();
    if agent.send(Request::Status(tx)).await.is_err() {
        return String::new();
    }
    let Ok((mut status, marks)) = rx.await else {
        return String::new();
    };
    // Counting conntrack entries and asking conntrackd run tools: keep them off the loop.
    if let Ok(Some(counts)) = tokio::task::spawn_blocking(count_connections).await {
        fill_counts(&mut status, &counts, marks);
    }
    if let Some(ha) = status.ha.take() {
        status.ha = tokio::task::spawn_blocking(move || fill_sync(ha))
            .await
            .ok();
    }
    let mut text = serde_json::to_string(&status).unwrap_or_default();
    text.push('\n');
    text
}

/// conntrackd's counters, asked through the config `ha render` wrote.
fn fill_sync(mut ha: HaStatus) -> HaStatus {
    match crate::ha::conntrackd::counters(&ha.conntrackd_config) {
        Ok(c) => ha.sync = Some(c),
        Err(e) => ha.sync_error = Some(e.to_string()),
    }
    ha
}

/// (connections, bytes) per mark value, from `conntrack -L`.
fn count_connections() -> Option<HashMap<u32, (u64, u64)>> {
    let out = crate::exec::run("conntrack", &["-L"], None).ok()?;
    Some(parse_conntrack(&out.stdout))
}

pub fn parse_conntrack(text: &str) -> HashMap<u32, (u64, u64)> {
    let mut out: HashMap<u32, (u64, u64)> = HashMap::new();
    for line in text.lines() {
        let mut mark = None;
        let mut bytes = 0;
        for field in line.split_whitespace() {
            if let Some(m) = field.strip_prefix("mark=") {
                mark = m.parse::<u32>().ok();
            } else if let Some(b) = field.strip_prefix("bytes=") {
                bytes += b.parse::<u64>().unwrap_or(0);
            }
        }
        if let Some(m) = mark {
            let e = out.entry(m).or_default();
            e.0 += 1;
            e.1 += bytes;
        }
    }
    out
}

fn fill_counts(status: &mut Status, counts: &HashMap<u32, (u64, u64)>, marks: MarkLayout) {
    for u in &mut status.uplinks {
        let (mut conns, mut bytes) = (0, 0);
        for (mark, (c, b)) in counts {
            if mark & marks.mask == u.mark {
                conns += c;
                bytes += b;
            }
        }
        u.connections = Some(conns);
        u.bytes = (bytes > 0).then_some(bytes);
    }
}

fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; we only read gr_gid.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_connections_and_bytes_by_mark() {
        let text = "tcp 6 431999 ESTABLISHED src=10.0.0.10 dst=192.0.2.10 sport=1 dport=8000 packets=3 bytes=180 src=192.0.2.10 dst=100.64.1.2 sport=8000 dport=1 packets=2 bytes=120 [ASSURED] mark=256 use=1\n\
                    udp 17 29 src=10.0.0.10 dst=192.0.2.10 sport=2 dport=53 src=192.0.2.10 dst=100.64.2.2 sport=53 dport=2 mark=512 use=1\n\
                    tcp 6 10 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=3 dport=22 mark=0 use=1\n";
        let c = parse_conntrack(text);
        assert_eq!(c[&256], (1, 300));
        assert_eq!(c[&512], (1, 0));
        assert_eq!(c[&0], (1, 0));
    }
}

/// `5s`, `3m12s`, `2h05m`, `4d03h`.
pub fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The table `multiwan status` prints: readable in two seconds.
pub fn render(status: &Status, now_unix: f64) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "multiwan {} running for {}, config {}{}\n\n",
        status.version,
        ago(now_unix - status.started_unix),
        status.config,
        if status.all_down {
            " - EVERY UPLINK IS DOWN"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<15} {:<9} {:>8} {:>6} {:>9} {:>6} {:>9} {:>9} {:>6} {:>6}  ADDRESS via GATEWAY",
        "UPLINK",
        "STATE",
        "SINCE",
        "WEIGHT",
        "EFFECTIVE",
        "SHARE",
        "RTT ms",
        "JITTER ms",
        "LOSS",
        "CONNS",
    );
    for u in &status.uplinks {
        let f3 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "{:<15} {:<9} {:>8} {:>6} {:>9} {:>5.1}% {:>9} {:>9} {:>5.1}% {:>6}  {} via {}{}",
            u.name,
            u.state,
            ago(now_unix - u.since_unix),
            u.weight,
            crate::plan::render_weight(u.effective_weight),
            u.share_percent,
            f3(u.rtt_ms),
            f3(u.jitter_ms),
            u.loss_percent,
            u.connections.map_or("-".to_string(), |c| c.to_string()),
            u.address,
            u.gateway,
            if u.link_up { "" } else { " (link down)" }
        );
    }
    let transitions: Vec<&UplinkStatus> = status
        .uplinks
        .iter()
        .filter(|u| u.last_transition.is_some())
        .collect();
    if !transitions.is_empty() {
        let _ = writeln!(out, "\nLAST TRANSITION");
        for u in transitions {
            let t = u.last_transition.as_ref().expect("filtered");
            let _ = writeln!(
                out,
                "{:<15} {} -> {}, {} ago: {}",
                u.name,
                t.from,
                t.to,
                ago(now_unix - t.at_unix),
                t.reason
            );
        }
    }
    if !status.forwards.is_empty() {
        let _ = writeln!(out, "\nFORWARD         BACKENDS");
        for f in &status.forwards {
            let list: Vec<String> = f
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{} {}{}",
                        b.target,
                        if b.up { "up" } else { "down" },
                        if b.in_rotation {
                            ""
                        } else {
                            " (out of rotation)"
                        }
                    )
                })
                .collect();
            let _ = writeln!(out, "{:<15} {}", f.name, list.join(", "));
        }
    }
    if !status.policies.is_empty() {
        let _ = writeln!(out, "\nPOLICY          TARGET");
        for p in &status.policies {
            let _ = writeln!(out, "{:<15} {}", p.name, p.target);
        }
    }
    if let Some(ha) = &status.ha {
        render_ha(&mut out, ha, now_unix);
    }
    out
}

fn render_ha(out: &mut String, ha: &HaStatus, now_unix: f64) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\nHA: node {} is {} for {} ({}), peer {}",
        ha.node,
        ha.role.name().to_uppercase(),
        ago(now_unix - ha.since_unix),
        if ha.holds_addresses {
            "holds the shared addresses"
        } else {
            "does not hold the shared addresses"
        },
        ha.peer
    );
    match (&ha.sync, &ha.sync_error) {
        (Some(c), _) => {
            let _ = writeln!(
                out,
                "conntrackd: {} own connections, {} from the peer; sync packets sent {}, received {}; errors {}/{}; lost {}",
                c.internal,
                c.external,
                c.packets_sent,
                c.packets_received,
                c.send_errors,
                c.receive_errors,
                c.lost_messages
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(out, "conntrackd: not reachable: {e}");
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;

    #[test]
    fn a_role_request_may_carry_what_failed() {
        assert_eq!(role_and_problem("master"), Ok((Role::Master, None)));
        assert_eq!(
            role_and_problem("backup conntrackd -n failed: no such file"),
            Ok((
                Role::Backup,
                Some("conntrackd -n failed: no such file".to_string())
            ))
        );
        assert!(role_and_problem("boss").is_err());
    }

    #[test]
    fn renders_microsecond_rtts_and_reasons() {
        let u = UplinkStatus {
            name: "isp1".into(),
            interface: "wan1".into(),
            state: "down".into(),
            since_unix: 1000.0,
            link_up: true,
            weight: 70,
            effective_weight: 0.0,
            share_percent: 0.0,
            rtt_ms: Some(0.052),
            jitter_ms: Some(0.004),
            loss_percent: 100.0,
            probes_sent: 10,
            probes_lost: 6,
            probes_late: 0,
            last_transition: Some(LastTransition {
                from: "up".into(),
                to: "down".into(),
                reason: "3 failed rounds in a row".into(),
                at_unix: 1000.0,
            }),
            address: "100.64.1.2".into(),
            gateway: "100.64.1.1".into(),
            mark: 0x100,
            table: 101,
            connections: Some(3),
            bytes: None,
        };
        let s = Status {
            version: "0.1.0".into(),
            config: "/etc/m.yaml".into(),
            started_unix: 900.0,
            all_down: false,
            uplinks: vec![u],
            policies: vec![PolicyStatus {
                name: "console".into(),
                target: "balanced (isp1 is down)".into(),
            }],
            forwards: Vec::new(),
            ha: Some(HaStatus {
                node: "r1".into(),
                peer: "10.60.0.2".into(),
                role: Role::Master,
                since_unix: 1060.0,
                holds_addresses: true,
                sync: Some(SyncCounters {
                    internal: 20,
                    external: 3,
                    ..Default::default()
                }),
                sync_error: None,
                conntrackd_config: PathBuf::new(),
            }),
        };
        let text = render(&s, 1065.0);
        assert!(
            text.contains(
                "HA: node r1 is MASTER for 5s (holds the shared addresses), peer 10.60.0.2"
            ),
            "{text}"
        );
        assert!(
            text.contains("conntrackd: 20 own connections, 3 from the peer"),
            "{text}"
        );
        assert!(text.contains("running for 2m45s"), "{text}");
        assert!(text.contains("0.052"), "{text}");
        let row = text.lines().find(|l| l.starts_with("isp1 ")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[..4], &["isp1", "down", "1m05s", "70"], "{text}");
        assert!(
            text.contains("up -> down, 1m05s ago: 3 failed rounds in a row"),
            "{text}"
        );
        assert!(
            text.contains("console         balanced (isp1 is down)"),
            "{text}"
        );
    }
}
