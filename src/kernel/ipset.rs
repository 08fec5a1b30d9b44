//! Keeps multiwan's ipsets (`multiwan_*`, type hash:net) filled. A set is refilled by
//! filling a temporary set and swapping it in, so the live set is never half-filled. A set
//! a resolver fills (`<set>.dns`) is only created: its members are never touched, and they
//! move into the new set, with the time they have left, when its timeout changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use ipnet::IpNet;
use serde::Serialize;

mod dump;
mod netlink;

use super::exec::{self, ToolError};
use crate::plan::{IpSet, Resolved, SET_PREFIX, SET_PREFIX6};

/// Whether a set is ours (either family's prefix).
pub fn is_ours(name: &str) -> bool {
    name.starts_with(SET_PREFIX) || name.starts_with(SET_PREFIX6)
}

#[derive(Debug, thiserror::Error)]
pub enum IpsetError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{0}")]
    Fill(std::io::Error),
    #[error("reading the sets: {0}")]
    Read(std::io::Error),
}

/// The temporary set an update fills and swaps in, one set after the other. Config names
/// start with a letter or digit, so it cannot clash, and it fits beside the longest name.
pub const TEMP: &str = "multiwan_.new";
/// The same for IPv6 sets.
pub const TEMP6: &str = "multiwan6_.new";

/// One set of ours as the kernel holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Present {
    /// The set's `timeout` option (None: created without one).
    pub timeout: Option<u32>,
    /// Members that do not age out.
    pub permanent: BTreeSet<IpNet>,
    /// Members that age out, with the seconds they have left.
    pub learned: BTreeMap<IpNet, u32>,
}

/// How many members a set has, for `status` and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Count {
    /// A set of multiwan's own members.
    Members(usize),
    /// A resolver's set: the addresses that have not aged out yet.
    Learned(usize),
    #[default]
    Unknown,
}

/// What brings the sets to the plan: `ipset restore` input, then the members of the sets
/// it creates, which are sent in netlink batches (see [`netlink`]).
#[derive(Debug, Default)]
pub struct Script<'a> {
    pub text: String,
    pub fills: Vec<(&'a IpSet, &'a [IpNet])>,
}

impl Script<'_> {
    /// All of it as `ipset restore` input: the fills as `add` lines after the rest.
    pub fn full_text(&self) -> String {
        let mut out = self.text.clone();
        for (set, nets) in &self.fills {
            for n in *nets {
                let _ = writeln!(out, "add {} {n} -exist", set.name);
            }
        }
        out
    }

    /// Whether it creates or swaps `set`.
    fn names(&self, set: &str) -> bool {
        self.fills.iter().any(|(s, _)| s.name == set) || names(&self.text, set)
    }
}

/// `ipset restore` input that brings `sets` from `current` to the plan; empty when nothing
/// differs. Sets whose content is not known (planning offline) are only created.
pub fn script(sets: &[IpSet], current: &HashMap<String, Present>) -> String {
    plan_script(sets, current).full_text()
}

/// [`script`], with the members of the sets it creates apart.
pub fn plan_script<'a>(sets: &'a [IpSet], current: &HashMap<String, Present>) -> Script<'a> {
    let mut out = Script::default();
    for temp in [TEMP, TEMP6] {
        if current.contains_key(temp) {
            // Left over by an update that died half-way, perhaps of another type.
            let _ = writeln!(out.text, "destroy {temp}");
        }
    }
    for set in sets {
        let stale = match (current.get(&set.name), &set.networks) {
            (None, _) => {
                let _ = writeln!(out.text, "{}", set.create_line(&set.name));
                if let Resolved::Known(nets) = &set.networks
                    && !nets.is_empty()
                {
                    out.fills.push((set, nets));
                }
                continue;
            }
            (Some(_), Resolved::Unknown(_)) => false,
            (Some(have), _) if have.timeout != set.learned_timeout => true,
            // A resolver's members are its own.
            (Some(_), _) if set.learned_timeout.is_some() => false,
            (Some(have), Resolved::Known(nets)) => {
                have.permanent != nets.iter().copied().collect() || !have.learned.is_empty()
            }
        };
        if stale {
            refill(&mut out.text, set, current.get(&set.name));
        }
    }
    out
}

/// Fills the temporary set (with the plan's options) and swaps it in. Into a learned set,
/// the learned members move along with the time they have left (at most the new timeout).
fn refill(out: &mut String, set: &IpSet, have: Option<&Present>) {
    let temp = temp_of(set);
    let _ = writeln!(out, "{}", set.create_line(temp));
    if let Resolved::Known(nets) = &set.networks {
        for n in nets {
            let _ = writeln!(out, "add {temp} {n} -exist");
        }
    }
    if let (Some(max), Some(have)) = (set.learned_timeout, have) {
        for (n, left) in &have.learned {
            let _ = writeln!(out, "add {temp} {n} timeout {} -exist", (*left).min(max));
        }
    }
    let _ = writeln!(out, "swap {temp} {}", set.name);
    let _ = writeln!(out, "destroy {temp}");
}

