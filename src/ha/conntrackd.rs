//! conntrackd's side of a role change and of `status`, as text and values: which of its
//! commands run in which order, and how to read its counters. The kernel adapter
//! ([`crate::kernel::conntrackd`]) runs them.

use serde::{Deserialize, Serialize};

use super::Role;

/// conntrackd's steps on a role change, in order (the sequence of conntrackd's own
/// primary-backup.sh):
/// - master: commit the external cache (the peer's connections) into the kernel table,
///   flush both caches, resync the internal cache from the kernel, and bulk-send it so the
///   new backup holds everything;
/// - backup: shorten the kernel timers of entries this node no longer forwards, and ask the
///   master for a full resync of the external cache;
/// - fault: shorten the timers.
pub fn steps(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Master => &[
            ("-c", "commit the external cache into the kernel"),
            ("-f", "flush the caches"),
            ("-R", "resync the internal cache with the kernel"),
            ("-B", "send a bulk update to the peer"),
        ],
        Role::Backup => &[
            ("-t", "shorten the kernel conntrack timers"),
            ("-n", "request a resync from the master"),
        ],
        Role::Fault => &[("-t", "shorten the kernel conntrack timers")],
    }
}

/// conntrackd's sync counters (`conntrackd -s`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Connections of this node (the internal cache).
    pub internal: u64,
    /// Connections learned from the peer, committed on takeover (the external cache).
    pub external: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub send_errors: u64,
    pub receive_errors: u64,
    /// Sync messages lost on the link (FTFW resends them).
    pub lost_messages: u64,
}

/// Reads `conntrackd -s`: sections start with a header line ending in `:`.
pub fn parse_counters(text: &str) -> SyncCounters {
    let mut c = SyncCounters::default();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with([' ', '\t']) && line.trim_end().ends_with(':') {
            section = line.trim_end();
            continue;
        }
        let nums = numbers(line);
        let l = line.trim_start();
        match section {
            "cache internal:" if l.starts_with("current active") => c.internal = first(&nums),
            "cache external:" if l.starts_with("current active") => c.external = first(&nums),
            s if s.starts_with("UDP traffic") || s.starts_with("Multicast traffic") => {
                if line.contains("Pckts sent") {
                    (c.packets_sent, c.packets_received) = pair(&nums);
                } else if line.contains("Error send") {
                    (c.send_errors, c.receive_errors) = pair(&nums);
                }
            }
            "message tracking:" if line.contains("Lost msgs") => {
                c.lost_messages = nums.get(1).copied().unwrap_or(0);
            }
            _ => {}
        }
    }
    c
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn first(nums: &[u64]) -> u64 {
    nums.first().copied().unwrap_or(0)
}

fn pair(nums: &[u64]) -> (u64, u64) {
    (first(nums), nums.get(1).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "cache internal:\ncurrent active connections:\t          12\nconnections created:\t\t          30\tfailed:\t           0\n\ncache external:\ncurrent active connections:\t           7\nconnections created:\t\t           9\tfailed:\t           0\n\ntraffic processed:\n                   0 Bytes                         0 Pckts\n\nUDP traffic (active device=sync0):\n                 808 Bytes sent                  916 Bytes recv\n                  21 Pckts sent                   23 Pckts recv\n                   1 Error send                    2 Error recv\n\nmessage tracking:\n                   0 Malformed msgs                    3 Lost msgs\n";

    #[test]
    fn reads_caches_link_traffic_and_losses() {
        let c = parse_counters(SAMPLE);
        assert_eq!(
            c,
            SyncCounters {
                internal: 12,
                external: 7,
                packets_sent: 21,
                packets_received: 23,
                send_errors: 1,
                receive_errors: 2,
                lost_messages: 3,
            }
        );
    }

    #[test]
    fn master_commits_before_it_flushes_and_resyncs() {
        let flags: Vec<&str> = steps(Role::Master).iter().map(|s| s.0).collect();
        assert_eq!(flags, ["-c", "-f", "-R", "-B"]);
        let flags: Vec<&str> = steps(Role::Backup).iter().map(|s| s.0).collect();
        assert_eq!(flags, ["-t", "-n"]);
    }
}
