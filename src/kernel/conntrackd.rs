//! Runs conntrackd's commands against the instance that uses the rendered config: one step
//! of a role change, or its sync counters. What to run is decided in [`crate::ha`].

use std::path::Path;

use super::exec::{ToolError, run_ok};
use crate::ha::conntrackd::{SyncCounters, parse_counters};

/// Runs one step (`-c`, `-f`, ...) against the conntrackd that uses `config`.
pub async fn run_step(config: &Path, flag: &str) -> Result<(), ToolError> {
    let config = config.to_string_lossy();
    run_ok("conntrackd", &["-C", &config, flag], None)
        .await
        .map(|_| ())
}

/// conntrackd's sync counters (`conntrackd -s`).
pub async fn counters(config: &Path) -> Result<SyncCounters, ToolError> {
    let config = config.to_string_lossy();
    run_ok("conntrackd", &["-C", &config, "-s"], None)
        .await
        .map(|text| parse_counters(&text))
}
