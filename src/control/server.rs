//! The daemon's side of the control socket: created root-only (or group-readable with
//! `control.group`) in a directory only root can write; each peer's credentials checked
//! before anything it sent is read; one request line of bounded size, one answer, one
//! deadline per connection, a bounded number of connections. Status answers add what the
//! kernel adapters count (connections per uplink, conntrackd's sync counters), cached for
//! two seconds and off the agent's loop.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{info, warn};

use super::proto::{HA_ROLE, IPV6_PREFIX, Request, STATUS, Status};
use crate::config::MarkLayout;
use crate::ha::Role;
use crate::ha::conntrackd::SyncCounters;
use crate::kernel::conntrack::{self, Tally};
use crate::kernel::conntrackd;
use crate::plan::Family;

/// The longest request line; anything longer is refused unread.
const MAX_REQUEST: u64 = 4096;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// The whole exchange (read, ask the agent, answer) of one connection.
const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the control socket's directory {dir}")]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not a socket: it is not replaced")]
    NotASocket { path: PathBuf },
    #[error("no group named {0}")]
    NoGroup(String),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the socket (replacing a stale one), restricts it, and answers requests.
pub async fn serve(
    path: PathBuf,
    group: Option<String>,
    agent: mpsc::Sender<Request>,
) -> Result<(), ServeError> {
    let gid = match &group {
        Some(name) => Some(group_id(name).ok_or_else(|| ServeError::NoGroup(name.clone()))?),
        None => None,
    };
    let listener = bind(&path, gid)?;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let caches = Arc::new(Caches::default());
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // dropped: too many at once
        };
        let (agent, caches) = (agent.clone(), caches.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(DEADLINE, answer(stream, gid, agent, &caches)).await;
        });
    }
}

/// Binds the socket at `path`. Its directory must belong to root and be writable by no one
/// else (then no one else can swap the path for a symlink between the steps below); only a
/// stale socket is ever removed, never another kind of file.
fn bind(path: &Path, gid: Option<u32>) -> Result<UnixListener, ServeError> {
    let io = |what: &'static str| {
        let path = path.to_path_buf();
        move |source| ServeError::Io { what, path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let directory = |source| ServeError::Directory {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(directory)?;
    crate::files::trusted(dir).map_err(|e| directory(std::io::Error::other(e)))?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(io("remove"))?,
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(path, None, Some(g)).map_err(io("chown"))?;
    }
    info!(socket = %path.display(), mode = format!("{mode:o}"), "control socket listening");
    Ok(listener)
}

/// Who may ask: root, or a member of the control group (primary or supplementary). Decided
/// from the kernel's record of the peer, before anything it sent is read. (allowed, root)
fn allowed(stream: &UnixStream, gid: Option<u32>) -> (bool, bool) {
    let Ok(cred) = stream.peer_cred() else {
        return (false, false);
    };
    let root = cred.uid() == 0;
    let member = gid.is_some_and(|g| cred.gid() == g || peer_groups(stream).contains(&g));
    (root || member, root)
}

/// The peer's supplementary groups as they were when it connected (SO_PEERGROUPS).
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    // SAFETY: the buffer and its length describe the vector; the kernel writes at most len.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    groups
}

async fn answer(
    stream: UnixStream,
    gid: Option<u32>,
    agent: mpsc::Sender<Request>,
    caches: &Caches,
) {
    let (allowed, root) = allowed(&stream, gid);
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    if !allowed {
        warn!("control socket: refused a peer that is neither root nor in the control group");
        // Read (and drop) what it sent, briefly: closing a socket with unread data resets
        // the connection, and the peer would never see why.
        let _ = tokio::time::timeout(Duration::from_millis(200), reader.read_line(&mut line)).await;
        let _ = write.write_all(b"permission denied\n").await;
        return;
    }
    let complete = reader.read_line(&mut line).await.is_ok() && line.ends_with('\n');
    if !complete {
        drain(reader.into_inner()).await;
    }
    let request = line.trim();
    let answer = match request.split_once(' ') {
        _ if !complete => format!("a request is one line of at most {MAX_REQUEST} bytes\n"),
        None if request == STATUS => status_answer(&agent, caches).await,
        Some((HA_ROLE, rest)) if root => match role_and_problem(rest) {
            Ok((role, problem)) => match agent.send(Request::HaRole(role, problem)).await {
                Ok(()) => "ok\n".into(),
                Err(_) => "the agent is stopping\n".into(),
            },
            Err(e) => format!("{e}\n"),
        },
        Some((HA_ROLE, _)) => "permission denied: only root may set the HA role\n".into(),
        Some((IPV6_PREFIX, rest)) if root => prefix6_answer(&agent, rest).await,
        Some((IPV6_PREFIX, _)) => "permission denied: only root may hand over a prefix\n".into(),
        _ => "unknown request: try `status`\n".into(),
    };
    let _ = write.write_all(answer.as_bytes()).await;
}

