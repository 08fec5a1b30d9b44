//! Names from the config end up in iptables arguments, ipset names and log lines. Each kind
//! has a strict charset, so no value can ever become an extra argument to a kernel tool.

/// A Linux interface name: 1-15 of `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn check_interface(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > 15 || !ok_chars || name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not an interface name: use 1 to 15 of A-Z a-z 0-9 _ . -"
        ));
    }
    if name.starts_with('-') {
        return Err(format!(
            "`{name}` is not an interface name: it must not start with -"
        ));
    }
    Ok(())
}

/// A domain a resolver fills a set from: 1-253 characters, labels of 1-63 of `a-z 0-9 -`
/// (not starting or ending with `-`) joined by dots. Lower case: names do not depend on
/// case. Nothing else can reach the resolver's config line.
pub fn check_domain(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a domain name: labels of a-z 0-9 - joined by dots, like netflix.com (lower case)"
        ));
    }
    Ok(())
}

/// A multiwan object name (uplink, policy, set): 1-`max` of `[a-z0-9_-]`, starting with a
/// letter or digit.
pub fn check_name(name: &str, max: usize) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > max || !ok_chars || !ok_start {
        return Err(format!(
            "`{name}` is not a valid name: use 1 to {max} of a-z 0-9 _ -, starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(check_interface("wan1").is_ok());
        assert!(check_interface("eth0.100").is_ok());
        assert!(check_interface("wan1 -j ACCEPT").is_err());
        assert!(check_interface("averyveryverylongname").is_err());
        assert!(check_interface("").is_err());
        assert!(check_interface("-j").is_err());
        assert!(check_interface("a/b").is_err());
    }

    #[test]
    fn object_names() {
        assert!(check_name("isp1", 15).is_ok());
        assert!(check_name("gaming-pc", 32).is_ok());
        assert!(check_name("ISP1", 15).is_err());
        assert!(check_name("_x", 15).is_err());
        assert!(check_name("a b", 15).is_err());
        assert!(check_name("abcdefghijklmnop", 15).is_err());
    }
}