/// The temporary set of the set's family (a swap needs both of one family).
fn temp_of(set: &IpSet) -> &'static str {
    match set.family {
        crate::plan::Family::Ipv4 => TEMP,
        crate::plan::Family::Ipv6 => TEMP6,
    }
}

/// Each planned set's member counts once `script` has run.
pub fn counts(sets: &[IpSet], current: &HashMap<String, Present>) -> BTreeMap<String, Count> {
    sets.iter()
        .map(|set| {
            let have = current.get(&set.name);
            let count = match (&set.networks, set.learned_timeout) {
                (_, Some(_)) => Count::Learned(have.map_or(0, |h| h.learned.len())),
                (Resolved::Known(nets), None) => {
                    Count::Members(nets.iter().collect::<BTreeSet<_>>().len())
                }
                (Resolved::Unknown(_), None) => {
                    have.map_or(Count::Unknown, |h| Count::Members(h.permanent.len()))
                }
            };
            (set.name.clone(), count)
        })
        .collect()
}

/// Names of the sets of ours that exist now.
pub async fn ours() -> Result<Vec<String>, IpsetError> {
    let names = exec::run_ok("ipset", &["list", "-n"], None).await?;
    Ok(names
        .lines()
        .filter(|n| is_ours(n))
        .map(str::to_string)
        .collect())
}

/// What an update did.
#[derive(Debug, Default)]
pub struct Updated {
    /// Sets created, refilled or changed in place.
    pub changed: Vec<String>,
    pub counts: BTreeMap<String, Count>,
    /// The sets of ours that existed before the update (read on the way, so removing the
    /// stale ones needs no second look).
    pub present: Vec<String>,
}

/// Brings the sets up to date.
pub async fn update(sets: &[IpSet]) -> Result<Updated, IpsetError> {
    let current = read().await?;
    let script = plan_script(sets, &current);
    if !script.text.is_empty() {
        exec::run_ok("ipset", &["restore"], Some(&script.text)).await?;
    }
    fill(&script.fills).await?;
    let changed = sets
        .iter()
        .filter(|s| script.names(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let mut present: Vec<String> = current.keys().cloned().collect();
    present.sort();
    Ok(Updated {
        changed,
        counts: counts(sets, &current),
        present,
    })
}

/// Our sets as they are in the kernel, read over netlink off the event loop.
async fn read() -> Result<HashMap<String, Present>, IpsetError> {
    tokio::task::spawn_blocking(dump::save)
        .await
        .map_err(|e| IpsetError::Read(std::io::Error::other(e.to_string())))?
        .map_err(IpsetError::Read)
}

/// Adds the members of the sets just created, in netlink batches, off the event loop.
async fn fill(fills: &[(&IpSet, &[IpNet])]) -> Result<(), IpsetError> {
    if fills.is_empty() {
        return Ok(());
    }
    let work: Vec<(String, crate::plan::Family, Vec<IpNet>)> = fills
        .iter()
        .map(|(set, nets)| (set.name.clone(), set.family, nets.to_vec()))
        .collect();
    tokio::task::spawn_blocking(move || {
        work.iter()
            .try_for_each(|(name, family, nets)| netlink::add(name, *family, nets))
    })
    .await
    .map_err(|e| IpsetError::Fill(std::io::Error::other(e.to_string())))?
    .map_err(IpsetError::Fill)
}

/// Whether a line of `script` creates or swaps `set`.
fn names(script: &str, set: &str) -> bool {
    script.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        matches!(words.as_slice(), ["create", name, ..] | ["swap", _, name] if *name == set)
    })
}

/// Destroys sets of ours that are not in `keep` (after the rules using them are gone).
pub async fn destroy_except(keep: &[IpSet]) -> Result<Vec<String>, IpsetError> {
    destroy_stale(ours().await?, keep).await
}

/// Destroys those of `present` (sets of ours) that are not in `keep`.
pub async fn destroy_stale(
    present: Vec<String>,
    keep: &[IpSet],
) -> Result<Vec<String>, IpsetError> {
    let stale: Vec<String> = present
        .into_iter()
        .filter(|n| !keep.iter().any(|s| &s.name == n))
        .collect();
    if !stale.is_empty() {
        let script: String = stale.iter().map(|n| format!("destroy {n}\n")).collect();
        exec::run_ok("ipset", &["restore"], Some(&script)).await?;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests;
