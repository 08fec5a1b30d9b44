//! The pure half of the netfilter adapter: `iptables-save` text in, `iptables-restore`
//! input out, plus what that input changes, as data. Our chains are declared (which
//! flushes them) and refilled in one transaction per table; the jumps from built-in chains
//! are added once, duplicates removed; stale chains of ours deleted in the same transaction.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::{CHAIN_PREFIX, Chain, Family, Jump, Plan, TablePlan};

/// What `iptables-save` shows for one table.
#[derive(Debug, Default)]
pub struct Saved {
    pub chains: Vec<String>,
    /// Each chain's policy as declared (`ACCEPT`, `DROP`; `-` for a chain of a tool).
    pub policies: BTreeMap<String, String>,
    /// Rules as `-A CHAIN ...`, without counters.
    pub rules: Vec<String>,
    /// Packet counts of `rules` (0 when the save had no counters).
    pub packets: Vec<u64>,
}

/// What one transaction changed in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    pub family: Family,
    pub table: String,
    /// Chains of ours (re)filled, with their number of rules.
    pub chains: Vec<(String, usize)>,
    pub jumps_added: usize,
    pub jumps_removed: usize,
    /// Chains of ours deleted.
    pub removed: Vec<String>,
}

impl TableChange {
    fn new(family: Family, table: &str) -> Self {
        Self {
            family,
            table: table.to_string(),
            chains: Vec::new(),
            jumps_added: 0,
            jumps_removed: 0,
            removed: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.chains.is_empty()
            && self.jumps_added == 0
            && self.jumps_removed == 0
            && self.removed.is_empty()
    }
}

/// Everything one apply (or cleanup) changed; empty when the kernel already matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub tables: Vec<TableChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The chains (re)filled, `table/CHAIN`.
    /// `mangle/MULTIWAN_BALANCE`, and `ip6 mangle/MULTIWAN_BALANCE` for IPv6.
    pub fn chains(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|t| {
                let tag = match t.family {
                    Family::Ipv4 => "",
                    Family::Ipv6 => "ip6 ",
                };
                t.chains
                    .iter()
                    .map(move |(c, _)| format!("{tag}{}/{c}", t.table))
            })
            .collect()
    }

    /// How many chains of ours were deleted.
    pub fn removed(&self) -> usize {
        self.tables.iter().map(|t| t.removed.len()).sum()
    }

    fn push(&mut self, change: TableChange) {
        if !change.is_empty() {
            self.tables.push(change);
        }
    }
}

/// A restore input, one block per table, each with what it changes.
#[derive(Debug, Default)]
pub struct Script {
    blocks: Vec<(TableChange, String)>,
}

impl Script {
    fn add(&mut self, text: String, change: TableChange) {
        if !change.is_empty() {
            self.blocks.push((change, text));
        }
    }

    /// The restore input for one family's tables (empty when nothing changes there).
    pub fn text(&self, family: Family) -> String {
        self.blocks
            .iter()
            .filter(|(c, _)| c.family == family)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    pub fn changes(&self) -> Changes {
        let mut out = Changes::default();
        for (c, _) in &self.blocks {
            out.push(c.clone());
        }
        out
    }
}

/// Packet counters of our chains' rules, by chain, in rule order: how many packets each
/// rule matched since the chain was last filled.
pub type Counters = BTreeMap<(crate::plan::Family, String), Vec<u64>>;

/// Splits `iptables-save` output (with or without `-c`) by table.
pub fn parse_save(save: &str, table: &str) -> Saved {
    let mut out = Saved::default();
    let mut inside = false;
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            inside = name == table;
        } else if !inside {
            continue;
        } else if let Some(rest) = line.strip_prefix(':') {
            let mut words = rest.split_whitespace();
            let chain = words.next().unwrap_or("").to_string();
            out.policies
                .insert(chain.clone(), words.next().unwrap_or("-").to_string());
            out.chains.push(chain);
        } else {
            let (packets, rule) = split_counters(line);
            if rule.starts_with("-A ") {
                out.rules.push(rule.to_string());
                out.packets.push(packets);
            }
        }
    }
    out
}

