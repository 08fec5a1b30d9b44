//! An interface's byte counters, for the status page's history: what crossed an uplink in
//! both directions, read from sysfs (two small files, no tool, no netlink dump).

/// Bytes received and sent on `interface` so far; None when it does not exist (a PPP
/// session that is down) or its name is not one of an interface.
pub fn bytes(interface: &str) -> Option<u64> {
    // Names come from the validated config; refuse anything that could leave the folder.
    if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
        return None;
    }
    let read = |what: &str| -> Option<u64> {
        let path = format!("/sys/class/net/{interface}/statistics/{what}");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    };
    Some(read("rx_bytes")? + read("tx_bytes")?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_counters_and_paths_are_refused() {
        assert!(super::bytes("lo").is_some());
        assert_eq!(super::bytes("../lo"), None);
        assert_eq!(super::bytes("no-such-if0"), None);
    }
}
