//! Runs kernel tools (iptables-restore, ipset, conntrack, conntrackd) with an argv and an
//! optional stdin, as async processes with a deadline: never through a shell (no value can
//! be parsed as shell syntax), never blocking the thread that awaits them.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The longest any tool may run. iptables waits up to 5 s for the xtables lock (`-w 5`);
/// anything beyond this is hung, and is killed.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool} (is it installed?)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} did not finish within {} s and was killed", DEADLINE.as_secs())]
    Hung { tool: String },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
}

/// Output of a tool that ran.
pub struct Ran {
    pub stdout: String,
    pub success: bool,
    pub status: String,
    pub stderr: String,
}

/// Runs `program args...`, feeding `stdin`; returns whatever it printed.
pub async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Ran, ToolError> {
    let spawn_err = |source| ToolError::Spawn {
        tool: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let feed = child.stdin.take().zip(stdin).map(|(mut pipe, text)| {
        let text = text.to_string();
        // A tool that exits early closes the pipe; its own error is more useful than EPIPE.
        async move {
            let _ = pipe.write_all(text.as_bytes()).await;
        }
    });
    let wait = child.wait_with_output();
    let out = match feed {
        Some(feed) => tokio::time::timeout(DEADLINE, async { tokio::join!(feed, wait).1 }).await,
        None => tokio::time::timeout(DEADLINE, wait).await,
    };
    let out = out
        .map_err(|_| ToolError::Hung {
            tool: program.to_string(),
        })?
        .map_err(spawn_err)?;
    Ok(Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        success: out.status.success(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Like [`run`], but a non-zero exit is an error.
pub async fn run_ok(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ToolError> {
    let ran = run(program, args, stdin).await?;
    if ran.success {
        Ok(ran.stdout)
    } else {
        Err(ToolError::Failed {
            tool: format!("{program} {}", args.join(" ")),
            status: ran.status,
            stderr: ran.stderr,
        })
    }
}
