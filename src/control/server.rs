//! The daemon's side of the control socket: created root-only (or group-readable with
//! `control.group`), each peer's credentials checked, one request line, one answer. Status
//! answers add what the kernel adapters count (connections per uplink, conntrackd's sync
//! counters), off the agent's loop.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::proto::{HA_ROLE, Request, STATUS, Status};
use crate::ha::Role;
use crate::kernel::conntrack::{self, Tally};
use crate::kernel::conntrackd;
use crate::plan::Family;

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
    let counts = Arc::new(CountCache::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let (agent, counts) = (agent.clone(), counts.clone());
        tokio::spawn(async move { answer(stream, gid, agent, &counts).await });
    }
}

async fn answer(
    stream: tokio::net::UnixStream,
    gid: Option<u32>,
    agent: mpsc::Sender<Request>,
    counts: &CountCache,
) {
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
        None if request == STATUS => status_answer(&agent, counts).await,
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

async fn status_answer(agent: &mpsc::Sender<Request>, counts: &CountCache) -> String {
    let (tx, rx) = oneshot::channel();
    if agent.send(Request::Status(tx)).await.is_err() {
        return String::new();
    }
    let Ok((mut status, marks)) = rx.await else {
        return String::new();
    };
    if let Some(counts) = counts.get(marks.mask).await {
        fill_counts(&mut status, &counts);
    }
    if let Some(ha) = status.ha.as_mut() {
        match conntrackd::counters(&ha.conntrackd_config).await {
            Ok(c) => ha.sync = Some(c),
            Err(e) => ha.sync_error = Some(crate::error_chain(&e)),
        }
    }
    let mut text = serde_json::to_string(&status).unwrap_or_default();
    text.push('\n');
    text
}

/// How long a count of the conntrack table is reused: `status` in a loop must not dump a
/// table of a million entries every time.
const COUNT_FOR: Duration = Duration::from_secs(2);

/// Connections per mark value.
type Counts = Arc<HashMap<u32, Tally>>;

/// The last count of connections per mark: when, under which mask, what. One count at a
/// time: concurrent requests wait for it and share it.
#[derive(Default)]
pub struct CountCache {
    last: tokio::sync::Mutex<Option<(Instant, u32, Counts)>>,
}

impl CountCache {
    async fn get(&self, mask: u32) -> Option<Counts> {
        let mut last = self.last.lock().await;
        if let Some((at, m, counts)) = last.as_ref()
            && *m == mask
            && at.elapsed() < COUNT_FOR
        {
            return Some(counts.clone());
        }
        let counted =
            tokio::task::spawn_blocking(move || conntrack::count_by_mark(Family::Ipv4, mask))
                .await
                .ok()?;
        match counted {
            Ok(c) => {
                let c = Arc::new(c);
                *last = Some((Instant::now(), mask, c.clone()));
                Some(c)
            }
            Err(e) => {
                warn!(error = %e, "cannot count the conntrack entries");
                None
            }
        }
    }
}

fn fill_counts(status: &mut Status, counts: &HashMap<u32, Tally>) {
    for u in &mut status.uplinks {
        let t = counts.get(&u.mark).copied().unwrap_or_default();
        u.connections = Some(t.connections);
        u.bytes = (t.bytes > 0).then_some(t.bytes);
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
}
