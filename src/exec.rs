//! Runs kernel tools (iptables-restore, ipset, conntrack) with an argv and optional stdin.
//! Never through a shell: no value can be parsed as shell syntax.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}: {source} (is it installed?)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
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
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<Ran, ToolError> {
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
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe; its own error is more useful than EPIPE.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        success: out.status.success(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Like [`run`], but a non-zero exit is an error.
pub fn run_ok(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ToolError> {
    let ran = run(program, args, stdin)?;
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
