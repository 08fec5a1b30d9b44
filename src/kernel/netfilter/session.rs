//! A standing `iptables-nft-restore` per family for the daemon's fast swaps (a weight
//! change, a failover) on the nf_tables backend.
//!
//! A one-shot restore costs ~16 ms here, and almost none of it is the change: starting the
//! process, and on exit closing its netlink socket, which waits for the kernel to free the
//! previous rule generation (an RCU grace period). The change itself is live well within a
//! millisecond of the tool reading it. A standing process reads one transaction after
//! another from its pipe (iptables-restore commits at each `COMMIT` line), and the kernel
//! confirms each commit with a new-generation notification that carries the committing
//! process's pid.
//!
//! Anything unexpected — the process gone, a notification lost, no confirmation in time —
//! ends the session, and the caller runs the one-shot restore: the scripts are idempotent
//! (each declares, flushes and refills its chains), and a script the kernel refuses gets its
//! error, with the right line, from the one-shot run.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

use super::backend::{self, Kind};
use crate::plan::Family;

/// How long a commit may take to be confirmed before the session is given up.
const CONFIRM_WITHIN: Duration = Duration::from_secs(2);
/// nfnetlink message type of NFT_MSG_NEWGEN (subsystem NFNL_SUBSYS_NFTABLES = 10).
const NEWGEN: u16 = (10 << 8) | 15;
/// NFTA_GEN_PROC_PID: the pid of the process that committed.
const GEN_PROC_PID: u16 = 2;
/// A transaction that commits and changes nothing: a chain made and deleted at once.
const NO_OP: &str = "*mangle\n:MULTIWAN_SESSION - [0:0]\n-X MULTIWAN_SESSION\nCOMMIT\n";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Set when a session could not be started and confirmed: it will not work on this host
/// (for example a daemon in a PID namespace of its own, where the kernel's notification
/// names a pid the daemon cannot see), so none is tried again.
static UNUSABLE: AtomicBool = AtomicBool::new(false);
/// How long the first, empty commit of a new session may take to be confirmed.
const START_WITHIN: Duration = Duration::from_millis(500);
static SESSIONS: Mutex<[Option<Session>; 2]> = Mutex::const_new([None, None]);

/// Lets this process keep standing restore processes (the daemon; not one-shot commands).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the restore process exited ({0})")]
    Exited(String),
    #[error("the commit was not confirmed in time")]
    Unconfirmed,
    #[error("nf_tables notifications were lost")]
    Overrun,
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    pid: u32,
    /// The nf_tables notifications, where the commits are confirmed.
    watch: AsyncFd<OwnedFd>,
}

