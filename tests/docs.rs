//! The configuration reference documents every key the parser accepts, and no other.

#[test]
fn every_config_key_is_documented_and_no_stale_key_is() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .collect();
    let keys = multiwan::config::schema_keys();
    assert!(keys.len() > 40, "the schema lists every key: {keys:?}");
    for k in &keys {
        assert!(
            documented.contains(&k.as_str()),
            "docs/configuration.md has no `### `{k}`` heading"
        );
    }
    for d in &documented {
        assert!(
            keys.iter().any(|k| k == d),
            "docs/configuration.md documents `{d}`, which the parser does not know"
        );
    }
}
