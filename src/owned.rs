//! What multiwan owns in the kernel, recorded when it installs, so that `cleanup` removes
//! exactly that even when the config is gone (`rm -r /etc/multiwan` before uninstalling).
//! Chains (`MULTIWAN_*`) and sets (`multiwan_*`, `multiwan6_*`) are found by name; the ip
//! rule priorities and routing tables are configurable, so their ranges are recorded.
//! The record lives beside the control socket (`/run/multiwan/installed.json`): on a tmpfs,
//! like the kernel state it describes, it is gone after a reboot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The record's file name, in the control socket's directory.
pub const RECORD: &str = "installed.json";

/// A record larger than this is not ours.
const MAX_RECORD: u64 = 4096;

/// The ranges multiwan's ip rules and tables live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    /// Tables `table_base + 1 ..= table_base + 99`.
    pub table_base: u32,
    /// Rule priorities `rule_priority_base .. rule_priority_base + 1000`.
    pub rule_priority_base: u32,
}

impl Ranges {
    pub fn of(config: &Config) -> Ranges {
        Ranges {
            table_base: config.table_base,
            rule_priority_base: config.rule_priority_base,
        }
    }

    /// The defaults, for a cleanup with neither config nor record.
    pub fn defaults() -> Ranges {
        Ranges {
            table_base: crate::config::DEFAULT_TABLE_BASE,
            rule_priority_base: crate::config::DEFAULT_RULE_PRIORITY_BASE,
        }
    }

    pub fn owns_priority(&self, priority: u32) -> bool {
        (self.rule_priority_base..self.rule_priority_base + 1000).contains(&priority)
    }

    pub fn owns_table(&self, table: u32) -> bool {
        table > self.table_base && table <= self.table_base + crate::config::MAX_UPLINK_ID
    }
}

/// Where the record of a config's daemon is.
pub fn record_path(config: &Config) -> PathBuf {
    record_beside(&config.control.socket)
}

/// The record beside a control socket.
pub fn record_beside(socket: &Path) -> PathBuf {
    socket
        .parent()
        .unwrap_or(Path::new("/run/multiwan"))
        .join(RECORD)
}

/// What is recorded: the ranges, and the control socket (to find a running daemon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub ranges: Ranges,
    pub socket: PathBuf,
}

/// Records the ranges (atomically; the directory must be root's alone).
pub fn record(config: &Config) -> std::io::Result<()> {
    let path = record_path(config);
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let record = Record {
        ranges: Ranges::of(config),
        socket: config.control.socket.clone(),
    };
    let text = serde_json::to_string(&record).map_err(std::io::Error::other)?;
    crate::files::write_atomically(dir, RECORD, &text).map(|_| ())
}

/// Reads a record: only a small file in a directory no one but root can write.
pub fn read(path: &Path) -> Result<Record, String> {
    let real = crate::files::trusted(path).map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&real).map_err(|e| e.to_string())?;
    if meta.len() > MAX_RECORD {
        return Err(format!(
            "{} is larger than {MAX_RECORD} bytes",
            real.display()
        ));
    }
    let text = std::fs::read_to_string(&real).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", real.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_own_their_priorities_and_tables_only() {
        let r = Ranges {
            table_base: 200,
            rule_priority_base: 20000,
        };
        assert!(r.owns_priority(20000) && r.owns_priority(20999));
        assert!(!r.owns_priority(19999) && !r.owns_priority(21000));
        assert!(r.owns_table(201) && r.owns_table(299));
        assert!(!r.owns_table(200) && !r.owns_table(300));
        assert!(!Ranges::defaults().owns_table(254), "never main");
    }

    #[test]
    fn the_record_sits_beside_the_socket() {
        assert_eq!(
            record_beside(Path::new("/run/multiwan/multiwan.sock")),
            PathBuf::from("/run/multiwan/installed.json")
        );
    }
}
