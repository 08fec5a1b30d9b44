//! The configuration file: its schema, and the checks that turn YAML into a [`Config`] that
//! the rest of multiwan can trust. Every problem is reported at once with its position.

mod depth;
mod error;
mod forwards;
mod ha;
mod locate;
mod model;
pub mod names;
mod path;
mod policies;
mod probes;
mod raw;
mod settings;
mod uplinks;
mod validate;
mod values;

pub use depth::MAX_DEPTH;
pub use error::{ConfigError, Diagnostic, printable};
pub use model::*;
pub use policies::{MAX_POLICY_RULES, MAX_RULES_PER_POLICY, MAX_SET_MEMBERS};
pub use validate::MAX_FILE_BYTES;
pub use values::{PortRange, Span};

/// Where `multiwan` looks for its config unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/multiwan/multiwan.yaml";

/// `table_base` and `rule_priority_base` unless the config says otherwise.
pub const DEFAULT_TABLE_BASE: u32 = 100;
pub const DEFAULT_RULE_PRIORITY_BASE: u32 = 10000;

/// Where the daemon's control socket is unless `control.socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/multiwan/multiwan.sock";

/// Validates config text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    validate::Checker::new(text, file).run()
}

/// Every key of the config file, as `section.key` paths (`uplinks[].probe.interval`), read
/// from the parser itself so that documentation can be checked against it.
pub fn schema_keys() -> Vec<String> {
    use raw::*;
    let mut keys: Vec<String> = validate::TOP_KEYS.iter().map(|k| k.to_string()).collect();
    let sections: [(&str, Vec<String>); 14] = [
        ("uplinks[]", fields::<RawUplink>()),
        ("uplinks[].probe", fields::<RawProbe>()),
        ("uplinks[].probe.degraded", fields::<RawDegraded>()),
        ("policies[]", fields::<RawPolicy>()),
        ("policies[].match", fields::<RawMatch>()),
        ("nat", fields::<RawNat>()),
        ("control", fields::<RawControl>()),
        ("netfilter", fields::<RawNetfilter>()),
        ("web", fields::<RawWeb>()),
        ("port_forwards[]", fields::<RawForward>()),
        (
            "port_forwards[].to[]",
            vec!["address".into(), "port".into(), "weight".into()],
        ),
        ("port_forwards[].health_check", fields::<RawHealthCheck>()),
        ("sets.NAME", fields::<RawSet>()),
        ("ha", fields::<RawHa>()),
    ];
    for (section, names) in sections {
        keys.extend(names.iter().map(|n| format!("{section}.{n}")));
    }
    keys
}

/// The fields serde expects for `T`, taken from its unknown-field error: every
/// backticked name after "expected".
fn fields<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let err = match serde_norway::from_str::<T>("__no_such_key__: 1") {
        Err(e) => e.to_string(),
        Ok(_) => return Vec::new(),
    };
    let list = err.split_once("expected").map_or("", |(_, rest)| rest);
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod schema_tests {
    #[test]
    fn schema_lists_nested_keys() {
        let keys = super::schema_keys();
        for k in [
            "lan_interfaces",
            "uplinks[].gateway",
            "uplinks[].probe.quorum",
            "uplinks[].probe.degraded.weight_factor",
            "policies[].match.destination_set",
            "control.group",
            "nat.masquerade",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
    }
}
