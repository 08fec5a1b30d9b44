//! Runs the admin's hook executables on every uplink transition, with argv (no shell), the
//! facts in environment variables (and only those, with a fixed PATH), and a timeout. A hook
//! never blocks probing or rule changes: a few run at a time in the background; output
//! (capped) and exit status are logged. Only hooks that no one but root can change run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use tracing::{info, warn};

use crate::health::Transition;

/// One event for the hooks: the variables they receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub vars: Vec<(String, String)>,
}

impl HookEvent {
    /// The variables of an uplink transition.
    pub fn uplink(t: &Transition, interface: &str, active: &[String]) -> Self {
        let rtt_ms = t.rtt.map(|r| r.as_secs_f64() * 1000.0);
        let vars = [
            ("MULTIWAN_EVENT", "uplink".to_string()),
            ("MULTIWAN_UPLINK", t.uplink.clone()),
            ("MULTIWAN_FAMILY", t.family.name().to_string()),
            ("MULTIWAN_INTERFACE", interface.to_string()),
            ("MULTIWAN_STATE", t.to.to_string()),
            ("MULTIWAN_PREVIOUS_STATE", t.from.to_string()),
            ("MULTIWAN_REASON", t.cause.to_string()),
            ("MULTIWAN_CAUSE", t.cause.kind().to_string()),
            (
                "MULTIWAN_RTT_MS",
                rtt_ms.map(|r| format!("{r:.3}")).unwrap_or_default(),
            ),
            ("MULTIWAN_LOSS_PERCENT", format!("{:.1}", t.loss * 100.0)),
            ("MULTIWAN_ACTIVE_UPLINKS", active.join(",")),
        ];
        Self {
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }
}

impl HookEvent {
    /// The variables of an HA role change.
    pub fn ha_role(node: &str, peer: &str, role: &str, previous: &str) -> Self {
        let vars = [
            ("MULTIWAN_EVENT", "ha_role"),
            ("MULTIWAN_HA_NODE", node),
            ("MULTIWAN_HA_PEER", peer),
            ("MULTIWAN_HA_ROLE", role),
            ("MULTIWAN_HA_PREVIOUS_ROLE", previous),
        ];
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The variables of a port-forward backend transition.
    pub fn backend(forward: &str, backend: &str, state: &str, reason: &str) -> Self {
        let vars = [
            ("MULTIWAN_EVENT", "backend"),
            ("MULTIWAN_FORWARD", forward),
            ("MULTIWAN_BACKEND", backend),
            ("MULTIWAN_STATE", state),
            ("MULTIWAN_REASON", reason),
        ];
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Output kept of each stream of a hook; the rest is read and dropped.
const OUTPUT_CAP: usize = 64 * 1024;
/// Hooks running at once.
const RUNNING: usize = 4;
/// Hooks waiting to run; beyond this an event's hooks are skipped (and the log says so).
const WAITING: usize = 64;
/// What a hook finds in `PATH`; nothing else of the daemon's environment is passed on.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The executables named by `hooks`: files as they are, directories by their executable
/// regular files in name order. A hook that someone other than root could replace or edit
/// (see [`crate::files::trusted`]) is never run.
pub fn resolve(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if let Err(e) = crate::files::trusted(p) {
            warn!(hook = %p.display(), reason = %crate::error_chain(&e), "hook not run: only root may be able to change what root runs");
            continue;
        }
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            out.extend(resolve_files(entries.into_iter().filter(|e| executable(e))));
        } else if executable(p) {
            out.push(p.clone());
        } else {
            warn!(hook = %p.display(), "hook is missing or not executable: skipped");
        }
    }
    out
}

/// The files of a hooks directory that are trusted themselves.
fn resolve_files(files: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    files
        .filter(|f| match crate::files::trusted(f) {
            Ok(_) => true,
            Err(e) => {
                warn!(hook = %f.display(), reason = %crate::error_chain(&e), "hook not run: only root may be able to change what root runs");
                false
            }
        })
        .collect()
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs hooks in the background, a few at a time, with a bounded queue: a burst of events
/// (a flapping uplink, a slow hook) cannot pile up processes without limit.
#[derive(Clone)]
pub struct Runner {
    running: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl Default for Runner {
    fn default() -> Self {
        Self {
            running: Arc::new(Semaphore::new(RUNNING)),
            queued: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Runner {
    /// Starts every hook for `event` in the background.
    pub fn run_all(&self, hooks: &[PathBuf], event: &HookEvent, timeout: Duration) {
        for hook in resolve(hooks) {
            if self.queued.fetch_add(1, Ordering::SeqCst) >= WAITING {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                warn!(hook = %hook.display(), "{WAITING} hooks are waiting already: this one is skipped");
                continue;
            }
            let (event, runner) = (event.clone(), self.clone());
            tokio::spawn(async move {
                let permit = runner.running.acquire().await;
                runner.queued.fetch_sub(1, Ordering::SeqCst);
                if permit.is_ok() {
                    run_one(hook, event, timeout).await;
                }
            });
        }
    }
}

/// One hook in a process group of its own, with a minimal environment; when it exits or
/// times out, the whole group is killed (a backgrounded child does not outlive it).
async fn run_one(hook: PathBuf, event: HookEvent, timeout: Duration) {
    let child = tokio::process::Command::new(&hook)
        .env_clear()
        .env("PATH", PATH)
        .envs(event.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(hook = %hook.display(), error = %e, "hook could not start");
            return;
        }
    };
    let group = child.id().map(|pid| pid as i32);
    // Read both streams while the hook runs (a full pipe would stall it).
    let stdout = tokio::spawn(capture(child.stdout.take()));
    let stderr = tokio::spawn(capture(child.stderr.take()));
    let ran = tokio::time::timeout(timeout, child.wait()).await;
    if let Some(pgid) = group {
        // The hook is done (or out of time): whatever it left running goes too, which also
        // closes the pipes it may have passed on.
        // SAFETY: signals the process group this hook was started in, and nothing else.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let text = |h: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(std::time::Duration::from_secs(1), h)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (out, err) = (text(stdout).await, text(stderr).await);
    match ran {
        Err(_) => {
            warn!(hook = %hook.display(), timeout_s = timeout.as_secs_f64(), stdout = %out, stderr = %err, "hook timed out and was killed")
        }
        Ok(Err(e)) => warn!(hook = %hook.display(), error = %e, "hook failed"),
        Ok(Ok(status)) => {
            if status.success() {
                info!(hook = %hook.display(), stdout = %out, stderr = %err, "hook ran");
            } else {
                warn!(hook = %hook.display(), %status, stdout = %out, stderr = %err, "hook exited with an error");
            }
        }
    }
}

/// Reads a stream to its end, keeping the first [`OUTPUT_CAP`] bytes; for the log, the
/// start of that, trimmed, with control characters (newlines included) escaped.
async fn capture(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    crate::config::printable(String::from_utf8_lossy(&kept).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files_and_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mw-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, mode) in [("b.sh", 0o755), ("a.sh", 0o755), ("notes.txt", 0o644)] {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let got = resolve(&[dir.clone(), dir.join("notes.txt"), dir.join("missing")]);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                got.is_empty(),
                "files of a non-root user never run: {got:?}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        assert_eq!(got, vec![dir.join("a.sh"), dir.join("b.sh")]);
        // A hook others may edit, or a directory others may fill, is never run.
        let a = dir.join("a.sh");
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o757)).unwrap();
        assert_eq!(resolve(std::slice::from_ref(&dir)), vec![dir.join("b.sh")]);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(resolve(&[dir.clone(), dir.join("b.sh")]).is_empty());
        assert!(resolve(&[std::env::temp_dir()]).is_empty(), "not /tmp");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uplink_event_has_every_variable() {
        let t = Transition {
            uplink: "isp1".into(),
            family: crate::family::Family::Ipv4,
            from: crate::health::Health::Up,
            to: crate::health::Health::Down,
            cause: crate::health::Cause::LinkDown,
            loss: 0.25,
            rtt: Some(Duration::from_micros(1500)),
        };
        let e = HookEvent::uplink(&t, "wan1", &["isp2".into()]);
        let names: Vec<&str> = e.vars.iter().map(|(k, _)| k.as_str()).collect();
        for v in [
            "MULTIWAN_UPLINK",
            "MULTIWAN_INTERFACE",
            "MULTIWAN_STATE",
            "MULTIWAN_PREVIOUS_STATE",
            "MULTIWAN_REASON",
            "MULTIWAN_RTT_MS",
            "MULTIWAN_LOSS_PERCENT",
            "MULTIWAN_ACTIVE_UPLINKS",
            "MULTIWAN_CAUSE",
        ] {
            assert!(names.contains(&v), "{v}");
        }
        assert!(
            e.vars
                .contains(&("MULTIWAN_LOSS_PERCENT".into(), "25.0".into()))
        );
        assert!(e.vars.contains(&("MULTIWAN_RTT_MS".into(), "1.500".into())));
        assert!(
            e.vars
                .contains(&("MULTIWAN_REASON".into(), "link down".into()))
        );
        assert!(e.vars.contains(&("MULTIWAN_CAUSE".into(), "link".into())));
    }
}