/// Reads (and drops) what a peer is still sending, briefly and at most 64 KiB: closing a
/// socket with unread data makes the peer's write fail, and it may never read the answer
/// that says what was wrong.
async fn drain(read: impl tokio::io::AsyncRead + Unpin) {
    let mut rest = read.take(64 * 1024);
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

async fn prefix6_answer(agent: &mpsc::Sender<Request>, args: &str) -> String {
    let (uplink, prefix) = match super::proto::parse_prefix6(args) {
        Ok(v) => v,
        Err(e) => return format!("{e}\n"),
    };
    let (reply, answer) = oneshot::channel();
    let request = Request::Prefix6 {
        uplink,
        prefix,
        reply,
    };
    if agent.send(request).await.is_err() {
        return "the agent is stopping\n".into();
    }
    match answer.await {
        Ok(Ok(done)) => format!("ok: {done}\n"),
        Ok(Err(why)) => format!("{why}\n"),
        Err(_) => "the agent is stopping\n".into(),
    }
}

fn role_and_problem(text: &str) -> Result<(Role, Option<String>), String> {
    let (role, problem) = match text.split_once(' ') {
        Some((r, p)) => (r, Some(p.trim().to_string()).filter(|p| !p.is_empty())),
        None => (text, None),
    };
    Ok((role.parse()?, problem))
}

/// The status document (`multiwan status --json`), also served by the status page.
pub(crate) async fn status_answer(agent: &mpsc::Sender<Request>, caches: &Caches) -> String {
    let Some((mut status, marks)) = caches.agent(agent).await else {
        return String::new();
    };
    if let Some(counts) = caches.counts(Family::Ipv4, marks.mask).await {
        fill_counts(&mut status, &counts);
    }
    let has_v6 = status.uplinks.iter().any(|u| u.ipv6.is_some());
    if has_v6 && let Some(counts) = caches.counts(Family::Ipv6, marks.mask).await {
        fill_counts6(&mut status, &counts);
    }
    if let Some(ha) = status.ha.as_mut() {
        match caches.sync(&ha.conntrackd_config).await {
            Ok(c) => ha.sync = Some(c),
            Err(e) => ha.sync_error = Some(e),
        }
    }
    let mut text = serde_json::to_string(&status).unwrap_or_default();
    text.push('\n');
    text
}

/// How long what the kernel counted is reused: `status` in a loop must not dump a table of
/// a million entries, or start a conntrackd, every time.
const REUSE_FOR: Duration = Duration::from_secs(2);
/// How long the agent's own answer is reused: however many clients ask, the agent's loop
/// builds at most a few a second.
const AGENT_REUSE_FOR: Duration = Duration::from_millis(100);

/// The last value of something costly, for a key, reused for a while. One fill at a
/// time: concurrent requests wait for it and share it.
struct Cache<T> {
    last: tokio::sync::Mutex<Option<(Instant, String, T)>>,
    reuse_for: Duration,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Self::reused_for(REUSE_FOR)
    }
}

impl<T> Cache<T> {
    fn reused_for(reuse_for: Duration) -> Self {
        Self {
            last: tokio::sync::Mutex::new(None),
            reuse_for,
        }
    }
}

impl<T: Clone> Cache<T> {
    async fn get<F: Future<Output = T>>(&self, key: String, fill: impl FnOnce() -> F) -> T {
        let mut last = self.last.lock().await;
        if let Some((at, k, value)) = last.as_ref()
            && *k == key
            && at.elapsed() < self.reuse_for
        {
            return value.clone();
        }
        let value = fill().await;
        *last = Some((Instant::now(), key, value.clone()));
        value
    }
}

/// Connections per mark value.
type Counts = Arc<HashMap<u32, Tally>>;

pub(crate) struct Caches {
    agent: Cache<Option<(Status, MarkLayout)>>,
    counts: Cache<Option<Counts>>,
    counts6: Cache<Option<Counts>>,
    sync: Cache<Result<SyncCounters, String>>,
}

impl Default for Caches {
    fn default() -> Self {
        Self {
            agent: Cache::reused_for(AGENT_REUSE_FOR),
            counts: Cache::default(),
            counts6: Cache::default(),
            sync: Cache::default(),
        }
    }
}

impl Caches {
    /// The agent's status (and mark layout), asked at most every [`AGENT_REUSE_FOR`].
    async fn agent(&self, agent: &mpsc::Sender<Request>) -> Option<(Status, MarkLayout)> {
        self.agent
            .get(String::new(), || async {
                let (tx, rx) = oneshot::channel();
                agent.send(Request::Status(tx)).await.ok()?;
                rx.await.ok()
            })
            .await
    }

    async fn counts(&self, family: Family, mask: u32) -> Option<Counts> {
        let cache = match family {
            Family::Ipv4 => &self.counts,
            Family::Ipv6 => &self.counts6,
        };
        cache
            .get(mask.to_string(), || async move {
                let counted =
                    tokio::task::spawn_blocking(move || conntrack::count_by_mark(family, mask))
                        .await
                        .ok()?;
                match counted {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        warn!(error = %e, "cannot count the conntrack entries");
                        None
                    }
                }
            })
            .await
    }

    /// conntrackd's counters, asked through the config `ha render` wrote.
    async fn sync(&self, config: &Path) -> Result<SyncCounters, String> {
        self.sync
            .get(config.display().to_string(), || async {
                conntrackd::counters(config)
                    .await
                    .map_err(|e| crate::error_chain(&e))
            })
            .await
    }
}

fn fill_counts(status: &mut Status, counts: &HashMap<u32, Tally>) {
    for u in &mut status.uplinks {
        let t = counts.get(&u.mark).copied().unwrap_or_default();
        u.connections = Some(t.connections);
        u.bytes = (t.bytes > 0).then_some(t.bytes);
    }
}

fn fill_counts6(status: &mut Status, counts: &HashMap<u32, Tally>) {
    for u in &mut status.uplinks {
        let mark = u.mark;
        if let Some(v6) = u.ipv6.as_mut() {
            let t = counts.get(&mark).copied().unwrap_or_default();
            v6.connections = Some(t.connections);
            v6.bytes = (t.bytes > 0).then_some(t.bytes);
        }
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
