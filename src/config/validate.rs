//! Turns YAML text into a validated [`Config`], collecting every problem on the way.
//!
//! Each top-level key, and each item of the uplink and policy lists, is deserialized on its
//! own, so one broken uplink does not hide the errors of the next.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::error::{ConfigError, Diagnostic};
use super::locate::Locator;
use super::model::*;
use super::names::{check_interface, check_name};
use super::path::FieldPath;
use super::raw::*;
use super::values::{HexU32, Net, OneOrMany, Span};

pub(crate) const TOP_KEYS: &[&str] = &[
    "lan_interfaces",
    "uplinks",
    "policies",
    "sets",
    "nat",
    "when_all_down",
    "mark_mask",
    "table_base",
    "rule_priority_base",
    "sysctl",
    "initial_state",
    "control",
    "metrics",
    "hooks",
    "hook_timeout",
    "port_forwards",
    "ha",
];

/// Collects diagnostics while reading one file.
pub(super) struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    /// Built on the first error only: a valid file never pays for a second parse.
    locator: std::cell::OnceCell<Locator>,
    diags: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    pub fn new(text: &'a str, file: &'a str) -> Self {
        Self {
            text,
            file,
            locator: std::cell::OnceCell::new(),
            diags: Vec::new(),
        }
    }

    pub fn run(mut self) -> Result<Config, ConfigError> {
        let top = match self.top_level() {
            Some(top) => top,
            None => return Err(self.into_error()),
        };
        let config = self.build(&top);
        if self.diags.is_empty() {
            Ok(config)
        } else {
            Err(self.into_error())
        }
    }

    fn into_error(mut self) -> ConfigError {
        self.diags.sort_by_key(|d| (d.line, d.column));
        ConfigError::Invalid {
            diagnostics: self.diags,
        }
    }

    /// Whether a problem was already reported at `path` (a value that failed to parse is
    /// then also absent: it must not be reported a second time as missing).
    pub(super) fn reported(&self, path: &FieldPath) -> bool {
        let field = path.to_string();
        self.diags.iter().any(|d| d.field == field)
    }

    pub(super) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let pos = self
            .locator
            .get_or_init(|| Locator::new(self.text))
            .find(path);
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            field: path.to_string(),
            message: message.into(),
        });
    }

    /// Parses the YAML and returns its top-level mapping by key.
    fn top_level(&mut self) -> Option<BTreeMap<String, Value>> {
        let value: Value = match serde_norway::from_str(self.text) {
            Ok(v) => v,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                let message = strip_location(&e.to_string());
                self.diags.push(Diagnostic {
                    file: self.file.to_string(),
                    line,
                    column,
                    field: "(document)".into(),
                    message: format!("YAML syntax error: {message}"),
                });
                return None;
            }
        };
        let root = FieldPath::root();
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => {
                self.error(
                    &root,
                    "the file is empty: it needs at least lan_interfaces and uplinks",
                );
                return None;
            }
            _ => {
                self.error(&root, "the file must be a mapping of settings (key: value)");
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let Value::String(key) = key else {
                self.error(&root, "every top-level key must be a string");
                continue;
            };
            if TOP_KEYS.contains(&key.as_str()) {
                out.insert(key, value);
            } else {
                let hint = suggestion(&key, TOP_KEYS);
                self.error(&root.key(&key), format!("unknown setting `{key}`{hint}"));
            }
        }
        Some(out)
    }

    /// Deserializes `value` as `T`, reporting each failure at the exact nested field. A
    /// broken field is reported, taken out and the rest read again, so that one typo does not
    /// hide the other problems of the same item. Returns None if anything was wrong.
    pub(super) fn typed<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &FieldPath,
    ) -> Option<T> {
        if let Ok(v) = T::deserialize(value) {
            return Some(v);
        }
        let mut value = value.clone();
        let mut reported: Vec<Vec<PathStep>> = Vec::new();
        for _ in 0..32 {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let message = strip_location(&err.inner().to_string());
            let mut steps = serde_steps(err.path());
            if let Some(field) = quoted_field(&message, "unknown field `")
                && steps.last() != Some(&PathStep::Key(field.clone()))
            {
                steps.push(PathStep::Key(field));
            }
            let missing = quoted_field(&message, "missing field `");
            let mut at_missing = steps.clone();
            at_missing.extend(missing.map(PathStep::Key));
            if reported.contains(&at_missing) {
                return None;
            }
            self.error(&extend(path, &steps), message);
            reported.push(steps.clone());
            if !remove_at(&mut value, &steps) {
                return None;
            }
        }
        None
    }

    fn optional<T: DeserializeOwned>(
        &mut self,
        top: &BTreeMap<String, Value>,
        key: &str,
    ) -> Option<T> {
        let value = top.get(key)?;
        self.typed(value, &FieldPath::root().key(key))
    }

    /// Deserializes each item of a top-level list on its own; also returns each item's
    /// `name`, if it has one, so that references to a broken item are not reported again.
    pub(super) fn list<T: DeserializeOwned>(
        &mut self,
        top: &BTreeMap<String, Value>,
        key: &str,
    ) -> Vec<(FieldPath, Option<T>, Option<String>)> {
        let path = FieldPath::root().key(key);
        match top.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let p = path.index(i);
                    let name = v.get("name").and_then(Value::as_str).map(str::to_string);
                    (p.clone(), self.typed(v, &p), name)
                })
                .collect(),
            Some(_) => {
                self.error(&path, "must be a list");
                Vec::new()
            }
        }
    }

    fn build(&mut self, top: &BTreeMap<String, Value>) -> Config {
        let root = FieldPath::root();
        let marks = self.mark_layout(top);
        let lan_interfaces = self.lan_interfaces(top);
        let sets = self.sets(top);
        let (uplinks, declared_uplinks) = self.uplinks(top, &marks);
        let set_names: HashSet<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        let policies = self.policies(top, &uplinks, &declared_uplinks, &set_names);
        for lan in &lan_interfaces {
            if let Some(u) = uplinks.iter().find(|u| &u.interface == lan) {
                self.error(
                    &root.key("lan_interfaces"),
                    format!("`{lan}` is also the interface of uplink {}", u.name),
                );
            }
        }
        let table_base = self.table_base(top, &uplinks);
        let rule_priority_base = self.priority_base(top);
        let nat: RawNat = self.optional(top, "nat").unwrap_or_default();
        let control = self.control(top);
        let metrics = self.metrics(top);
        let hooks = self.hooks(top);
        let hook_timeout = self.hook_timeout(top);
        let port_forwards = self.port_forwards(top, &uplinks);
        let ha = self.ha(top, &lan_interfaces, &uplinks);
        Config {
            lan_interfaces,
            uplinks,
            policies,
            sets,
            masquerade: nat.masquerade.unwrap_or(true),
            when_all_down: self.optional(top, "when_all_down").unwrap_or_default(),
            marks,
            table_base,
            rule_priority_base,
            sysctl: self.optional(top, "sysctl").unwrap_or_default(),
            initial_state: self.optional(top, "initial_state").unwrap_or_default(),
            control,
            metrics,
            hooks,
            hook_timeout,
            port_forwards,
            ha,
        }
    }

    fn lan_interfaces(&mut self, top: &BTreeMap<String, Value>) -> Vec<String> {
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

    fn mark_layout(&mut self, top: &BTreeMap<String, Value>) -> MarkLayout {
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

    fn sets(&mut self, top: &BTreeMap<String, Value>) -> Vec<DestinationSet> {
        let path = FieldPath::root().key("sets");
        let map = match top.get("sets") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => {
                self.error(&path, "must be a mapping of set name to a list of networks");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (key, value) in map {
            let Value::String(name) = key else {
                self.error(&path, "set names must be strings");
                continue;
            };
            let p = path.key(&name);
            if let Err(e) = check_name(&name, 18) {
                self.error(&p, e);
                continue;
            }
            if name == "connected" {
                self.error(&p, "`connected` is reserved: multiwan keeps the connected networks in a set of that name");
                continue;
            }
            let networks = match value {
                Value::Null => Some(OneOrMany(Vec::new())),
                v => self.typed::<OneOrMany<Net>>(&v, &p),
            };
            if let Some(n) = networks {
                out.push(DestinationSet {
                    name,
                    networks: nets(Some(n)),
                });
            }
        }
        out
    }

    /// Returns the valid uplinks and the names of every uplink written in the file, valid or
    /// not (so a policy naming a broken uplink is not reported a second time).
    fn uplinks(
        &mut self,
        top: &BTreeMap<String, Value>,
        marks: &MarkLayout,
    ) -> (Vec<Uplink>, HashSet<String>) {
        let path = FieldPath::root().key("uplinks");
        let items = self.list::<RawUplink>(top, "uplinks");
        if items.is_empty() {
            let msg = if top.contains_key("uplinks") {
                "the list is empty: multiwan needs at least one uplink"
            } else {
                "missing: list the uplinks (name, interface, gateway)"
            };
            self.error(&path, msg);
        }
        let mut declared = HashSet::new();
        let mut out: Vec<(FieldPath, Uplink)> = Vec::new();
        for (i, (p, raw, name)) in items.into_iter().enumerate() {
            if let Some(raw) = raw {
                let u = self.uplink(raw, i, &p, marks);
                out.push((p, u));
            }
            declared.extend(name);
        }
        self.uplink_uniqueness(&out);
        (out.into_iter().map(|(_, u)| u).collect(), declared)
    }

    /// Checks one uplink. The model is returned even when a field is wrong (the config is
    /// refused anyway), so that checks across uplinks still see it.
    fn uplink(
        &mut self,
        raw: RawUplink,
        index: usize,
        p: &FieldPath,
        marks: &MarkLayout,
    ) -> Uplink {
        if let Err(e) = check_name(&raw.name, 15) {
            self.error(&p.key("name"), e);
        }
        if let Err(e) = check_interface(&raw.interface) {
            self.error(&p.key("interface"), e);
        }
        let gateway = match raw.gateway.as_deref() {
            None | Some("auto") => Gateway::Auto,
            Some(text) => match text.parse::<Ipv4Addr>() {
                Ok(ip) if is_unicast(ip) => Gateway::Static(ip),
                _ => {
                    self.error(
                        &p.key("gateway"),
                        format!("`{text}` is not an IPv4 unicast address or `auto`"),
                    );
                    Gateway::Auto
                }
            },
        };
        let weight = raw.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            self.error(
                &p.key("weight"),
                format!("{weight} is out of range 1..=1000"),
            );
        }
        let tier = raw.tier.unwrap_or(1);
        if !(1..=16).contains(&tier) {
            self.error(&p.key("tier"), format!("{tier} is out of range 1..=16"));
        }
        let id = raw.id.unwrap_or(index as u32 + 1);
        let max_id = MAX_UPLINK_ID.min(marks.max_id());
        if id == 0 || id > max_id {
            let at = if raw.id.is_some() {
                p.key("id")
            } else {
                p.clone()
            };
            self.error(
                &at,
                format!(
                    "id {id} does not fit: ids go from 1 to {max_id} (mark {:#x} must fit mark_mask {:#x}, and multiwan has 99 rule slots)",
                    marks.uplink(id),
                    marks.mask
                ),
            );
        }
        let probe = self.probe(raw.probe.unwrap_or_default(), &p.key("probe"));
        Uplink {
            name: raw.name,
            interface: raw.interface,
            gateway,
            weight,
            tier: tier as u8,
            id,
            id_explicit: raw.id.is_some(),
            probe,
            flush_on_down: raw.flush_on_down.unwrap_or(true),
            flush_on_recovery: raw.flush_on_recovery.unwrap_or(false),
        }
    }

    fn uplink_uniqueness(&mut self, uplinks: &[(FieldPath, Uplink)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut interfaces: HashMap<&str, usize> = HashMap::new();
        let mut ids: HashMap<u32, usize> = HashMap::new();
        for (i, (p, u)) in uplinks.iter().enumerate() {
            if let Some(first) = names.insert(&u.name, i) {
                self.error(
                    &p.key("name"),
                    format!(
                        "uplink name `{}` is already used by {}",
                        u.name, uplinks[first].0
                    ),
                );
            }
            if let Some(first) = interfaces.insert(&u.interface, i) {
                let other = &uplinks[first].1.name;
                self.error(
                    &p.key("interface"),
                    format!(
                        "interface `{}` is already used by uplink {other}",
                        u.interface
                    ),
                );
            }
            if let Some(first) = ids.insert(u.id, i) {
                let other = &uplinks[first].1.name;
                self.error(
                    &p.key("id"),
                    format!("id {} is already used by uplink {other} (ids default to the list position)", u.id),
                );
            }
        }
    }

    fn probe(&mut self, raw: RawProbe, p: &FieldPath) -> Probe {
        let targets = raw.targets.map(|t| t.0).unwrap_or_default();
        for (i, t) in targets.iter().enumerate() {
            if !is_unicast(*t) {
                self.error(
                    &p.key("targets").index(i),
                    format!("{t} is not a unicast address"),
                );
            }
        }
        let (interval, timeout) =
            self.timing(raw.interval, raw.timeout, Duration::from_millis(500), p);
        let quorum = raw.quorum.unwrap_or(1);
        let available = targets.len().max(1) as u32;
        if quorum == 0 || quorum > available {
            self.error(
                &p.key("quorum"),
                format!("{quorum} is out of range: at least 1 and at most the number of targets ({available})"),
            );
        }
        let down_after = self.count(raw.down_after, 3, &p.key("down_after"));
        let up_after = self.count(raw.up_after, 5, &p.key("up_after"));
        let degraded = raw.degraded.map(|d| self.degraded(d, &p.key("degraded")));
        Probe {
            targets,
            interval,
            timeout,
            quorum,
            down_after,
            up_after,
            degraded,
        }
    }

    /// A check's `interval` (at least 100 ms) and `timeout` (more than 0, at most 60 s).
    pub(super) fn timing(
        &mut self,
        interval: Option<Span>,
        timeout: Option<Span>,
        default_interval: Duration,
        p: &FieldPath,
    ) -> (Duration, Duration) {
        let interval = interval.map_or(default_interval, |s| s.0);
        if interval < Duration::from_millis(100) {
            self.error(
                &p.key("interval"),
                format!("{} is too short: the minimum is 100ms", Span(interval)),
            );
        }
        let timeout = timeout.map_or(Duration::from_secs(1), |s| s.0);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            self.error(
                &p.key("timeout"),
                format!(
                    "{} is out of range: more than 0 and at most 60s",
                    Span(timeout)
                ),
            );
        }
        (interval, timeout)
    }

    pub(super) fn count(&mut self, value: Option<u32>, default: u32, p: &FieldPath) -> u32 {
        let v = value.unwrap_or(default);
        if !(1..=100).contains(&v) {
            self.error(p, format!("{v} is out of range 1..=100"));
        }
        v
    }

    fn degraded(&mut self, raw: RawDegraded, p: &FieldPath) -> Degraded {
        if raw.loss.is_none() && raw.latency.is_none() {
            self.error(
                p,
                "give `loss`, `latency` or both: the thresholds above which the uplink is degraded",
            );
        }
        let weight_factor = raw.weight_factor.unwrap_or(0.25);
        if !(weight_factor > 0.0 && weight_factor <= 1.0) {
            self.error(
                &p.key("weight_factor"),
                format!("{weight_factor} is out of range: more than 0 and at most 1"),
            );
        }
        Degraded {
            loss: raw.loss.map(|l| l.0),
            latency: raw.latency.map(|l| l.0),
            weight_factor,
        }
    }

    fn policies(
        &mut self,
        top: &BTreeMap<String, Value>,
        uplinks: &[Uplink],
        declared: &HashSet<String>,
        sets: &HashSet<&str>,
    ) -> Vec<Policy> {
        let items = self.list::<RawPolicy>(top, "policies");
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (p, raw, _) in items {
            let Some(raw) = raw else { continue };
            if let Err(e) = check_name(&raw.name, 32) {
                self.error(&p.key("name"), e);
            } else if !names.insert(raw.name.clone()) {
                self.error(
                    &p.key("name"),
                    format!("policy name `{}` is used twice", raw.name),
                );
            }
            let matcher = self.matcher(raw.matcher, &p.key("match"), sets);
            let action = self.action(&raw.uplink, raw.action, raw.fallback, &p, uplinks, declared);
            if let Some(action) = action {
                out.push(Policy {
                    name: raw.name,
                    matcher,
                    action,
                });
            }
        }
        out
    }

    fn matcher(&mut self, raw: RawMatch, p: &FieldPath, sets: &HashSet<&str>) -> Match {
        let m = Match {
            sources: nets(raw.source),
            destinations: nets(raw.destination),
            protocol: raw.protocol.unwrap_or_default(),
            source_ports: raw.source_ports.map(|s| s.0).unwrap_or_default(),
            destination_ports: raw.destination_ports.map(|s| s.0).unwrap_or_default(),
            destination_set: raw.destination_set,
        };
        let empty = m.sources.is_empty()
            && m.destinations.is_empty()
            && m.protocol == Protocol::All
            && m.source_ports.is_empty()
            && m.destination_ports.is_empty()
            && m.destination_set.is_none();
        if empty {
            self.error(p, "give at least one of source, destination, protocol, source_ports, destination_ports, destination_set");
        }
        let has_ports = !m.source_ports.is_empty() || !m.destination_ports.is_empty();
        if has_ports && !m.protocol.has_ports() {
            let at = if m.source_ports.is_empty() {
                "destination_ports"
            } else {
                "source_ports"
            };
            self.error(
                &p.key(at),
                format!(
                    "ports need `protocol: tcp` or `protocol: udp` (protocol is {})",
                    m.protocol.name()
                ),
            );
        }
        if let Some(set) = &m.destination_set
            && !sets.contains(set.as_str())
        {
            self.error(
                &p.key("destination_set"),
                format!("there is no set named `{set}` under `sets`"),
            );
        }
        m
    }

    fn action(
        &mut self,
        uplink: &Option<String>,
        action: Option<RawAction>,
        fallback: Option<Fallback>,
        p: &FieldPath,
        uplinks: &[Uplink],
        declared: &HashSet<String>,
    ) -> Option<PolicyAction> {
        match (uplink, action) {
            (Some(_), Some(_)) => {
                self.error(
                    &p.key("action"),
                    "give either `uplink` or `action: main`, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    p,
                    "missing `uplink` (pin to an uplink) or `action: main` (bypass multiwan)",
                );
                None
            }
            (None, Some(RawAction::Main)) => {
                if fallback.is_some() {
                    self.error(
                        &p.key("fallback"),
                        "only a policy pinned to an uplink has a fallback",
                    );
                }
                Some(PolicyAction::Main)
            }
            (Some(name), None) => {
                if !uplinks.iter().any(|u| &u.name == name) && !declared.contains(name) {
                    let mut known: Vec<&str> = declared.iter().map(String::as_str).collect();
                    known.sort_unstable();
                    self.error(
                        &p.key("uplink"),
                        format!(
                            "there is no uplink named `{name}` (uplinks: {})",
                            known.join(", ")
                        ),
                    );
                    return None;
                }
                Some(PolicyAction::Pin {
                    uplink: name.clone(),
                    fallback: fallback.unwrap_or_default(),
                })
            }
        }
    }

    fn table_base(&mut self, top: &BTreeMap<String, Value>, uplinks: &[Uplink]) -> u32 {
        let base = self.optional::<u32>(top, "table_base").unwrap_or(100);
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

    fn priority_base(&mut self, top: &BTreeMap<String, Value>) -> u32 {
        let base = self
            .optional::<u32>(top, "rule_priority_base")
            .unwrap_or(10000);
        if base == 0 || base.saturating_add(999) >= 32766 {
            self.error(
                &FieldPath::root().key("rule_priority_base"),
                format!("{base}: multiwan's rules use {base}..{} which must lie between 1 and 32765, clear of the kernel's `main` (32766) and `default` (32767) rules", base.saturating_add(1000)),
            );
        }
        base
    }

    fn control(&mut self, top: &BTreeMap<String, Value>) -> Control {
        let raw: RawControl = self.optional(top, "control").unwrap_or_default();
        let p = FieldPath::root().key("control");
        let socket = raw
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/multiwan/multiwan.sock"));
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

    fn metrics(&mut self, top: &BTreeMap<String, Value>) -> Option<SocketAddr> {
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

    fn hooks(&mut self, top: &BTreeMap<String, Value>) -> Vec<PathBuf> {
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

    fn hook_timeout(&mut self, top: &BTreeMap<String, Value>) -> Duration {
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
}

fn nets(list: Option<OneOrMany<Net>>) -> Vec<ipnet::Ipv4Net> {
    list.map(|l| l.0.into_iter().map(|n| n.0).collect())
        .unwrap_or_default()
}

pub(super) fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
}

/// serde_norway appends " at line L column C" to some messages; we print our own position.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The field named by serde messages like "unknown field `x`, expected ...".
fn quoted_field(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn serde_steps(path: &serde_path_to_error::Path) -> Vec<PathStep> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(PathStep::Index(*index)),
            Segment::Map { key } => Some(PathStep::Key(key.clone())),
            Segment::Enum { variant } => Some(PathStep::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

fn extend(path: &FieldPath, steps: &[PathStep]) -> FieldPath {
    steps.iter().fold(path.clone(), |p, s| match s {
        PathStep::Key(k) => p.key(k),
        PathStep::Index(i) => p.index(*i),
    })
}

/// Removes the node at `steps` from `value`; false if there is nothing to remove.
fn remove_at(value: &mut Value, steps: &[PathStep]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut node = value;
    for step in parents {
        let next = match (step, node) {
            (PathStep::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (PathStep::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (PathStep::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (PathStep::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

fn suggestion(key: &str, known: &[&str]) -> String {
    let close = known.iter().find(|k| {
        let (a, b) = (k.as_bytes(), key.as_bytes());
        a.len().abs_diff(b.len()) <= 2
            && (k.starts_with(&key[..key.len().min(4)]) || key.contains(*k))
    });
    match close {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => format!("; known settings: {}", known.join(", ")),
    }
}
