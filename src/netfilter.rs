//! Installs the plan's iptables chains with `iptables-restore --noflush`: our chains are
//! declared (which flushes them) and refilled in one transaction per table, so the kernel
//! never sees half a rule set. The jumps from built-in chains are added once, duplicates
//! removed, and stale chains of ours deleted in the same transaction.
//!
//! Script building is pure and works on `iptables-save` text; only `apply`, `cleanup` and
//! `verify` run tools.

use std::fmt::Write;

use crate::exec::{self, ToolError};
use crate::plan::{CHAIN_PREFIX, Jump, Plan, TablePlan};

/// Tables multiwan may have chains in.
pub const TABLES: &[&str] = &["mangle", "nat", "filter"];

#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("iptables-restore refused the {table} table: {stderr}{}", .line.as_ref().map(|l| format!("\n  at: {l}")).unwrap_or_default())]
    Restore {
        table: String,
        stderr: String,
        line: Option<String>,
    },
    #[error("after apply, chain {chain} has {found} rules, expected {expected}")]
    Verify {
        chain: String,
        expected: usize,
        found: usize,
    },
    #[error("after apply, the jump {table}/{from} -> {to} is present {found} times, expected once")]
    VerifyJump {
        table: String,
        from: String,
        to: String,
        found: usize,
    },
}

/// What `iptables-save` shows for one table.
#[derive(Debug, Default)]
pub struct Saved {
    pub chains: Vec<String>,
    pub rules: Vec<String>,
}

