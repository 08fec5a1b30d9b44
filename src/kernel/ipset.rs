//! Keeps multiwan's ipsets (`multiwan_*`, type hash:net) filled. An update fills a
//! temporary set and swaps it in (the text is the plan's, [`crate::plan::sets`]), so the
//! live set is never half-filled.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::exec::{self, ToolError};
use crate::plan::{IpSet, Resolved, SET_PREFIX, swap_script};

#[derive(Debug, thiserror::Error)]
pub enum IpsetError {
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Members of each set of ours, from `ipset save` output.
pub fn parse_save(save: &str) -> HashMap<String, BTreeSet<Ipv4Net>> {
    let mut out: HashMap<String, BTreeSet<Ipv4Net>> = HashMap::new();
    for line in save.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("create"), Some(name), _) if name.starts_with(SET_PREFIX) => {
                out.entry(name.to_string()).or_default();
            }
            (Some("add"), Some(name), Some(member)) if name.starts_with(SET_PREFIX) => {
                // ipset prints single addresses without /32.
                let net = member
                    .parse::<Ipv4Net>()
                    .or_else(|_| member.parse::<Ipv4Addr>().map(Ipv4Net::from));
                if let Ok(n) = net {
                    out.entry(name.to_string()).or_default().insert(n);
                }
            }
            _ => {}
        }
    }
    out
}

/// The sets that are missing or whose content differs from `current`. Sets whose content
/// is not known (planning offline) count only when missing.
pub fn changed<'a>(
    sets: &'a [IpSet],
    current: &HashMap<String, BTreeSet<Ipv4Net>>,
) -> Vec<&'a IpSet> {
    sets.iter()
        .filter(|set| match (current.get(&set.name), &set.networks) {
            (None, _) => true,
            (Some(have), Resolved::Known(nets)) => *have != nets.iter().copied().collect(),
            (Some(_), Resolved::Unknown(_)) => false,
        })
        .collect()
}

/// Names of the sets of ours that exist now.
pub async fn ours() -> Result<Vec<String>, IpsetError> {
    let names = exec::run_ok("ipset", &["list", "-n"], None).await?;
    Ok(names
        .lines()
        .filter(|n| n.starts_with(SET_PREFIX))
        .map(str::to_string)
        .collect())
}

/// Brings the sets up to date; returns the names of the sets it created or refilled.
pub async fn update(sets: &[IpSet]) -> Result<Vec<String>, IpsetError> {
    let current = parse_save(&exec::run_ok("ipset", &["save"], None).await?);
    let todo = changed(sets, &current);
    if !todo.is_empty() {
        exec::run_ok("ipset", &["restore"], Some(&swap_script(&todo))).await?;
    }
    Ok(todo.iter().map(|s| s.name.clone()).collect())
}

/// Destroys sets of ours that are not in `keep` (after the rules using them are gone).
pub async fn destroy_except(keep: &[IpSet]) -> Result<Vec<String>, IpsetError> {
    let stale: Vec<String> = ours()
        .await?
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
mod tests {
    use super::*;

    #[test]
    fn update_swaps_a_filled_temporary_set() {
        let sets = vec![
            IpSet {
                name: "multiwan_connected".into(),
                family: crate::plan::Family::Ipv4,
                networks: Resolved::Unknown("connected".into()),
            },
            IpSet {
                name: "multiwan_s".into(),
                family: crate::plan::Family::Ipv4,
                networks: Resolved::Known(vec!["10.1.0.0/16".parse().unwrap()]),
            },
        ];
        let mut current = HashMap::new();
        assert_eq!(
            swap_script(&changed(&sets, &current)),
            "create multiwan_connected hash:net family inet -exist\n\
             create multiwan_s hash:net family inet -exist\n\
             create multiwan_s.new hash:net family inet -exist\n\
             flush multiwan_s.new\n\
             add multiwan_s.new 10.1.0.0/16 -exist\n\
             swap multiwan_s.new multiwan_s\n\
             destroy multiwan_s.new\n"
        );
        // Same content already there: nothing to do.
        current.insert("multiwan_connected".to_string(), BTreeSet::new());
        current.insert(
            "multiwan_s".to_string(),
            BTreeSet::from(["10.1.0.0/16".parse().unwrap()]),
        );
        assert!(changed(&sets, &current).is_empty());
        // Different content: only that set is refilled.
        current.insert("multiwan_s".to_string(), BTreeSet::new());
        assert_eq!(changed(&sets, &current).len(), 1);
    }

    #[test]
    fn parses_save_output() {
        let save = "create multiwan_s hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n\
                    add multiwan_s 10.1.0.0/16\nadd multiwan_s 10.2.0.1\ncreate other hash:ip\nadd other 1.1.1.1\n";
        let sets = parse_save(save);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets["multiwan_s"].len(), 2);
        assert!(sets["multiwan_s"].contains(&"10.2.0.1/32".parse().unwrap()));
    }
}
