//! Turns YAML text into a validated [`Config`], collecting every problem on the way. This
//! module holds the collector ([`Checker`]) and the top level; each section has its own
//! module (`uplinks`, `policies`, `settings`, `forwards`, `ha`).
//!
//! Each top-level key, and each item of the uplink and policy lists, is deserialized on its
//! own, so one broken uplink does not hide the errors of the next.

use std::collections::{BTreeMap, HashSet};

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::error::{ConfigError, Diagnostic};
use super::locate::Locator;
use super::model::*;
use super::path::FieldPath;
use super::raw::*;

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
    "lan_prefix6",
    "netfilter",
    "web",
];

/// Collects diagnostics while reading one file.
/// The largest config file multiwan reads (a 10 000-pin file is about 1 MiB).
pub const MAX_FILE_BYTES: usize = 4 << 20;

pub(super) struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    /// Built on the first error only: a valid file never pays for a second parse.
    locator: std::cell::OnceCell<Locator>,
    diags: Vec<Diagnostic>,
    /// The fields reported so far, so that `reported` costs a lookup, not a scan.
    fields: HashSet<String>,
}

impl<'a> Checker<'a> {
    pub fn new(text: &'a str, file: &'a str) -> Self {
        Self {
            // Editors on Windows start files with a byte order mark; YAML allows it.
            text: text.strip_prefix('\u{feff}').unwrap_or(text),
            file,
            locator: std::cell::OnceCell::new(),
            diags: Vec::new(),
            fields: HashSet::new(),
        }
    }

    pub fn run(mut self) -> Result<Config, ConfigError> {
        if !self.bounded() {
            return Err(self.into_error());
        }
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

    /// Refuses, before any parser runs, a file too large or nested too deeply for the
    /// parsers to be quick on.
    fn bounded(&mut self) -> bool {
        if self.text.len() > MAX_FILE_BYTES {
            let message = format!(
                "the file is {} bytes; a config file may have at most {} MiB",
                self.text.len(),
                MAX_FILE_BYTES >> 20
            );
            self.at(1, 1, "(document)", message);
            return false;
        }
        match super::depth::scan(self.text, super::depth::MAX_DEPTH) {
            Some(super::depth::Finding::TooDeep {
                line,
                column,
                depth,
            }) => {
                let message = format!(
                    "nested {depth} levels deep; no setting is deeper than 6 and the limit is {}",
                    super::depth::MAX_DEPTH
                );
                self.at(line, column, "(document)", message);
                false
            }
            Some(super::depth::Finding::Tag { line, column, tag }) => {
                let message =
                    format!("YAML tags like `{tag}` are not supported: write the plain value");
                self.at(line, column, "(document)", message);
                false
            }
            None => true,
        }
    }

    /// A problem at a known position.
    fn at(&mut self, line: usize, column: usize, field: &str, message: String) {
        self.fields.insert(field.to_string());
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            field: super::error::printable(field),
            message: super::error::printable(&message),
        });
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
        self.fields.contains(&path.to_string())
    }

    pub(super) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let pos = self
            .locator
            .get_or_init(|| Locator::new(self.text))
            .find(path);
        self.at(pos.line, pos.column, &path.to_string(), message.into());
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
                self.at(
                    line,
                    column,
                    "(document)",
                    format!("YAML syntax error: {message}"),
                );
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

    pub(super) fn optional<T: DeserializeOwned>(
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
        let lan_prefix6 = self.lan_prefix6(top, &uplinks);
        let netfilter: RawNetfilter = self.optional(top, "netfilter").unwrap_or_default();
        let web = self.web(top);
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
            lan_prefix6,
            backend: netfilter.backend.unwrap_or_default(),
            web,
        }
    }
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

/// `(did you mean `uplinks`?)` for a near miss, else the list of settings. Compares
/// characters, not bytes: a key may be any Unicode text.
fn suggestion(key: &str, known: &[&str]) -> String {
    let head: String = key.chars().take(4).collect();
    let close = known.iter().find(|k| {
        k.chars().count().abs_diff(key.chars().count()) <= 2
            && (k.starts_with(&head) || key.contains(*k))
    });
    match close {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => format!("; known settings: {}", known.join(", ")),
    }
}