/// Splits `iptables-save` output by table.
pub fn parse_save(save: &str, table: &str) -> Saved {
    let mut out = Saved::default();
    let mut inside = false;
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            inside = name == table;
        } else if !inside {
            continue;
        } else if let Some(rest) = line.strip_prefix(':') {
            out.chains
                .push(rest.split_whitespace().next().unwrap_or("").to_string());
        } else if line.starts_with("-A ") {
            out.rules.push(line.to_string());
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

/// True when the kernel's chain holds exactly the planned rules (our rendering is
/// `iptables-save`'s own text).
fn chain_matches(chain: &crate::plan::Chain, saved: &Saved) -> bool {
    if !saved.chains.contains(&chain.name) {
        return false;
    }
    let prefix = format!("-A {} ", chain.name);
    let have: Vec<&str> = saved
        .rules
        .iter()
        .filter(|r| r.starts_with(&prefix))
        .map(String::as_str)
        .collect();
    have.len() == chain.rules.len()
        && have
            .iter()
            .zip(&chain.rules)
            .all(|(h, r)| h[prefix.len()..] == crate::plan::rules::rule_spec(r))
}

/// The restore input that makes `table` match the plan, given what is installed now; empty
/// when it already does. Chains that already match are left alone (re-sending a 1000-rule
/// chain costs iptables-nft tens of milliseconds).
pub fn apply_script(table: &TablePlan, jumps: &[Jump], saved: &Saved) -> String {
    let stale_chains: Vec<&crate::plan::Chain> = table
        .chains
        .iter()
        .filter(|c| !chain_matches(c, saved))
        .collect();
    let mut out = table.restore_text_of(&stale_chains);
    out.truncate(out.len() - "COMMIT\n".len());
    let header_only = table.name.len() + 2;
    let planned: Vec<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
    let stale: Vec<&String> = saved
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX) && !planned.contains(&c.as_str()))
        .collect();
    let existing = our_jumps(saved);
    let wanted: Vec<String> = jumps
        .iter()
        .filter(|j| j.table == table.name)
        .map(jump_line)
        .collect();
    // Keep the first copy of each wanted jump; delete other copies and unwanted jumps.
    let mut kept: Vec<&String> = Vec::new();
    for line in &existing {
        if wanted.contains(line) && !kept.contains(&line) {
            kept.push(line);
        } else {
            let _ = writeln!(out, "-D{}", &line[2..]);
        }
    }
    for j in jumps.iter().filter(|j| j.table == table.name) {
        if !kept.contains(&&jump_line(j)) {
            let _ = writeln!(out, "{}", insert_jump(j));
        }
    }
    for chain in stale {
        let _ = writeln!(out, "-F {chain}\n-X {chain}");
    }
    if out.len() == header_only {
        return String::new();
    }
    out.push_str("COMMIT\n");
    out
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
pub fn cleanup_script(table: &str, saved: &Saved) -> Option<String> {
    let jumps = our_jumps(saved);
    let chains: Vec<&String> = saved
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX))
        .collect();
    if jumps.is_empty() && chains.is_empty() {
        return None;
    }
    let mut out = format!("*{table}\n");
    for j in jumps {
        let _ = writeln!(out, "-D{}", &j[2..]);
    }
    for c in &chains {
        let _ = writeln!(out, "-F {c}");
    }
    for c in &chains {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Checks the installed tables against the plan: every chain has exactly the planned number
/// of rules and every jump is there once. Cheap enough to run as a drift check.
pub fn verify(plan: &Plan, save: &str) -> Result<(), NetfilterError> {
    verify_tables(&plan.tables(), &plan.jumps, save)
}

fn verify_tables(tables: &[&TablePlan], jumps: &[Jump], save: &str) -> Result<(), NetfilterError> {
    for table in tables {
        let saved = parse_save(save, &table.name);
        for chain in &table.chains {
            let prefix = format!("-A {} ", chain.name);
            let found = saved
                .rules
                .iter()
                .filter(|r| r.starts_with(&prefix))
                .count();
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

/// True when the filter table's FORWARD policy is DROP (None when it cannot be read, e.g.
/// without root). multiwan does not open the firewall; `check` says so then.
pub fn forward_policy_drops() -> Option<bool> {
    let out = exec::run("iptables", &["-w", "2", "-S", "FORWARD"], None).ok()?;
    out.success
        .then(|| out.stdout.lines().any(|l| l.trim() == "-P FORWARD DROP"))
}

pub fn save() -> Result<String, NetfilterError> {
    Ok(exec::run_ok("iptables-save", &[], None)?)
}

/// Makes the kernel's mangle and nat tables match the plan; returns the script it ran.
pub fn apply(plan: &Plan) -> Result<String, NetfilterError> {
    let current = save()?;
    let mut script = String::new();
    for table in plan.tables() {
        script.push_str(&apply_script(
            table,
            &plan.jumps,
            &parse_save(&current, &table.name),
        ));
    }
    if !script.is_empty() {
        restore(&script)?;
        verify(plan, &save()?)?;
    }
    Ok(script)
}

/// The restore input that changes only the chains whose rules differ from `previous`, or
/// None when the set of chains changed (then a full [`apply`] is needed). Empty when
/// nothing changed.
pub fn delta_script(previous: &Plan, plan: &Plan) -> Option<String> {
    let mut script = String::new();
    for (old, new) in previous.tables().into_iter().zip(plan.tables()) {
        let names = |t: &TablePlan| t.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(old) != names(new) {
            return None;
        }
        let changed: Vec<_> = new
            .chains
            .iter()
            .zip(&old.chains)
            .filter(|(n, o)| n != o)
            .map(|(n, _)| n)
            .collect();
        if !changed.is_empty() {
            script.push_str(&new.restore_text_of(&changed));
        }
    }
    Some(script)
}

/// Fast path for a health change: replaces only the chains that differ from the plan
/// installed before, in one transaction, without reading the tables first (the jumps and
/// the other chains are unchanged; the reconcile loop verifies them). Falls back to a full
/// apply when the chains themselves changed. Returns the script it ran.
pub fn apply_delta(previous: &Plan, plan: &Plan) -> Result<String, NetfilterError> {
    match delta_script(previous, plan) {
        Some(script) if script.is_empty() => Ok(script),
        Some(script) => restore(&script).map(|()| script),
        None => apply(plan),
    }
}

/// Removes every chain and jump of ours from every table; returns what it ran.
pub fn cleanup() -> Result<String, NetfilterError> {
    let current = save()?;
    let script: String = TABLES
        .iter()
        .filter_map(|t| cleanup_script(t, &parse_save(&current, t)))
        .collect();
    if !script.is_empty() {
        restore(&script)?;
    }
    Ok(script)
}

fn restore(script: &str) -> Result<(), NetfilterError> {
    let ran = exec::run("iptables-restore", &["-w", "5", "--noflush"], Some(script))?;
    if ran.success {
        return Ok(());
    }
    Err(restore_error(script, &ran.stderr))
}

/// Names the table and the script line iptables-restore complained about.
fn restore_error(script: &str, stderr: &str) -> NetfilterError {
    let number = stderr
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    let line = number
        .and_then(|n| script.lines().nth(n.saturating_sub(1)))
        .map(str::to_string);
    let table = number
        .and_then(|n| script.lines().take(n).filter(|l| l.starts_with('*')).last())
        .map_or("?", |l| &l[1..])
        .to_string();
    NetfilterError::Restore {
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
        let s = apply_script(&table(), &jumps(), &saved);
        assert_eq!(
            s,
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\n\
             -I PREROUTING 1 -m comment --comment multiwan -j MULTIWAN_PREROUTING\nCOMMIT\n"
        );
    }

    #[test]
    fn second_apply_keeps_one_jump_and_drops_duplicates_and_stale_chains() {
        let save = format!(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:MULTIWAN_OLD - [0:0]\n{JUMP}\n{JUMP}\nCOMMIT\n"
        );
        let s = apply_script(&table(), &jumps(), &parse_save(&save, "mangle"));
        assert_eq!(
            s,
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\n\
             -D PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING\n\
             -F MULTIWAN_OLD\n-X MULTIWAN_OLD\nCOMMIT\n"
        );
    }

    #[test]
    fn apply_skips_chains_that_already_match() {
        let save = format!(
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
        assert_eq!(
            apply_script(&table(), &jumps(), &parse_save(&save, "mangle")),
            ""
        );
        let other = format!(
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n{JUMP}\n-A MULTIWAN_PREROUTING -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(
            apply_script(&table(), &jumps(), &parse_save(&other, "mangle")),
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
    }

    #[test]
    fn cleanup_removes_only_ours() {
        let save = format!(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:MULTIWAN_PREROUTING - [0:0]\n:USER - [0:0]\n\
             -A PREROUTING -j USER\n{JUMP}\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n"
        );
        let s = cleanup_script("mangle", &parse_save(&save, "mangle")).unwrap();
        assert_eq!(
            s,
            "*mangle\n-D PREROUTING -m comment --comment multiwan -j MULTIWAN_PREROUTING\n\
             -F MULTIWAN_PREROUTING\n-X MULTIWAN_PREROUTING\nCOMMIT\n"
        );
        assert!(cleanup_script("nat", &parse_save(&save, "nat")).is_none());
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
            .insert("a".into(), crate::plan::Health::Down);
        let down = Plan::build(&config, &observed);
        let script = delta_script(&up, &down).unwrap();
        assert_eq!(
            script,
            "*mangle\n:MULTIWAN_BALANCE - [0:0]\n-A MULTIWAN_BALANCE -m mark --mark 0x0/0xff00 \
             -m comment --comment \"multiwan balance b\" -j MARK --set-xmark 0x200/0xff00\nCOMMIT\n"
        );
        assert_eq!(delta_script(&up, &up).unwrap(), "");
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
            Err(NetfilterError::Verify { found: 0, .. })
        ));
        let no_jump =
            "*mangle\n:MULTIWAN_PREROUTING - [0:0]\n-A MULTIWAN_PREROUTING -j RETURN\nCOMMIT\n";
        assert!(matches!(
            verify_tables(&[&t], &jumps(), no_jump),
            Err(NetfilterError::VerifyJump { found: 0, .. })
        ));
    }
}
