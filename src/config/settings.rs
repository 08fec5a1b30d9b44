//! Checks the router-wide settings: LAN interfaces, the mark mask, table and rule
//! priority bases, the control socket, metrics, hooks.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_norway::Value;

use super::model::*;
use super::names::check_interface;
use super::path::FieldPath;
use super::raw::RawControl;
use super::validate::Checker;
use super::values::{HexU32, OneOrMany, Span};

impl Checker<'_> {
    pub(super) fn lan_interfaces(&mut self, top: &BTreeMap<String, Value>) -> Vec<String> {
        let path = FieldPath::root().key("lan_interfaces");
        let Some(list) = self.optional::<OneOrMany<String>>(top, "lan_interfaces") else {
            if !top.contains_key("lan_interfaces") {
                self.error(
                    &path,
                    "missing: list the interfaces where LAN traffic enters, like [lan0]",
                );
            }
            return Vec::new();
        };
        if list.0.is_empty() {
            self.error(&path, "must name at least one LAN interface");
        }
        let mut seen = HashSet::new();
        for (i, name) in list.0.iter().enumerate() {
            if let Err(e) = check_interface(name) {
                self.error(&path.index(i), e);
            } else if !seen.insert(name.clone()) {
                self.error(&path.index(i), format!("`{name}` is listed twice"));
            }
        }
        list.0
    }

    pub(super) fn mark_layout(&mut self, top: &BTreeMap<String, Value>) -> MarkLayout {
        let path = FieldPath::root().key("mark_mask");
        let mask = self
            .optional::<HexU32>(top, "mark_mask")
            .map_or(0xff00, |m| m.0);
        let layout = MarkLayout::new(mask);
        if mask == 0 {
            self.error(
                &path,
                "must not be 0: multiwan needs some fwmark bits of its own",
            );
            return MarkLayout::new(0xff00);
        }
        let contiguous = (mask >> layout.shift).wrapping_add(1) & (mask >> layout.shift) == 0;
        if !contiguous {
            self.error(
                &path,
                format!("{mask:#x} must be one run of bits, like 0xff00"),
            );
            return MarkLayout::new(0xff00);
        }
        if layout.max_id() == 0 {
            self.error(
                &path,
                format!("{mask:#x} is too narrow: it needs at least 2 bits"),
            );
        }
        layout
    }

    pub(super) fn table_base(&mut self, top: &BTreeMap<String, Value>, uplinks: &[Uplink]) -> u32 {
        let base = self
            .optional::<u32>(top, "table_base")
            .unwrap_or(super::DEFAULT_TABLE_BASE);
        let path = FieldPath::root().key("table_base");
        let max_id = uplinks.iter().map(|u| u.id).max().unwrap_or(1);
        let Some(last) = base.checked_add(max_id) else {
            self.error(
                &path,
                format!("{base} is too large: tables must stay below 2^32"),
            );
            return base;
        };
        let first = base.saturating_add(1);
        let clash: Vec<String> = uplinks
            .iter()
            .filter(|u| (253..=255).contains(&base.wrapping_add(u.id)))
            .map(|u| format!("{} -> {}", u.name, base + u.id))
            .collect();
        if base == 0 {
            self.error(&path, "must be at least 1");
        } else if !clash.is_empty() {
            self.error(
                &path,
                format!(
                    "{base}: uplink tables {first}..={last} hit the kernel's reserved tables 253 (default), 254 (main), 255 (local): {}",
                    clash.join(", ")
                ),
            );
        }
        base
    }

    pub(super) fn priority_base(&mut self, top: &BTreeMap<String, Value>) -> u32 {
        let base = self
            .optional::<u32>(top, "rule_priority_base")
            .unwrap_or(super::DEFAULT_RULE_PRIORITY_BASE);
        if base == 0 || base.saturating_add(999) >= 32766 {
            self.error(
                &FieldPath::root().key("rule_priority_base"),
                format!("{base}: multiwan's rules use {base}..{} which must lie between 1 and 32765, clear of the kernel's `main` (32766) and `default` (32767) rules", base.saturating_add(1000)),
            );
        }
        base
    }

    pub(super) fn control(&mut self, top: &BTreeMap<String, Value>) -> Control {
        let raw: RawControl = self.optional(top, "control").unwrap_or_default();
        let p = FieldPath::root().key("control");
        let socket = raw
            .socket
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_SOCKET));
        if !socket.is_absolute() {
            self.error(
                &p.key("socket"),
                format!("`{}` must be an absolute path", socket.display()),
            );
        }
        if let Some(group) = &raw.group {
            let ok = !group.is_empty()
                && group.len() <= 32
                && group
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            if !ok {
                self.error(&p.key("group"), format!("`{group}` is not a group name"));
            }
        }
        Control {
            socket,
            group: raw.group,
        }
    }

    /// `web: {listen, token_sha256}`: off unless given; a page on any address but
    /// loopback must ask for a token, of which only the hash is kept.
    pub(super) fn web(&mut self, top: &BTreeMap<String, Value>) -> Option<super::model::Web> {
        let raw: super::raw::RawWeb = self.optional(top, "web")?;
        let p = FieldPath::root().key("web");
        let Some(text) = raw.listen else {
            self.error(
                &p.key("listen"),
                "give the address:port to serve the page on, like 127.0.0.1:8080",
            );
            return None;
        };
        let Ok(listen) = text.parse::<SocketAddr>() else {
            self.error(
                &p.key("listen"),
                format!(
                    "`{}` is not an address:port like 127.0.0.1:8080",
                    super::printable(&text)
                ),
            );
            return None;
        };
        let token_sha256 = match raw.token_sha256.as_deref().map(parse_sha256) {
            None => None,
            Some(Some(h)) => Some(h),
            Some(None) => {
                self.error(
                    &p.key("token_sha256"),
                    "not a SHA-256 in hex (64 characters): make one with `printf %s 'TOKEN' | sha256sum`",
                );
                return None;
            }
        };
        if token_sha256.is_none() && !listen.ip().is_loopback() {
            self.error(
                &p.key("token_sha256"),
                format!("the page on {listen}, not a loopback address, must ask for a token: set token_sha256 (`printf %s 'TOKEN' | sha256sum`)"),
            );
        }
        Some(super::model::Web {
            listen,
            token_sha256,
        })
    }

    pub(super) fn metrics(&mut self, top: &BTreeMap<String, Value>) -> Option<SocketAddr> {
        let text: String = match top.get("metrics") {
            None | Some(Value::Null) => return None,
            Some(_) => self.optional(top, "metrics")?,
        };
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    &FieldPath::root().key("metrics"),
                    format!("`{text}` is not an address:port like 127.0.0.1:9273"),
                );
                None
            }
        }
    }

    pub(super) fn hooks(&mut self, top: &BTreeMap<String, Value>) -> Vec<PathBuf> {
        let hooks: OneOrMany<PathBuf> = self.optional(top, "hooks").unwrap_or_default();
        let p = FieldPath::root().key("hooks");
        for (i, h) in hooks.0.iter().enumerate() {
            if !h.is_absolute() {
                self.error(
                    &p.index(i),
                    format!("`{}` must be an absolute path", h.display()),
                );
            }
        }
        hooks.0
    }

    pub(super) fn hook_timeout(&mut self, top: &BTreeMap<String, Value>) -> Duration {
        let t = self
            .optional::<Span>(top, "hook_timeout")
            .map_or(Duration::from_secs(10), |s| s.0);
        if t.is_zero() || t > Duration::from_secs(600) {
            self.error(
                &FieldPath::root().key("hook_timeout"),
                "out of range: more than 0 and at most 10m",
            );
        }
        t
    }

    /// `lan_prefix6`: the LAN's IPv6 prefix, needed (and only useful) with `nat6: npt`,
    /// which maps it onto each uplink's prefix keeping the host bits.
    pub(super) fn lan_prefix6(
        &mut self,
        top: &BTreeMap<String, Value>,
        uplinks: &[Uplink],
    ) -> Option<ipnet::Ipv6Net> {
        let path = FieldPath::root().key("lan_prefix6");
        let lan = match top
            .get("lan_prefix6")
            .map(|v| self.typed::<String>(v, &path))
        {
            None => None,
            Some(None) => return None,
            Some(Some(t)) => match t.parse::<ipnet::Ipv6Net>() {
                Ok(n) if (1..=128).contains(&n.prefix_len()) => Some(n.trunc()),
                _ => {
                    self.error(
                        &path,
                        format!("`{t}` is not an IPv6 prefix like fd00:0:0:10::/64"),
                    );
                    return None;
                }
            },
        };
        for (i, u) in uplinks.iter().enumerate() {
            let Some(side) = u.ipv6.as_ref().filter(|s| s.nat == Nat6::Npt) else {
                continue;
            };
            let at = FieldPath::root().key("uplinks").index(i).key("nat6");
            match (lan, side.prefix) {
                (None, _) => self.error(
                    &at,
                    "npt maps the LAN prefix onto the uplink's: give `lan_prefix6` (like fd00:0:0:10::/64)",
                ),
                (Some(l), Some(w)) if w.prefix_len() > l.prefix_len() => self.error(
                    &FieldPath::root().key("uplinks").index(i).key("prefix6"),
                    format!("{w} is longer than lan_prefix6 {l}: the uplink's prefix must hold the LAN's"),
                ),
                _ => {}
            }
        }
        lan
    }
}

/// 64 hex digits to 32 bytes.
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
