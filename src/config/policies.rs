//! Checks `sets` (destination networks) and `policies` (what they match, and the uplink
//! they pin to or `action: main`).

use std::collections::{BTreeMap, HashSet};

use serde_norway::Value;

use super::model::*;
use super::names::{check_domain, check_name};
use super::path::FieldPath;
use super::raw::*;
use super::validate::Checker;

/// Domains of one set: each is a line of the resolver's config and a suffix it tests
/// every answer against.
const MAX_DOMAINS: usize = 1000;
use super::values::{Net, OneOrMany};

/// ipset's default `maxelem`: a set with more members cannot be filled ("Hash is full").
pub const MAX_SET_MEMBERS: usize = 65_536;
/// Rules one policy may expand to (sources × destinations × port groups).
pub const MAX_RULES_PER_POLICY: usize = 1_000;
/// Rules all policies together may expand to: every new connection may walk them.
pub const MAX_POLICY_RULES: usize = 20_000;

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
            if let Err(e) = check_name(&name, 17) {
                self.error(&p, e);
                continue;
            }
            if name == "connected" {
                self.error(&p, "`connected` is reserved: multiwan keeps the connected networks in a set of that name");
                continue;
            }
            let set = match value {
                Value::Null => Some(DestinationSet {
                    name,
                    networks: Vec::new(),
                    domains: Vec::new(),
                    timeout: None,
                }),
                Value::Mapping(_) => self.set_spec(name, &value, &p),
                v => self
                    .typed::<OneOrMany<Net>>(&v, &p)
                    .map(|n| DestinationSet {
                        name,
                        networks: nets(Some(n)),
                        domains: Vec::new(),
                        timeout: None,
                    }),
            };
            if let Some(set) = set {
                let at = if set.domains.is_empty() {
                    p.clone()
                } else {
                    p.key("members")
                };
                self.set_members(&set.networks, &at, "a set member");
                out.push(set);
            }
        }
        out
    }

    /// A set written as a mapping: `members`, `domains` (with a `timeout` for the addresses
    /// the resolver adds, 1h unless given), or both.
    fn set_spec(&mut self, name: String, value: &Value, p: &FieldPath) -> Option<DestinationSet> {
        let raw: RawSet = self.typed(value, p)?;
        let domains = raw.domains.map(|d| d.0).unwrap_or_default();
        if domains.len() > MAX_DOMAINS {
            self.error(
                &p.key("domains"),
                format!(
                    "{} domains: at most {MAX_DOMAINS} in a set (each covers its subdomains)",
                    domains.len()
                ),
            );
            return None;
        }
        for (i, d) in domains.iter().enumerate() {
            if let Err(e) = check_domain(d) {
                self.error(&p.key("domains").index(i), e);
            }
        }
        if domains.is_empty() && raw.members.is_none() {
            self.error(p, "give `members`, `domains` or both");
        }
        let timeout = match (domains.is_empty(), raw.timeout) {
            (true, Some(_)) => {
                self.error(
                    &p.key("timeout"),
                    "a timeout ages out what a resolver adds: it needs `domains`",
                );
                None
            }
            (true, None) => None,
            (false, t) => {
                let t = t.map_or(std::time::Duration::from_secs(3600), |s| s.0);
                if t < std::time::Duration::from_secs(1) {
                    self.error(&p.key("timeout"), "must be at least 1s");
                }
                Some(t)
            }
        };
        Some(DestinationSet {
            name,
            networks: nets(raw.members),
            domains,
            timeout,
        })
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
        let mut rules = 0usize;
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
            rules = rules.saturating_add(self.policy_rules(&matcher, &raw.name, &p, rules));
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

    /// How many rules the policy expands to; an error names it when that is too many, for
    /// itself or with the policies before it (`before` rules).
    fn policy_rules(&mut self, m: &Match, name: &str, p: &FieldPath, before: usize) -> usize {
        let n = m.rule_count();
        if n > MAX_RULES_PER_POLICY {
            self.error(
                &p.key("match"),
                format!(
                    "policy `{name}` expands to {n} rules (sources × destinations × port groups); the limit is {MAX_RULES_PER_POLICY}: list more than {SET_THRESHOLD} sources or destinations (they then match through one set), or split the policy"
                ),
            );
        } else if before <= MAX_POLICY_RULES && before + n > MAX_POLICY_RULES {
            self.error(
                &p.key("match"),
                format!(
                    "with policy `{name}` the policies expand to more than {MAX_POLICY_RULES} rules, which every new connection may walk: use sets for long lists"
                ),
            );
        }
        n
    }

    /// Networks that become ipset members: no `0.0.0.0/0` (hash:net cannot hold it), and no
    /// more than ipset's default maximum.
    fn set_members(&mut self, networks: &[ipnet::IpNet], p: &FieldPath, what: &str) {
        if let Some(i) = networks.iter().position(|n| n.prefix_len() == 0) {
            self.error(
                &p.index(i),
                format!("{} cannot be {what} (it would match every address): leave the list out to match everything", networks[i]),
            );
        }
        if networks.len() > MAX_SET_MEMBERS {
            self.error(
                p,
                format!(
                    "{} networks: a set holds at most {MAX_SET_MEMBERS}",
                    networks.len()
                ),
            );
        }
    }

    pub(super) fn matcher(&mut self, raw: RawMatch, p: &FieldPath, sets: &HashSet<&str>) -> Match {
        let m = Match {
            never: false,
            sources: nets(raw.source),
            destinations: nets(raw.destination),
            protocol: raw.protocol.unwrap_or_default(),
            source_ports: raw.source_ports.map(|s| s.0).unwrap_or_default(),
            destination_ports: raw.destination_ports.map(|s| s.0).unwrap_or_default(),
            destination_set: raw.destination_set,
        };
        for (list, key) in [(&m.sources, "source"), (&m.destinations, "destination")] {
            self.set_members(list, &p.key(key), &format!("a policy's {key}"));
        }
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

pub(super) fn nets(list: Option<OneOrMany<Net>>) -> Vec<ipnet::IpNet> {
    list.map(|l| l.0.into_iter().map(|n| n.0).collect())
        .unwrap_or_default()
}
