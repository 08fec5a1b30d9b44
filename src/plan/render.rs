//! The plan for a person (`multiwan plan`).

use std::fmt::Write;

use super::{Balance, Family, Plan};

/// Every family's sections (IPv6 after IPv4, each heading saying so), then every set.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    for fp in plan.families() {
        family(fp, &mut out);
    }
    let _ = writeln!(out, "\n== ipsets (ipset restore) ==");
    out.push_str(&plan.ipset_restore());
    out
}

fn family(plan: &Plan, out: &mut String) {
    let (tag, tool, ip) = match plan.family {
        Family::Ipv4 => ("", "iptables", "ip"),
        Family::Ipv6 => (" (IPv6)", "ip6tables", "ip -6"),
    };
    if plan.family == Family::Ipv6 {
        let _ = writeln!(out);
    }
    uplinks(plan, tag, out);
    balance(plan, tag, out);
    policies(plan, tag, out);
    let _ = writeln!(out, "\n== {tool} ({tool}-restore --noflush) ==");
    out.push_str(&plan.iptables_restore());
    let _ = writeln!(
        out,
        "\n== {tool} jumps from built-in chains (added once, never duplicated) =="
    );
    for j in &plan.jumps {
        let _ = writeln!(out, "-t {} -A {} {}", j.table, j.from, j.spec());
    }
    let _ = writeln!(out, "\n== {ip} rules ==");
    for r in &plan.ip_rules {
        let _ = writeln!(out, "{r}");
    }
    let _ = writeln!(out, "\n== routes{tag} ==");
    for r in &plan.routes {
        let _ = writeln!(out, "{r}");
    }
}

fn uplinks(plan: &Plan, tag: &str, out: &mut String) {
    let _ = writeln!(out, "== uplinks{tag} ==");
    let _ = writeln!(
        out,
        "{:<15} {:<15} {:>3} {:>7} {:>6} {:>4} {:<9} {:>6} {:>7}  address / gateway",
        "uplink", "interface", "id", "mark", "table", "tier", "state", "weight", "share"
    );
    for u in &plan.uplinks {
        let _ = writeln!(
            out,
            "{:<15} {:<15} {:>3} {:>7} {:>6} {:>4} {:<9} {:>6} {:>6.1}%  {} / {}",
            u.name,
            u.interface,
            u.id,
            format!("{:#x}", u.mark),
            u.table,
            u.tier,
            u.health.to_string(),
            trim_float(u.effective_weight),
            u.share * 100.0,
            u.address,
            u.gateway
        );
    }
}

fn balance(plan: &Plan, tag: &str, out: &mut String) {
    let _ = writeln!(out, "\n== balance{tag} ==");
    match &plan.balance {
        Balance::Weighted { tier, members } => {
            let shares: Vec<String> = members
                .iter()
                .map(|m| format!("{} {:.1}%", m.uplink, m.share * 100.0))
                .collect();
            let note = if plan.all_down {
                " (every uplink is down: when_all_down is balance_all, so all are treated as up)"
            } else {
                ""
            };
            let _ = writeln!(out, "tier {tier}: {}{note}", shares.join(", "));
        }
        Balance::Unreachable => {
            let _ = writeln!(
                out,
                "every uplink is down: new connections get ICMP unreachable"
            );
        }
    }
}

fn policies(plan: &Plan, tag: &str, out: &mut String) {
    if plan.policies.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n== policies{tag} (first match wins) ==");
    for p in &plan.policies {
        let _ = writeln!(out, "{:<15} {}", p.name, p.decision);
    }
}

/// `70` rather than `70.0`, `17.5` as is.
pub fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}