/// `[12:3456] -A ...` is (12, `-A ...`); a line without counters has 0 packets.
fn split_counters(line: &str) -> (u64, &str) {
    let Some(rest) = line.strip_prefix('[') else {
        return (0, line);
    };
    let Some((counts, rule)) = rest.split_once("] ") else {
        return (0, line);
    };
    let packets = counts
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    (packets, rule)
}

/// The packet counters of every chain of ours in `tables`.
pub fn counters(save: &str, family: crate::plan::Family, tables: &[&str]) -> Counters {
    let mut out = Counters::new();
    for table in tables {
        let saved = parse_save(save, table);
        for (rule, packets) in saved.rules.iter().zip(&saved.packets) {
            let chain = rule.split_whitespace().nth(1).unwrap_or("");
            if chain.starts_with(CHAIN_PREFIX) {
                out.entry((family, chain.to_string()))
                    .or_default()
                    .push(*packets);
            }
        }
    }
    out
}

fn jump_line(j: &Jump) -> String {
    format!("-A {} {}", j.from, j.spec())
}

/// Rules in built-in chains that jump into a chain of ours (our jumps, however many).
fn our_jumps(saved: &Saved) -> Vec<String> {
    saved
        .rules
        .iter()
        .filter(|r| {
            let chain = r.split_whitespace().nth(1).unwrap_or("");
            !chain.starts_with(CHAIN_PREFIX)
                && r.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "-j" && w[1].starts_with(CHAIN_PREFIX))
        })
        .cloned()
        .collect()
}

/// The rules the kernel has in `chain`, in order.
fn rules_of<'a>(chain: &str, saved: &'a Saved) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    saved
        .rules
        .iter()
        .filter_map(|r| r.strip_prefix(&prefix))
        .collect()
}

/// True when the kernel's chain holds exactly the planned rules (our rendering is
/// `iptables-save`'s own text).
fn chain_matches(chain: &Chain, family: crate::plan::Family, saved: &Saved) -> bool {
    if !saved.chains.contains(&chain.name) {
        return false;
    }
    let have = rules_of(&chain.name, saved);
    have.len() == chain.rules.len()
        && have
            .iter()
            .zip(&chain.rules)
            .all(|(h, r)| *h == crate::plan::rules::rule_spec(r, family))
}

/// Restore input that replaces the given chains of `table` (without COMMIT), and the
/// change it makes.
fn chains_text(table: &TablePlan, chains: &[&Chain], change: &mut TableChange) -> String {
    let mut out = table.restore_text_of(chains);
    out.truncate(out.len() - "COMMIT\n".len());
    change.chains = chains
        .iter()
        .map(|c| (c.name.clone(), c.rules.len()))
        .collect();
    out
}

/// The restore input that makes `table` match the plan, given what is installed now; None
/// when it already does. Chains that already match are left alone (re-sending a 1000-rule
/// chain costs iptables-nft tens of milliseconds).
pub fn apply_script(
    table: &TablePlan,
    jumps: &[Jump],
    saved: &Saved,
) -> Option<(String, TableChange)> {
    let mut change = TableChange::new(table.family, &table.name);
    let stale_chains: Vec<&Chain> = table
        .chains
        .iter()
        .filter(|c| !chain_matches(c, table.family, saved))
        .collect();
    let mut out = chains_text(table, &stale_chains, &mut change);
    let planned: Vec<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
    let stale: Vec<&String> = saved
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX) && !planned.contains(&c.as_str()))
        .collect();
    let wanted: Vec<String> = jumps
        .iter()
        .filter(|j| j.table == table.name)
        .map(jump_line)
        .collect();
    // Keep the first copy of each wanted jump; delete other copies and unwanted jumps.
    let mut kept: Vec<&String> = Vec::new();
    let existing = our_jumps(saved);
    for line in &existing {
        if wanted.contains(line) && !kept.contains(&line) {
            kept.push(line);
        } else {
            let _ = writeln!(out, "-D{}", &line[2..]);
            change.jumps_removed += 1;
        }
    }
    for j in jumps.iter().filter(|j| j.table == table.name) {
        if !kept.contains(&&jump_line(j)) {
            let _ = writeln!(out, "{}", insert_jump(j));
            change.jumps_added += 1;
        }
    }
    for chain in stale {
        let _ = writeln!(out, "-F {chain}\n-X {chain}");
        change.removed.push(chain.clone());
    }
    if change.is_empty() {
        return None;
    }
    out.push_str("COMMIT\n");
    Some((out, change))
}

