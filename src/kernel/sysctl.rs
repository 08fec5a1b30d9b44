//! The kernel settings a multi-WAN router needs: forwarding on, and reverse-path filtering
//! that does not drop replies arriving on a non-default uplink (loose mode, 2). multiwan
//! only reports them unless the config says `sysctl: manage`.

use std::path::PathBuf;

use crate::config::{Config, SysctlMode};

/// One setting that is not as a router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path under /proc/sys, as segments (interface names may contain dots).
    pub key: Vec<String>,
    pub found: String,
    pub wanted: &'static str,
    pub why: String,
}

impl Problem {
    pub fn name(&self) -> String {
        self.key.join(".")
    }
}

fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Finds the problems, reading values through `read` (None: not there).
pub fn check(config: &Config, read: impl Fn(&[String]) -> Option<String>) -> Vec<Problem> {
    let mut out = Vec::new();
    let forward = key(&["net", "ipv4", "ip_forward"]);
    if let Some(v) = read(&forward).filter(|v| v != "1") {
        out.push(Problem {
            key: forward,
            found: v,
            wanted: "1",
            why: "the router must forward LAN traffic".into(),
        });
    }
    let all_key = key(&["net", "ipv4", "conf", "all", "rp_filter"]);
    let all = read(&all_key).unwrap_or_default();
    if all == "1" {
        out.push(Problem {
            key: all_key,
            found: all.clone(),
            wanted: "2",
            why: "strict reverse-path filtering (the larger of `all` and the interface's value applies) drops replies that arrive on a non-default uplink".into(),
        });
    }
    for u in &config.uplinks {
        let k = key(&["net", "ipv4", "conf", &u.interface, "rp_filter"]);
        if let Some(v) = read(&k).filter(|v| v == "1") {
            out.push(Problem {
                key: k,
                found: v,
                wanted: "2",
                why: format!("strict reverse-path filtering on {} drops replies of connections balanced to {}", u.interface, u.name),
            });
        }
    }
    out.extend(check_ipv6(config, &read));
    out
}

/// With IPv6: forwarding on, and router advertisements still accepted on the uplinks whose
/// gateway is learned from them (a forwarding host ignores them unless `accept_ra` is 2).
fn check_ipv6(config: &Config, read: &impl Fn(&[String]) -> Option<String>) -> Vec<Problem> {
    let mut out = Vec::new();
    if !crate::plan::has_ipv6(config) {
        return out;
    }
    let forward = key(&["net", "ipv6", "conf", "all", "forwarding"]);
    if let Some(v) = read(&forward).filter(|v| v != "1") {
        out.push(Problem {
            key: forward,
            found: v,
            wanted: "1",
            why: "the router must forward LAN IPv6 traffic".into(),
        });
    }
    let auto = config.uplinks.iter().filter(|u| {
        u.ipv6
            .as_ref()
            .is_some_and(|s| s.gateway == crate::config::Gateway::Auto)
    });
    for u in auto {
        let k = key(&["net", "ipv6", "conf", &u.interface, "accept_ra"]);
        if let Some(v) = read(&k).filter(|v| v != "2") {
            out.push(Problem {
                key: k,
                found: v,
                wanted: "2",
                why: format!(
                    "a forwarding router ignores router advertisements on {} unless accept_ra is 2, so gateway6: auto of {} would never be learned",
                    u.interface, u.name
                ),
            });
        }
    }
    out
}

fn path(key: &[String]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    p.extend(key);
    p
}

pub fn read(key: &[String]) -> Option<String> {
    std::fs::read_to_string(path(key))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Checks the live kernel; with `sysctl: manage`, fixes what it finds. Returns one line per
/// problem: a warning, or what was changed.
pub fn enforce(config: &Config) -> Vec<String> {
    check(config, read)
        .into_iter()
        .map(|p| match config.sysctl {
            SysctlMode::Warn => format!(
                "{} is {} but should be {}: {} (set it, or use `sysctl: manage`)",
                p.name(),
                p.found,
                p.wanted,
                p.why
            ),
            SysctlMode::Manage => match std::fs::write(path(&p.key), p.wanted) {
                Ok(()) => format!("set {} = {} (was {})", p.name(), p.wanted, p.found),
                Err(e) => format!("cannot set {} = {}: {e}", p.name(), p.wanted),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_forwarding_and_strict_rp_filter() {
        let config = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: eth0.100}\n",
            "t.yaml",
        )
        .unwrap();
        let values: HashMap<String, &str> = [
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.eth0.100.rp_filter", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let problems = check(&config, |k| values.get(&k.join(".")).map(|v| v.to_string()));
        let names: Vec<String> = problems.iter().map(Problem::name).collect();
        assert_eq!(
            names,
            vec!["net.ipv4.ip_forward", "net.ipv4.conf.eth0.100.rp_filter"]
        );
        assert_eq!(
            problems[1].key.len(),
            5,
            "interface name stays one path segment"
        );
    }

    #[test]
    fn ipv6_needs_forwarding_and_router_advertisements_on_auto_uplinks() {
        let config = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1, gateway6: auto}\n  - {name: b, interface: wan2, gateway6: 'fe80::1'}\n",
            "t.yaml",
        )
        .unwrap();
        let values: HashMap<String, &str> = [
            ("net.ipv6.conf.all.forwarding", "0"),
            ("net.ipv6.conf.wan1.accept_ra", "1"),
            ("net.ipv6.conf.wan2.accept_ra", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let problems = check(&config, |k| values.get(&k.join(".")).map(|v| v.to_string()));
        let names: Vec<String> = problems.iter().map(Problem::name).collect();
        assert_eq!(
            names,
            [
                "net.ipv6.conf.all.forwarding",
                "net.ipv6.conf.wan1.accept_ra"
            ],
            "a static gateway6 needs no advertisements"
        );
    }
}
