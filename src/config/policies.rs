//! Checks `sets` (destination networks) and `policies` (what they match, and the uplink
//! they pin to or `action: main`).

use std::collections::{BTreeMap, HashSet};

use serde_norway::Value;

use super::model::*;
use super::names::check_name;
use super::path::FieldPath;
use super::raw::*;
use super::validate::Checker;
use super::values::{Net, OneOrMany};

impl Checker<'_> {
    pub(super) fn sets(&mut self, top: &BTreeMap<String, Value>) -> Vec<DestinationSet> {
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

    pub(super) fn policies(
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

    pub(super) fn matcher(&mut self, raw: RawMatch, p: &FieldPath, sets: &HashSet<&str>) -> Match {
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

    pub(super) fn action(
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
}

pub(super) fn nets(list: Option<OneOrMany<Net>>) -> Vec<ipnet::Ipv4Net> {
    list.map(|l| l.0.into_iter().map(|n| n.0).collect())
        .unwrap_or_default()
}
