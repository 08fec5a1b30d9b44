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

use crate::plan::{Family, IpSet, Resolved, SET_PREFIX, SET_PREFIX6};

/// Whether a set is ours (either family's prefix).
pub fn is_ours(name: &str) -> bool {
    name.starts_with(SET_PREFIX) || name.starts_with(SET_PREFIX6)
}

#[derive(Debug, thiserror::Error)]
pub enum IpsetError {
    /// The kernel refused a step (the message names the step and the set).
    #[error("{0}")]
    Kernel(std::io::Error),
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

/// One step of bringing the sets to the plan. The steps go to the kernel over ipset's
/// netlink protocol ([`netlink::run`]); their text form is `ipset restore` input.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Destroy(String),
    /// A `hash:net` set (nothing happens when it exists with the same options).
    Create {
        name: String,
        family: Family,
        hashsize: Option<usize>,
        timeout: Option<u32>,
    },
    /// Members, each with the seconds it has left (None: permanent, or the set's default).
    Add {
        name: String,
        family: Family,
        members: Vec<(IpNet, Option<u32>)>,
    },
    /// Exchanges two sets of one type and family (the first is the temporary one).
    Swap(String, String),
}

impl Op {
    fn create(name: &str, set: &IpSet) -> Op {
        Op::Create {
            name: name.to_string(),
            family: set.family,
            hashsize: set.hashsize(),
            timeout: set.learned_timeout,
        }
    }

    /// Its `ipset restore` lines.
    pub fn text(&self) -> String {
        match self {
            Op::Destroy(name) => format!("destroy {name}\n"),
            Op::Create {
                name,
                family,
                hashsize,
                timeout,
            } => format!(
                "{}\n",
                crate::plan::create_line(name, *family, *hashsize, *timeout)
            ),
            Op::Add { name, members, .. } => {
                let mut out = String::new();
                for (net, left) in members {
                    let _ = match left {
                        Some(t) => writeln!(out, "add {name} {net} timeout {t} -exist"),
                        None => writeln!(out, "add {name} {net} -exist"),
                    };
                }
                out
            }
            Op::Swap(a, b) => format!("swap {a} {b}\n"),
        }
    }

    /// Whether it creates or swaps in `set`.
    fn names(&self, set: &str) -> bool {
        matches!(self, Op::Create { name, .. } | Op::Swap(_, name) if name == set)
    }
}

/// Every step as `ipset restore` input.
pub fn text(ops: &[Op]) -> String {
    ops.iter().map(Op::text).collect()
}

/// `ipset restore` input that brings `sets` from `current` to the plan; empty when nothing
/// differs. Sets whose content is not known (planning offline) are only created.
pub fn script(sets: &[IpSet], current: &HashMap<String, Present>) -> String {
    text(&plan_ops(&sets.iter().collect::<Vec<_>>(), current))
}

/// The steps that bring `sets` from `current` to the plan: temporary sets left over go,
/// missing sets are created, stale ones refilled through a temporary set and swapped in;
/// the members of the sets created come last.
pub fn plan_ops(sets: &[&IpSet], current: &HashMap<String, Present>) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut fills = Vec::new();
    for temp in [TEMP, TEMP6] {
        if current.contains_key(temp) {
            // Left over by an update that died half-way, perhaps of another type.
            ops.push(Op::Destroy(temp.to_string()));
        }
    }
    for set in sets {
        let stale = match (current.get(&set.name), &set.networks) {
            (None, _) => {
                ops.push(Op::create(&set.name, set));
                if let Resolved::Known(nets) = &set.networks
                    && !nets.is_empty()
                {
                    fills.push(add(&set.name, set, nets.iter().map(|n| (*n, None))));
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
            refill(&mut ops, set, current.get(&set.name));
        }
    }
    ops.extend(fills);
    ops
}

fn add(name: &str, set: &IpSet, members: impl Iterator<Item = (IpNet, Option<u32>)>) -> Op {
    Op::Add {
        name: name.to_string(),
        family: set.family,
        members: members.collect(),
    }
}

/// Fills the temporary set (with the plan's options) and swaps it in. Into a learned set,
/// the learned members move along with the time they have left (at most the new timeout).
fn refill(ops: &mut Vec<Op>, set: &IpSet, have: Option<&Present>) {
    let temp = temp_of(set);
    ops.push(Op::create(temp, set));
    let mut members: Vec<(IpNet, Option<u32>)> = Vec::new();
    if let Resolved::Known(nets) = &set.networks {
        members.extend(nets.iter().map(|n| (*n, None)));
    }
    if let (Some(max), Some(have)) = (set.learned_timeout, have) {
        members.extend(
            have.learned
                .iter()
                .map(|(n, left)| (*n, Some((*left).min(max)))),
        );
    }
    if !members.is_empty() {
        ops.push(add(temp, set, members.into_iter()));
    }
    ops.push(Op::Swap(temp.to_string(), set.name.clone()));
    ops.push(Op::Destroy(temp.to_string()));
}

/// The temporary set of the set's family (a swap needs both of one family).
fn temp_of(set: &IpSet) -> &'static str {
    match set.family {
        Family::Ipv4 => TEMP,
        Family::Ipv6 => TEMP6,
    }
}

/// Each planned set's member counts once `script` has run.
pub fn counts(sets: &[&IpSet], current: &HashMap<String, Present>) -> BTreeMap<String, Count> {
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
pub async fn update(sets: &[&IpSet]) -> Result<Updated, IpsetError> {
    let current = read().await?;
    let ops = plan_ops(sets, &current);
    let changed = sets
        .iter()
        .filter(|s| ops.iter().any(|op| op.names(&s.name)))
        .map(|s| s.name.clone())
        .collect();
    run(ops).await?;
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

/// Sends the steps to the kernel, in order, off the event loop.
async fn run(ops: Vec<Op>) -> Result<(), IpsetError> {
    if ops.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || netlink::run(&ops))
        .await
        .map_err(|e| IpsetError::Kernel(std::io::Error::other(e.to_string())))?
        .map_err(IpsetError::Kernel)
}

/// Destroys sets of ours that are not in `keep` (after the rules using them are gone).
pub async fn destroy_except(keep: &[&IpSet]) -> Result<Vec<String>, IpsetError> {
    destroy_stale(read().await?.into_keys().collect(), keep).await
}

/// Destroys those of `present` (sets of ours) that are not in `keep`.
pub async fn destroy_stale(
    present: Vec<String>,
    keep: &[&IpSet],
) -> Result<Vec<String>, IpsetError> {
    let stale: Vec<String> = present
        .into_iter()
        .filter(|n| !keep.iter().any(|s| &s.name == n))
        .collect();
    run(stale.iter().cloned().map(Op::Destroy).collect()).await?;
    Ok(stale)
}

#[cfg(test)]
mod tests;
