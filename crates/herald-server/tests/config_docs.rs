//! `docs/configuration.md` and `docs/herald.example.toml` against the code:
//! every field of `ServerConfig` and `NamespaceConfig` is documented with
//! its variable and its true default, nothing documented is gone, and the
//! example is complete and parses to the defaults. The field lists come from
//! serializing the defaults, so a field added to the structs fails here until
//! it is documented.

use herald_server::{BrokerConfig, NamespaceConfig, ServerConfig};
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../../docs/herald.example.toml");

/// The cells of the rows of the first table under `## {section}`, first
/// cell (the key, in backticks) unquoted.
fn table(section: &str) -> Vec<(String, Vec<String>)> {
    let heading = format!("\n## {section}\n");
    let start = DOC
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has no `## {section}`"))
        + heading.len();
    let body = &DOC[start..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            let cells: Vec<String> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let key = cells[0].trim_matches('`').to_owned();
            (key, cells)
        })
        .collect()
}

fn fields(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a table: {other}"),
    }
}

/// Checks a table's keys against `defaults`, each default cell (column
/// `col`) against the true default as parsed from `toml_for(key, literal)`.
fn check_table(
    section: &str,
    defaults: &serde_json::Map<String, Value>,
    col: usize,
    parse: impl Fn(&str, &str) -> Value,
) -> Vec<(String, Vec<String>)> {
    let rows = table(section);
    for key in defaults.keys() {
        assert!(
            rows.iter().any(|(k, _)| k == key),
            "`{key}` is a configuration field but has no row in docs/configuration.md, \
             ## {section}: add one (type, default, variable, meaning), and the key to \
             docs/herald.example.toml"
        );
    }
    for (key, cells) in &rows {
        let default = defaults.get(key).unwrap_or_else(|| {
            panic!("docs/configuration.md, ## {section}, documents `{key}`, which is not a field")
        });
        let cell = &cells[col];
        if cell == "unset" {
            assert!(
                default.is_null(),
                "`{key}` is documented unset, default {default}"
            );
        } else if let Some(literal) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            assert_eq!(
                &parse(key, literal),
                default,
                "`{key}`: documented default `{literal}` is not the default"
            );
        } else {
            assert!(
                default.is_object(),
                "`{key}`: default cell {cell:?} is not a value"
            );
        }
    }
    rows
}

#[test]
fn every_server_key_is_documented_with_its_default_and_variable() {
    let defaults = fields(serde_json::to_value(ServerConfig::default()).unwrap());
    let rows = check_table("Server keys", &defaults, 2, |key, literal| {
        let c = ServerConfig::from_toml(&format!("{key} = {literal}\n"))
            .unwrap_or_else(|e| panic!("`{key} = {literal}`: {e}"));
        fields(serde_json::to_value(c).unwrap())[key].clone()
    });
    for (key, cells) in rows {
        let expected = if defaults[&key].is_object() {
            String::new()
        } else {
            format!("`HERALD_{}`", key.to_ascii_uppercase())
        };
        assert_eq!(cells[3], expected, "`{key}`: the Variable column");
        // The variable really sets the key.
        if !expected.is_empty() {
            let name = format!("HERALD_{}", key.to_ascii_uppercase());
            let e = ServerConfig::default()
                .apply_env([(name.clone(), "\u{1}".into())])
                .err();
            assert!(
                !e.as_deref().unwrap_or("").starts_with("unknown variable"),
                "{name} is documented but unknown: {e:?}"
            );
        }
    }
}

#[test]
fn every_namespace_key_is_documented_with_its_default() {
    let defaults = fields(serde_json::to_value(NamespaceConfig::default()).unwrap());
    check_table("Namespaces", &defaults, 2, |key, literal| {
        let c = ServerConfig::from_toml(&format!("[namespaces.t]\n{key} = {literal}\n"))
            .unwrap_or_else(|e| panic!("`{key} = {literal}`: {e}"));
        fields(serde_json::to_value(&c.namespaces["t"]).unwrap())[key].clone()
    });
}

#[test]
fn every_broker_key_is_documented_with_its_default() {
    let defaults = fields(serde_json::to_value(BrokerConfig::default()).unwrap());
    check_table("Broker", &defaults, 2, |key, literal| {
        let c = ServerConfig::from_toml(&format!("[broker]\n{key} = {literal}\n"))
            .unwrap_or_else(|e| panic!("`{key} = {literal}`: {e}"));
        fields(serde_json::to_value(&c.broker).unwrap())[key].clone()
    });
}

#[test]
fn the_variables_that_are_not_settings_are_documented() {
    let rows = table("Environment variables");
    for name in ServerConfig::OTHER_VARIABLES {
        assert!(
            rows.iter().any(|(k, _)| k == name),
            "{name} is missing from docs/configuration.md, ## Environment variables"
        );
    }
    for (name, _) in &rows {
        assert!(
            ServerConfig::OTHER_VARIABLES.contains(&name.as_str()),
            "{name} is documented as passed over but herald serve refuses it"
        );
    }
}

#[test]
fn the_example_is_complete_and_holds_the_defaults() {
    let parsed = ServerConfig::from_toml(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::to_value(ServerConfig::default()).unwrap(),
        "docs/herald.example.toml does not hold the defaults"
    );
    let server = fields(serde_json::to_value(ServerConfig::default()).unwrap());
    let namespace = fields(serde_json::to_value(NamespaceConfig::default()).unwrap());
    let broker = fields(serde_json::to_value(BrokerConfig::default()).unwrap());
    for key in server.keys().chain(namespace.keys()).chain(broker.keys()) {
        let present = EXAMPLE.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{key} ="))
                || l.starts_with(&format!("[{key}."))
                || l == format!("[{key}]")
        });
        assert!(present, "`{key}` is missing from docs/herald.example.toml");
    }
}

#[test]
fn the_documents_example_is_the_example_file() {
    let start = DOC.find("\n## Example\n").expect("## Example");
    let block = &DOC[start..];
    let open = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = block[open..].find("```").expect("the block's end");
    assert_eq!(
        &block[open..open + len],
        EXAMPLE,
        "the example in docs/configuration.md differs from docs/herald.example.toml"
    );
}
