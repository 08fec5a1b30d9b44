//! The netfilter adapter: installs the plan's chains with one `iptables-restore --noflush`
//! per address family, so the kernel never sees half a rule set; reads them back to verify;
//! reads our rules' packet counters on the way; removes exactly what is ours. Building the
//! restore input is pure ([`script`]).

pub mod backend;
pub mod forward;
pub mod script;
pub mod session;

pub use backend::Tools;
pub use script::{Changes, Counters, TableChange};

use super::exec::{self, ToolError};
use crate::plan::{Family, Plan};

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

/// What a full apply did, and the counters it read on the way.
#[derive(Debug, Default)]
pub struct Installed {
    pub changes: Changes,
    /// Our rules' packet counters as they were before the apply.
    pub counters: Counters,
    /// Each family's tables as they were read before the apply.
    pub saved: Vec<(Family, String)>,
}

/// Every table of a family, with counters.
pub async fn save(family: Family) -> Result<String, NetfilterError> {
    save_with(&backend::current(), family).await
}

async fn save_with(tools: &Tools, family: Family) -> Result<String, NetfilterError> {
    Ok(exec::run_ok(tools.save(family), &["-c"], None).await?)
}

/// Makes the kernel's tables match the plan: only chains that differ are sent, in one
/// transaction per family, then read back and verified. A config without IPv6 leaves
/// ip6tables alone, except for removing chains of ours an earlier config put there: that
/// check costs an `ip6tables-save`, so it is skipped while `v6_clean` says it was done
/// (the caller keeps the flag; it is cleared whenever a plan with IPv6 is applied).
pub async fn apply(plan: &Plan, v6_clean: &mut bool) -> Result<Installed, NetfilterError> {
    let current = read(plan).await?;
    apply_read(plan, current, v6_clean).await
}

/// Each of the plan's families' tables as they are now (with counters): what
/// [`apply_read`] starts from. Only reads, so a caller may run it beside other work.
pub async fn read(plan: &Plan) -> Result<Vec<(Family, String)>, NetfilterError> {
    let mut out = Vec::new();
    for fp in plan.families() {
        out.push((fp.family, save(fp.family).await?));
    }
    Ok(out)
}

/// [`apply`] from tables already read by [`read`].
pub async fn apply_read(
    plan: &Plan,
    read: Vec<(Family, String)>,
    v6_clean: &mut bool,
) -> Result<Installed, NetfilterError> {
    let mut out = Installed::default();
    for (fp, (family, current)) in plan.families().into_iter().zip(read) {
        debug_assert_eq!(fp.family, family);
        out.counters
            .extend(script::counters(&current, family, TABLES));
        out.saved.push((family, current.clone()));
        let s = script::apply_plan_script(fp, &current);
        let text = s.text(family);
        if !text.is_empty() {
            if let Err(e) = restore(family, &text).await {
                roll_back(family, &current).await;
                return Err(e);
            }
            script::verify(fp, &save(family).await?)?;
        }
        out.changes.tables.extend(s.changes().tables);
    }
    if plan.v6.is_some() {
        *v6_clean = false;
    } else if !*v6_clean {
        out.changes
            .tables
            .extend(remove_family(Family::Ipv6).await?.tables);
        *v6_clean = true;
    }
    Ok(out)
}

/// What the filter table in `save` would drop of the plan's traffic.
pub fn firewall_warnings(plan: &Plan, lans: &[String], save: &str) -> Vec<String> {
    let uplinks: Vec<(String, String)> = plan
        .uplinks
        .iter()
        .map(|u| (u.name.clone(), u.interface.clone()))
        .collect();
    forward::warnings(save, plan.family.iptables(), lans, &uplinks)
}

/// Removes our chains from a family the plan no longer has (IPv6 taken out of the
/// config); reads the tables only when the tool exists.
async fn remove_family(family: Family) -> Result<Changes, NetfilterError> {
    match save(family).await {
        Ok(current) if current.contains(crate::plan::CHAIN_PREFIX) => cleanup(family).await,
        _ => Ok(Changes::default()),
    }
}

/// Each table of a restore commits on its own: when a later one is refused, put the earlier
/// ones back as they were (`before`), so a failed apply changes nothing.
async fn roll_back(family: Family, before: &str) {
    let back = match save(family).await {
        Ok(now) => script::rollback_script(family, before, &now).text(family),
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "cannot read the tables to undo a failed apply");
            return;
        }
    };
    if !back.is_empty()
        && let Err(e) = restore(family, &back).await
    {
        tracing::error!(error = %crate::error_chain(&e), "undoing a failed apply failed too");
    }
}

/// Fast path for a health change: replaces only the chains that differ from the plan
/// installed before, in one transaction, without reading the tables first (the jumps and
/// the other chains are unchanged; the reconcile verifies them). Falls back to a full
/// apply when the chains themselves changed.
pub async fn apply_delta(previous: &Plan, plan: &Plan) -> Result<Changes, NetfilterError> {
    let mut scripts = Vec::new();
    for fp in plan.families() {
        let before = previous.of(fp.family);
        let Some(s) = before.and_then(|b| script::delta_script(b, fp)) else {
            return Ok(apply(plan, &mut false).await?.changes);
        };
        scripts.push((fp.family, s));
    }
    if previous.v6.is_some() != plan.v6.is_some() {
        return Ok(apply(plan, &mut false).await?.changes);
    }
    let mut changes = Changes::default();
    for (family, s) in scripts {
        let text = s.text(family);
        if !text.is_empty() && !session::commit(family, &text).await {
            restore(family, &text).await?;
        }
        changes.tables.extend(s.changes().tables);
    }
    Ok(changes)
}

/// Removes every chain and jump of ours from every table of `family`.
pub async fn cleanup(family: Family) -> Result<Changes, NetfilterError> {
    cleanup_in(&backend::current(), family).await
}

/// [`cleanup`] in a given backend (both, on uninstall; the one left behind on a switch).
pub async fn cleanup_in(tools: &Tools, family: Family) -> Result<Changes, NetfilterError> {
    let current = save_with(tools, family).await?;
    let s = script::cleanup_plan_script(family, &current);
    let text = s.text(family);
    if !text.is_empty() {
        restore_with(tools, family, &text).await?;
    }
    Ok(s.changes())
}

/// True when the filter table's FORWARD policy is DROP (None when it cannot be read, e.g.
/// without root). multiwan does not open the firewall; `check` says so then.
pub async fn forward_policy_drops(family: Family) -> Option<bool> {
    let tools = backend::current();
    let out = exec::run(tools.iptables(family), &["-w", "2", "-S", "FORWARD"], None)
        .await
        .ok()?;
    out.success
        .then(|| out.stdout.lines().any(|l| l.trim() == "-P FORWARD DROP"))
}

async fn restore(family: Family, script: &str) -> Result<(), NetfilterError> {
    restore_with(&backend::current(), family, script).await
}

async fn restore_with(tools: &Tools, family: Family, script: &str) -> Result<(), NetfilterError> {
    let ran = exec::run(
        tools.restore(family),
        &["-w", "5", "--noflush"],
        Some(script),
    )
    .await?;
    if ran.success {
        return Ok(());
    }
    Err(script::restore_error(script, &ran.stderr))
}