/// The restore input that makes every table of the plan match, given `save`.
pub fn apply_plan_script(plan: &Plan, save: &str) -> Script {
    let mut script = Script::default();
    for table in plan.tables() {
        if let Some((text, change)) =
            apply_script(table, &plan.jumps, &parse_save(save, &table.name))
        {
            script.add(text, change);
        }
    }
    script
}

/// Mangle and filter jumps go first (our marks must be decided before other rules look at
/// them, and a refusal must come before the admin's ACCEPT rules; our chains only act on
/// our own marks). In nat, the admin's own rules go first.
fn insert_jump(j: &Jump) -> String {
    if j.table == "nat" {
        format!("-A {} {}", j.from, j.spec())
    } else {
        format!("-I {} 1 {}", j.from, j.spec())
    }
}

/// The restore input that removes everything of ours from a table, or None if there is
/// nothing of ours there.
pub fn cleanup_script(family: Family, table: &str, saved: &Saved) -> Option<(String, TableChange)> {
    let jumps = our_jumps(saved);
    let chains: Vec<&String> = saved
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX))
        .collect();
    if jumps.is_empty() && chains.is_empty() {
        return None;
    }
    let mut change = TableChange::new(family, table);
    let mut out = format!("*{table}\n");
    for j in jumps {
        let _ = writeln!(out, "-D{}", &j[2..]);
        change.jumps_removed += 1;
    }
    for c in &chains {
        let _ = writeln!(out, "-F {c}");
    }
    for c in &chains {
        let _ = writeln!(out, "-X {c}");
        change.removed.push(c.to_string());
    }
    out.push_str("COMMIT\n");
    Some((out, change))
}

/// The restore input that removes everything of ours from every table in `save`.
pub fn cleanup_plan_script(family: Family, save: &str) -> Script {
    let mut script = Script::default();
    for table in super::TABLES {
        if let Some((text, change)) = cleanup_script(family, table, &parse_save(save, table)) {
            script.add(text, change);
        }
    }
    script
}

