//! The client side: `multiwan status` and `ha notify` send one request line and read the
//! whole answer.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proto::{HA_ROLE, IPV6_PREFIX, STATUS, Status};
use crate::ha::Role;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no multiwan daemon is listening on {path}")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("permission denied on {path}: only root (or the control group) may use it")]
    Denied { path: PathBuf },
    #[error("control socket {path}")]
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

/// Hands an uplink's delegated IPv6 prefix (None: withdrawn) to the daemon; returns what
/// it did.
pub fn set_prefix6(
    path: &Path,
    uplink: &str,
    prefix: Option<ipnet::Ipv6Net>,
) -> Result<String, ControlError> {
    let prefix = prefix.map_or("none".to_string(), |p| p.to_string());
    let answer = ask(path, &format!("{IPV6_PREFIX} {uplink} {prefix}"))?;
    match answer.trim().strip_prefix("ok: ") {
        Some(done) => Ok(done.to_string()),
        None => Err(ControlError::Refused {
            path: path.to_path_buf(),
            answer: answer.trim().to_string(),
        }),
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
