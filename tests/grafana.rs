//! The Grafana dashboard in packaging/ uses only metrics multiwan exports, with labels they
//! have: a renamed metric breaks this test, not an admin's dashboard.

use std::collections::BTreeSet;

/// Every metric with a sample: a family without one prints nothing.
fn exported() -> String {
    use multiwan::family::Family;
    use multiwan::health::{Health, Stats};
    let m = multiwan::daemon::metrics::Metrics::new();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/home-dual-wan.yaml");
    let config = multiwan::files::load_config(std::path::Path::new(path)).unwrap();
    let plan = multiwan::plan::Plan::build(&config, &Default::default());
    let stats = Stats {
        state: Health::Up,
        link_up: true,
        loss: 0.0,
        rtt: Some(std::time::Duration::from_millis(5)),
        jitter: Some(std::time::Duration::from_millis(1)),
        sent: 10,
        lost: 1,
        late: 0,
        targets: Vec::new(),
    };
    for u in &plan.uplinks {
        m.update_uplink(Family::Ipv4, u, Some(&stats));
    }
    m.transition(&multiwan::health::Transition {
        uplink: "fibre".into(),
        family: Family::Ipv4,
        from: Health::Up,
        to: Health::Down,
        cause: multiwan::health::Cause::ProbesFailed {
            rounds: 3,
            answered: 0,
            targets: 2,
            quorum: 1,
        },
        loss: 1.0,
        rtt: None,
    });
    m.set_marked(
        Family::Ipv4,
        &std::collections::BTreeMap::from([("fibre".to_string(), 3)]),
    );
    m.ha_role(multiwan::ha::Role::Master);
    m.applied(std::time::Duration::from_millis(20));
    m.backend("web", "10.0.0.11", true);
    m.reloaded(true);
    use multiwan::kernel::ipset::Count;
    m.set_members(
        &Default::default(),
        &std::collections::BTreeMap::from([("multiwan_tv".to_string(), Count::Members(2))]),
    );
    m.encode()
}

/// `multiwan_…` names in a PromQL expression.
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("multiwan_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_metric_the_dashboard_uses_is_exported() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/multiwan-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let text = exported();
    // Each family's sample name as the exposition declares it (`# TYPE name kind`).
    let declared: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(declared.len() >= 15, "{declared:?}");
    let mut used = BTreeSet::new();
    let mut exprs = vec![dash["templating"]["list"][1]["definition"].clone()];
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].clone());
        }
    }
    for e in exprs {
        for n in names(e.as_str().unwrap()) {
            assert!(
                declared.contains(n.as_str()),
                "the dashboard uses {n}, which multiwan does not export: {declared:?}"
            );
            used.insert(n);
        }
    }
    // And it shows every uplink metric there is.
    for d in declared
        .iter()
        .filter(|d| d.starts_with("multiwan_uplink_"))
    {
        assert!(used.contains(*d), "{d} is not on the dashboard");
    }
}