/// The restore input that puts our part of every table back as `before` had it, given
/// what is there `now`: iptables-restore commits each table on its own, so when one table
/// of a transaction is refused the ones before it are already in and must be undone.
/// Other tools' rules are not touched.
pub fn rollback_script(family: Family, before: &str, now: &str) -> Script {
    let mut script = Script::default();
    for table in super::TABLES {
        let (pre, cur) = (parse_save(before, table), parse_save(now, table));
        if ours(&pre) == ours(&cur) {
            continue;
        }
        let mut change = TableChange::new(family, table);
        let mut out = format!("*{table}\n");
        let declared: Vec<&String> = pre
            .chains
            .iter()
            .filter(|c| c.starts_with(CHAIN_PREFIX))
            .collect();
        for c in &declared {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in &declared {
            let rules = rules_of(c, &pre);
            for r in &rules {
                let _ = writeln!(out, "-A {c} {r}");
            }
            change.chains.push((c.to_string(), rules.len()));
        }
        let (jumps_pre, jumps_now) = (our_jumps(&pre), our_jumps(&cur));
        for j in jumps_now.iter().filter(|j| !jumps_pre.contains(j)) {
            let _ = writeln!(out, "-D{}", &j[2..]);
            change.jumps_removed += 1;
        }
        for j in jumps_pre.iter().filter(|j| !jumps_now.contains(j)) {
            // Where insert_jump puts it: first, but in nat.
            let mut words = j.splitn(3, ' ').skip(1);
            let (chain, spec) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if *table == "nat" {
                let _ = writeln!(out, "{j}");
            } else {
                let _ = writeln!(out, "-I {chain} 1 {spec}");
            }
            change.jumps_added += 1;
        }
        let added: Vec<&String> = cur
            .chains
            .iter()
            .filter(|c| c.starts_with(CHAIN_PREFIX) && !pre.chains.contains(c))
            .collect();
        for c in &added {
            let _ = writeln!(out, "-F {c}");
        }
        for c in &added {
            let _ = writeln!(out, "-X {c}");
            change.removed.push(c.to_string());
        }
        out.push_str("COMMIT\n");
        script.add(out, change);
    }
    script
}

/// Our chains and every rule of them and jumps into them, in order: what a rollback
/// compares.
fn ours(saved: &Saved) -> (Vec<&String>, Vec<&String>) {
    let chains = saved
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX))
        .collect();
    let rules = saved
        .rules
        .iter()
        .filter(|r| r.contains(CHAIN_PREFIX))
        .collect();
    (chains, rules)
}

/// Checks the installed tables against the plan: every chain has exactly the planned number
/// of rules and every jump is there once. Cheap enough to run as a drift check.
pub fn verify(plan: &Plan, save: &str) -> Result<(), super::NetfilterError> {
    verify_tables(&plan.tables(), &plan.jumps, save)
}

fn verify_tables(
    tables: &[&TablePlan],
    jumps: &[Jump],
    save: &str,
) -> Result<(), super::NetfilterError> {
    use super::NetfilterError;
    for table in tables {
        let saved = parse_save(save, &table.name);
        for chain in &table.chains {
            let found = rules_of(&chain.name, &saved).len();
            let present = saved.chains.contains(&chain.name);
            if !present || found != chain.rules.len() {
                return Err(NetfilterError::Verify {
                    chain: chain.name.clone(),
                    expected: chain.rules.len(),
                    found,
                });
            }
        }
        for j in jumps.iter().filter(|j| j.table == table.name) {
            let found = saved.rules.iter().filter(|r| **r == jump_line(j)).count();
            if found != 1 {
                return Err(NetfilterError::VerifyJump {
                    table: j.table.clone(),
                    from: j.from.clone(),
                    to: j.to.clone(),
                    found,
                });
            }
        }
    }
    Ok(())
}

/// The restore input that changes only the chains whose rules differ from `previous`, or
/// None when the set of chains changed (then a full apply is needed). Empty when nothing
/// changed.
pub fn delta_script(previous: &Plan, plan: &Plan) -> Option<Script> {
    let mut script = Script::default();
    for (old, new) in previous.tables().into_iter().zip(plan.tables()) {
        let names = |t: &TablePlan| t.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(old) != names(new) || old.family != new.family {
            return None;
        }
        let changed: Vec<&Chain> = new
            .chains
            .iter()
            .zip(&old.chains)
            .filter(|(n, o)| n != o)
            .map(|(n, _)| n)
            .collect();
        if !changed.is_empty() {
            let mut change = TableChange::new(new.family, &new.name);
            let mut text = chains_text(new, &changed, &mut change);
            text.push_str("COMMIT\n");
            script.add(text, change);
        }
    }
    Some(script)
}

