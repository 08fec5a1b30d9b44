//! Deletes the conntrack entries of one uplink (by its mark), so connections that were using
//! a dead uplink re-dial through a live one at once. Only entries with that exact mark under
//! our mask go: other uplinks, unmarked router sessions and other tools' marks stay.

use crate::exec::{self, ToolError};

/// Deletes entries whose mark matches `mark` under `mask`; returns how many went.
pub fn delete_mark(mark: u32, mask: u32) -> Result<u64, ToolError> {
    let spec = format!("{mark:#x}/{mask:#x}");
    let ran = exec::run("conntrack", &["-D", "--mark", &spec], None)?;
    let deleted = deleted_count(&ran.stderr);
    // conntrack exits 1 when nothing matched: not an error for us.
    if ran.success || deleted == Some(0) {
        return Ok(deleted.unwrap_or(0));
    }
    Err(ToolError::Failed {
        tool: format!("conntrack -D --mark {spec}"),
        status: ran.status,
        stderr: ran.stderr,
    })
}

/// Reads "N flow entries have been deleted" from conntrack's summary line.
fn deleted_count(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|l| l.contains("flow entries have been deleted"))?;
    line.split("):")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        assert_eq!(
            deleted_count(
                "conntrack v1.4.7 (conntrack-tools): 250 flow entries have been deleted."
            ),
            Some(250)
        );
        assert_eq!(
            deleted_count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted."),
            Some(0)
        );
        assert_eq!(deleted_count("conntrack: something else"), None);
    }
}