fn slot(family: Family) -> usize {
    match family {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

/// Starts the family's session if there is none, and proves it works with a commit that
/// changes nothing; done after a full apply, so that a failover never waits for it.
pub async fn prepare(family: Family) {
    if !ENABLED.load(Ordering::Relaxed)
        || UNUSABLE.load(Ordering::Relaxed)
        || backend::current().kind != Kind::Nft
    {
        return;
    }
    let mut sessions = SESSIONS.lock().await;
    let entry = &mut sessions[slot(family)];
    if entry.as_mut().is_some_and(Session::alive) {
        return;
    }
    *entry = None;
    match Session::start(family).await {
        Ok(s) => *entry = Some(s),
        Err(e) => {
            UNUSABLE.store(true, Ordering::Relaxed);
            tracing::info!(%family, error = %e, "no standing restore process here: one process per change (~16 ms instead of ~2)");
        }
    }
}

/// Ends every session (their processes are killed): the next swaps run one-shot restores
/// until [`prepare`] runs again.
pub async fn close_all() {
    *SESSIONS.lock().await = [None, None];
}

/// Commits `script` through the family's session. False when there is none or it failed
/// (it is then ended): the caller runs the one-shot restore.
pub async fn commit(family: Family, script: &str) -> bool {
    let mut sessions = SESSIONS.lock().await;
    let entry = &mut sessions[slot(family)];
    let Some(session) = entry.as_mut() else {
        return false;
    };
    match session.commit(script).await {
        Ok(()) => {
            tracing::debug!(%family, pid = session.pid, "committed by the standing restore process");
            true
        }
        Err(e) => {
            tracing::debug!(%family, error = %e, "the standing restore process failed: one-shot restore");
            *entry = None;
            false
        }
    }
}

impl Session {
    async fn start(family: Family) -> Result<Session, SessionError> {
        let tools = backend::current();
        let mut child = Command::new(tools.restore(family))
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "no stdin to the restore")
        })?;
        let pid = child.id().unwrap_or(0);
        let watch = crate::kernel::nfnetlink::nftables_notifications()?;
        let mut session = Session {
            child,
            stdin,
            pid,
            watch,
        };
        session.commit_within(NO_OP, START_WITHIN).await?;
        Ok(session)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn commit(&mut self, script: &str) -> Result<(), SessionError> {
        self.commit_within(script, CONFIRM_WITHIN).await
    }

    async fn commit_within(&mut self, script: &str, within: Duration) -> Result<(), SessionError> {
        let wanted = script.lines().filter(|l| l.trim() == "COMMIT").count();
        drain(&self.watch)?;
        self.stdin.write_all(script.as_bytes()).await?;
        self.stdin.flush().await?;
        let mut seen = 0;
        let confirmed = async {
            let mut buf = vec![0u8; 64 * 1024];
            while seen < wanted {
                let mut ready = self.watch.readable().await?;
                match recv(&self.watch, &mut buf) {
                    Ok(n) => seen += confirmations(&buf[..n], self.pid),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ready.clear_ready(),
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        return Err(SessionError::Overrun);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        };
        tokio::select! {
            r = tokio::time::timeout(within, confirmed) => r.unwrap_or(Err(SessionError::Unconfirmed)),
            status = self.child.wait() => Err(SessionError::Exited(
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            )),
        }
    }
}

/// Discards notifications of earlier changes (ours and anyone's).
fn drain(watch: &AsyncFd<OwnedFd>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match recv(watch, &mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            // Lost notifications of earlier changes do not matter here.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) => return Err(e),
        }
    }
}

fn recv(watch: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    crate::kernel::nfnetlink::recv(watch.get_ref(), buf)
}

/// How many of the netlink messages in `buf` are new rule generations committed by `pid`.
fn confirmations(buf: &[u8], pid: u32) -> usize {
    messages(buf)
        .filter(|(kind, payload)| *kind == NEWGEN && generation_pid(payload) == Some(pid))
        .count()
}

/// The netlink messages of a datagram: type and payload (after the 16-byte header).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest.get(4..6)?.try_into().ok()?);
        let payload = rest.get(16..len)?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// NFTA_GEN_PROC_PID of a NEWGEN payload (a 4-byte nfgenmsg, then attributes).
fn generation_pid(payload: &[u8]) -> Option<u32> {
    let mut attrs = payload.get(4..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[..2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & 0x3fff;
        if len < 4 {
            return None;
        }
        let value = attrs.get(4..len)?;
        if kind == GEN_PROC_PID {
            return Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?));
        }
        attrs = attrs.get(align(len)..).unwrap_or(&[]);
    }
    None
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend(((4 + value.len()) as u16).to_ne_bytes());
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(align(a.len()), 0);
        a
    }

    fn message(kind: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0]; // nfgenmsg: AF_INET, version, res_id
        for a in attrs {
            body.extend(a);
        }
        let mut m = Vec::new();
        m.extend(((16 + body.len()) as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]); // flags, sequence, port id
        m.extend(body);
        m
    }

    fn newgen(id: u32, pid: u32, name: &str) -> Vec<u8> {
        message(
            NEWGEN,
            &[
                attr(1, &id.to_be_bytes()),
                attr(GEN_PROC_PID, &pid.to_be_bytes()),
                attr(3, format!("{name}\0").as_bytes()),
            ],
        )
    }

    #[test]
    fn counts_only_the_generations_our_process_committed() {
        let mut buf = message((10 << 8) | 6, &[attr(1, b"mangle\0")]); // NEWRULE
        buf.extend(newgen(7, 4242, "iptables-nft-re"));
        buf.extend(newgen(8, 99, "nft"));
        buf.extend(newgen(9, 4242, "iptables-nft-re"));
        assert_eq!(confirmations(&buf, 4242), 2);
        assert_eq!(confirmations(&buf, 99), 1);
        assert_eq!(confirmations(&buf, 1), 0);
    }

    #[test]
    fn truncated_or_malformed_messages_count_nothing_and_do_not_panic() {
        let full = newgen(7, 4242, "iptables-nft-re");
        for cut in 0..full.len() {
            assert_eq!(confirmations(&full[..cut], 4242), 0, "cut at {cut}");
        }
        let mut bad = full.clone();
        bad[20..22].copy_from_slice(&1u16.to_ne_bytes()); // attribute length below 4
        assert_eq!(confirmations(&bad, 4242), 0);
        assert_eq!(confirmations(&[0xff; 64], 4242), 0);
    }
}