/// Names the table and the script line iptables-restore complained about.
pub fn restore_error(script: &str, stderr: &str) -> super::NetfilterError {
    // "line 2 failed" (legacy) or "Error occurred at line: 10" (nf_tables).
    let number = stderr
        .split("line")
        .nth(1)
        .map(|rest| rest.trim_start_matches([':', ' ']))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let line = number
        .and_then(|n| script.lines().nth(n.saturating_sub(1)))
        .map(str::to_string);
    let table = number
        .and_then(|n| script.lines().take(n).filter(|l| l.starts_with('*')).last())
        .map_or("?", |l| &l[1..])
        .to_string();
    super::NetfilterError::Restore {
        table,
        stderr: stderr.to_string(),
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Chain, Rule, Target};

    fn table() -> TablePlan {
        TablePlan {
            name: "mangle".into(),
            family: Family::Ipv4,
            chains: vec![Chain {
                name: "MULTIWAN_PREROUTING".into(),
                rules: vec![Rule::new(vec![], Target::Return, "")],
            }],
        }
    }

    fn jumps() -> Vec<Jump> {
        vec![Jump {
            table: "mangle".into(),
            from: "PREROUTING".into(),
            to: "MULTIWAN_PREROUTING".into(),
        }]
    }

    const JUMP: &str = "-A PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING";

    #[test]
    fn first_apply_inserts_the_jump() {
        let saved = parse_save(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 1\nCOMMIT\n",
            "mangle",
        );
        let (s, change) = apply_script(&table(), &jumps(), &saved).unwrap();
        assert_eq!(
            s,
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\n\
             -I PREROUTING 1 -m comment --comment multiwan -j MULTIWAN_PREROUTING\nCOMMIT\n"
        );
        assert_eq!(change.chains, vec![("MULTIWAN_PREROUTING".to_string(), 1)]);
        assert_eq!((change.jumps_added, change.jumps_removed), (1, 0));
    }

    #[test]
    fn second_apply_keeps_one_jump_and_drops_duplicates_and_stale_chains() {
        let save = format!(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:MULTIWAN_OLD - [0:0]\n{JUMP}\n{JUMP}\nCOMMIT\n"
        );
        let (s, change) = apply_script(&table(), &jumps(), &parse_save(&save, "mangle")).unwrap();
        assert_eq!(
            s,
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\n\
             -D PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING\n\
             -F MULTIWAN_OLD\n-X MULTIWAN_OLD\nCOMMIT\n"
        );
        assert_eq!(change.removed, vec!["MULTIWAN_OLD".to_string()]);
        assert_eq!(change.jumps_removed, 1);
    }

    #[test]
    fn apply_skips_chains_that_already_match() {
        let save = format!(
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
        assert!(apply_script(&table(), &jumps(), &parse_save(&save, "mangle")).is_none());
        let other = format!(
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\n-A MULTIWAN_PREROUTING -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(
            apply_script(&table(), &jumps(), &parse_save(&other, "mangle"))
                .unwrap()
                .0,
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
    }

    #[test]
    fn cleanup_removes_only_ours() {
        let save = format!(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:USER - [0:0]\n\
             -A PREROUTING -j USER\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
        let (s, _) = cleanup_script(Family::Ipv4, "mangle", &parse_save(&save, "mangle")).unwrap();
        assert_eq!(
            s,
            "*mangle\n-D PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING\n\
             -F MULTIWAN_PREROUTING\n-X MULTIWAN_PREROUTING\nCOMMIT\n"
        );
        assert!(cleanup_script(Family::Ipv4, "nat", &parse_save(&save, "nat")).is_none());
    }

    #[test]
    fn delta_touches_only_changed_chains() {
        let config = crate::config::parse(
            "lan_interfaces: [lan0]\nuplinks:\n  - {name: a, interface: wan1, weight: 7}\n  - {name: b, interface: wan2}\n",
            "t.yaml",
        )
        .unwrap();
        let up = Plan::build(&config, &crate::plan::Observed::default());
        let mut observed = crate::plan::Observed::default();
        observed
            .health
            .insert("a".into(), crate::health::Health::Down);
        let down = Plan::build(&config, &observed);
        let script = delta_script(&up, &down).unwrap();
        assert_eq!(script.changes().chains(), vec!["mangle/MULTIWAN_BALANCE"]);
        assert_eq!(
            script.text(Family::Ipv4),
            "*mangle\n:MULTIWAN_BALANCE - [0:0]\n-A MULTIWAN_BALANCE -m mark --mark 0x0/0xff00 \
             -m comment --comment \"multiwan balance b\" -j MARK --set-xmark 0x200/0xff00\nCOMMIT\n"
        );
        assert!(delta_script(&up, &up).unwrap().changes().is_empty());
    }

    #[test]
    fn restore_errors_name_the_line() {
        let e = restore_error(
            "*mangle\n-A X -j Y\nCOMMIT\n",
            "iptables-restore: line 2 failed",
        );
        let text = e.to_string();
        assert!(text.contains("mangle table"), "{text}");
        assert!(text.contains("at: -A X -j Y"), "{text}");
        let nft = restore_error(
            "*mangle\n-A X -j Y\nCOMMIT\n*nat\n-A Z -j DNAT --to-destination not\nCOMMIT\n",
            "iptables-restore v1.8.9 (nf_tables): Bad IP address \"not\"\nError occurred at line: 5\n",
        );
        let text = nft.to_string();
        assert!(text.contains("nat table"), "{text}");
        assert!(text.contains("at: -A Z -j DNAT"), "{text}");
    }

    #[test]
    fn verify_detects_a_flushed_chain_and_a_lost_jump() {
        let t = table();
        let good = format!(
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
        assert!(verify_tables(&[&t], &jumps(), &good).is_ok());
        let flushed = format!("*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\nCOMMIT\n");
        assert!(matches!(
            verify_tables(&[&t], &jumps(), &flushed),
            Err(super::super::NetfilterError::Verify { found: 0, .. })
        ));
        let no_jump =
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n";
        assert!(matches!(
            verify_tables(&[&t], &jumps(), no_jump),
            Err(super::super::NetfilterError::VerifyJump { found: 0, .. })
        ));
    }

    #[test]
    fn counters_are_read_per_chain_in_rule_order() {
        let save = "*mangle\n:MULTIWAN_BALANCE - [0:0]\n[7:700] -A PREROUTING -j MULTIWAN_BALANCE\n\
                    [12:1200] -A MULTIWAN_BALANCE -m statistic -j MARK --set-xmark 0x100/0xff00\n\
                    [3:300] -A MULTIWAN_BALANCE -j MARK --set-xmark 0x200/0xff00\nCOMMIT\n";
        let c = counters(save, crate::plan::Family::Ipv4, &["mangle"]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            c[&(crate::plan::Family::Ipv4, "MULTIWAN_BALANCE".to_string())],
            vec![12, 3]
        );
        let saved = parse_save(save, "mangle");
        assert_eq!(saved.rules[0], "-A PREROUTING -j MULTIWAN_BALANCE");
    }

    #[test]
    fn a_rollback_puts_back_our_chains_and_jumps_and_removes_new_ones() {
        let before = format!(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:USER - [0:0]\n\
             -A PREROUTING -j USER\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n\
             *nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
        );
        let now = "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:MULTIWAN_NEW - [0:0]\n:USER - [0:0]\n\
             -A PREROUTING -j USER\n-A PREROUTING -m comment --comment multiwan -j MULTIWAN_NEW\n\
             -A MULTIWAN_PREROUTING -j ACCEPT\n-A MULTIWAN_NEW -j RETURN\nCOMMIT\n\
             *nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
        let s = rollback_script(Family::Ipv4, &before, now);
        assert_eq!(
            s.text(Family::Ipv4),
            format!(
                "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\n\
                 -D PREROUTING -m comment --comment multiwan -j MULTIWAN_NEW\n\
                 -I PREROUTING 1 -m comment --comment multiwan -j MULTIWAN_PREROUTING\n\
                 -F MULTIWAN_NEW\n-X MULTIWAN_NEW\nCOMMIT\n"
            )
        );
        assert!(
            rollback_script(Family::Ipv4, &before, &before)
                .changes()
                .is_empty()
        );
    }
}
