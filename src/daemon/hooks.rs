//! Runs the admin's hook executables on every uplink transition, with argv (no shell), the
//! facts in environment variables, and a timeout. A hook never blocks probing or rule
//! changes: each runs in its own task; output and exit status are logged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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

/// The executables named by `hooks`: files as they are, directories by their executable
/// regular files in name order.
pub fn resolve(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            out.extend(entries.into_iter().filter(|e| executable(e)));
        } else if executable(p) {
            out.push(p.clone());
        } else {
            warn!(hook = %p.display(), "hook is missing or not executable: skipped");
        }
    }
    out
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts every hook for `event` in the background.
pub fn run_all(hooks: &[PathBuf], event: &HookEvent, timeout: Duration) {
    for hook in resolve(hooks) {
        let event = event.clone();
        tokio::spawn(async move { run_one(hook, event, timeout).await });
    }
}

async fn run_one(hook: PathBuf, event: HookEvent, timeout: Duration) {
    let child = tokio::process::Command::new(&hook)
        .envs(event.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(hook = %hook.display(), error = %e, "hook could not start");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        // Dropping the future kills the child (kill_on_drop).
        Err(_) => {
            warn!(hook = %hook.display(), timeout_s = timeout.as_secs_f64(), "hook timed out and was killed")
        }
        Ok(Err(e)) => warn!(hook = %hook.display(), error = %e, "hook failed"),
        Ok(Ok(out)) => {
            let text = |b: &[u8]| {
                String::from_utf8_lossy(b)
                    .trim()
                    .chars()
                    .take(2000)
                    .collect::<String>()
            };
            if out.status.success() {
                info!(hook = %hook.display(), stdout = %text(&out.stdout), stderr = %text(&out.stderr), "hook ran");
            } else {
                warn!(hook = %hook.display(), status = %out.status, stdout = %text(&out.stdout), stderr = %text(&out.stderr), "hook exited with an error");
            }
        }
    }
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
        assert_eq!(got, vec![dir.join("a.sh"), dir.join("b.sh")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uplink_event_has_every_variable() {
        let t = Transition {
            uplink: "isp1".into(),
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
