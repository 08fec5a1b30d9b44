//! `ha notify`: what keepalived runs on a role change. conntrackd first (so a new master
//! holds the peer's connections before the agent acts as master), then the agent. Every
//! step runs even if one fails; what failed travels to the agent, because keepalived
//! discards the notify script's output.

use crate::config::Config;
use crate::control;
use crate::ha::{Role, conntrackd};

/// One conntrackd step that failed.
#[derive(Debug)]
pub struct StepFailure {
    pub flag: &'static str,
    pub what: &'static str,
    pub error: String,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conntrackd {} ({}) failed: {}",
            self.flag, self.what, self.error
        )
    }
}

/// What a role change did.
#[derive(Debug)]
pub struct Notified {
    /// The conntrackd steps that ran, in order, and whether each succeeded.
    pub steps: Vec<(&'static str, &'static str, bool)>,
    pub failures: Vec<StepFailure>,
    /// Whether the agent was told (and why not).
    pub told: Result<(), control::ControlError>,
}

impl Notified {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.told.is_ok()
    }
}

/// Runs conntrackd's sequence for `role`, then tells the agent.
pub async fn notify(config: &Config, role: Role) -> Option<Notified> {
    let ha = config.ha.as_ref()?;
    let conntrackd_config = ha.conntrackd_config();
    let mut out = Notified {
        steps: Vec::new(),
        failures: Vec::new(),
        told: Ok(()),
    };
    for (flag, what) in conntrackd::steps(role) {
        let result = crate::kernel::conntrackd::run_step(&conntrackd_config, flag).await;
        out.steps.push((flag, what, result.is_ok()));
        if let Err(e) = result {
            out.failures.push(StepFailure {
                flag,
                what,
                error: crate::error_chain(&e),
            });
        }
    }
    let problem: Vec<String> = out.failures.iter().map(|f| f.to_string()).collect();
    let problem = (!problem.is_empty()).then(|| problem.join("; "));
    let socket = config.control.socket.clone();
    out.told =
        tokio::task::spawn_blocking(move || control::set_role(&socket, role, problem.as_deref()))
            .await
            .unwrap_or_else(|e| {
                Err(control::ControlError::Io {
                    path: config.control.socket.clone(),
                    source: std::io::Error::other(e),
                })
            });
    Some(out)
}
