//! `HERALD_*` variables, derived from the file's keys rather than listed by
//! hand: a key added to [`ServerConfig`] gets its variable, its parser and
//! its error messages with no code here.
//!
//! The configuration is serialized to JSON; a variable names a top-level key
//! whose current value is a scalar or a list, and that value's JSON type
//! says how to read the variable's text. The result goes back through the
//! same `Deserialize` as the file, so a variable and the file key accept
//! exactly the same values.

use serde_json::{Map, Value};

use super::ServerConfig;

const PREFIX: &str = "HERALD_";

pub(super) fn apply(
    config: &mut ServerConfig,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), String> {
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with(PREFIX) && !ServerConfig::OTHER_VARIABLES.contains(&name.as_str())
        })
        .collect();
    if vars.is_empty() {
        return Ok(());
    }
    // Sorted, so that of several bad variables the same one is reported
    // whatever order the environment lists them in.
    vars.sort();
    let Value::Object(mut fields) = to_json(config)? else {
        return Err("the configuration does not serialize to a table".into());
    };
    for (name, text) in &vars {
        let key = setting(&fields, name)?;
        let value = read(name, &key, &fields[&key], text)?;
        fields.insert(key, value);
    }
    *config = serde_json::from_value(Value::Object(fields))
        .map_err(|e| format!("HERALD_* variables: {e}"))?;
    Ok(())
}

fn to_json(config: &ServerConfig) -> Result<Value, String> {
    serde_json::to_value(config).map_err(|e| format!("the configuration does not serialize: {e}"))
}

/// The key `name` sets, or an error that names the variable (and the
/// nearest variable that does exist, for a misspelling).
fn setting(fields: &Map<String, Value>, name: &str) -> Result<String, String> {
    let key = name[PREFIX.len()..].to_ascii_lowercase();
    let upper = key.to_ascii_uppercase();
    match fields.get(&key) {
        // Variables are upper case; `HERALD_listen` is not `HERALD_LISTEN`.
        Some(v) if !v.is_object() && name[PREFIX.len()..] == upper => Ok(key),
        Some(_) if name[PREFIX.len()..] == upper => Err(format!(
            "{name}: `{key}` is set in the configuration file (--config), not by a variable"
        )),
        _ => {
            let known = fields
                .iter()
                .filter(|(_, v)| !v.is_object())
                .map(|(k, _)| format!("{PREFIX}{}", k.to_ascii_uppercase()));
            let hint = nearest(name, known)
                .map(|n| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            Err(format!(
                "unknown variable {name}: not a setting of herald serve{hint}; \
                 the HERALD_* variables are listed in docs/configuration.md"
            ))
        }
    }
}

/// `text` as the JSON value of `key`, whose current value is `current`,
/// checked by deserializing it on its own so that the error names `name`.
fn read(name: &str, key: &str, current: &Value, text: &str) -> Result<Value, String> {
    // A secret or key is not echoed into a log, not even through
    // Deserialize's message.
    let secret = name.contains("SECRET") || name.contains("KEY");
    let shown = if secret {
        name.to_owned()
    } else {
        format!("{name}={text}")
    };
    // For text that is not even the right kind of value; a value of the
    // right kind that Deserialize refuses gets Deserialize's message.
    let fail = |why: &str| format!("{shown}: {why} (expected {})", expected(current));
    let candidates: Vec<Value> = match current {
        Value::Bool(_) => match text.trim() {
            "true" => vec![Value::Bool(true)],
            "false" => vec![Value::Bool(false)],
            _ => return Err(fail("not true or false")),
        },
        Value::Number(_) => match text.trim().parse::<serde_json::Number>() {
            Ok(n) => vec![Value::Number(n)],
            Err(_) => return Err(fail("not a number")),
        },
        Value::Array(_) => vec![Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        )],
        // An empty value is more often an unset shell variable
        // (`HERALD_TOKEN_SECRET=$SECRET`) than a deliberate empty string.
        _ if text.is_empty() => {
            return Err(format!("{name} is empty: give it a value or unset it"));
        }
        Value::String(_) => vec![Value::String(text.into())],
        // Unset optional settings carry no type: try the text as text,
        // then as a number or boolean.
        _ => {
            let mut c = vec![Value::String(text.into())];
            c.extend(serde_json::from_str::<Value>(text.trim()).ok());
            c
        }
    };
    let mut first_error = None;
    for value in candidates {
        let mut one = Map::new();
        one.insert(key.to_owned(), value.clone());
        match serde_json::from_value::<ServerConfig>(Value::Object(one)) {
            Ok(_) => return Ok(value),
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let mut why = first_error.unwrap_or_default();
    if secret {
        why = why.replace(text, "(the value)");
    }
    Err(format!("{shown}: {why}"))
}

/// What a value of the type of `current` looks like, for error messages.
fn expected(current: &Value) -> &'static str {
    match current {
        Value::Bool(_) => "true or false",
        // Durations serialize as fractional seconds, counts as integers.
        Value::Number(n) if n.is_f64() => "a number of seconds, like 10 or 0.5",
        _ => "a whole number, like 100",
    }
}

/// The closest of `known` to `name` within two edits, if any.
fn nearest(name: &str, known: impl Iterator<Item = String>) -> Option<String> {
    known
        .map(|k| (edit_distance(name, &k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a transposition counted as one edit
/// (`SECERT` is one slip from `SECRET`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<ServerConfig, String> {
        let mut c = ServerConfig::default();
        c.apply_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        Ok(c)
    }

    #[test]
    fn every_scalar_key_has_a_variable() {
        let c = env(&[
            ("HERALD_LISTEN", "127.0.0.1:1234"),
            ("HERALD_TOKEN_SECRET", "s3cret"),
            ("HERALD_API_KEY", "k"),
            ("HERALD_ALLOWED_ORIGINS", "http://a, http://b,"),
            ("HERALD_MAX_CONNECTIONS", "7"),
            ("HERALD_MAX_MESSAGE_SIZE", "1024"),
            ("HERALD_MAX_COMMANDS_PER_SECOND", "3"),
            ("HERALD_MAX_SUBSCRIPTIONS", "4"),
            ("HERALD_HANDSHAKE_TIMEOUT", "2.5"),
            ("HERALD_PING_INTERVAL", "30"),
            ("HERALD_PONG_TIMEOUT", "0.25"),
            ("HERALD_DRAIN", "0"),
            ("HERALD_DEMOS", "false"),
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.token_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.api_key.as_deref(), Some("k"));
        assert_eq!(c.allowed_origins, ["http://a", "http://b"]);
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.max_message_size, 1024);
        assert_eq!(c.max_commands_per_second, 3);
        assert_eq!(c.max_subscriptions, 4);
        assert_eq!(c.handshake_timeout, Duration::from_millis(2500));
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.pong_timeout, Duration::from_millis(250));
        assert_eq!(c.drain, Duration::ZERO);
        assert!(!c.demos);
        // Untouched settings survive the round trip.
        assert_eq!(c.namespaces, ServerConfig::default().namespaces);
    }

    #[test]
    fn a_token_secret_of_digits_is_text() {
        let c = env(&[("HERALD_TOKEN_SECRET", "12345")]).unwrap();
        assert_eq!(c.token_secret.as_deref(), Some("12345"));
    }

    #[test]
    fn unknown_variables_stop_startup() {
        let e = env(&[("HERALD_TOKEN_SECERT", "x")]).unwrap_err();
        assert!(e.contains("unknown variable HERALD_TOKEN_SECERT"), "{e}");
        assert!(e.contains("did you mean HERALD_TOKEN_SECRET?"), "{e}");
        let e = env(&[("HERALD_listen", "127.0.0.1:1")]).unwrap_err();
        assert!(e.contains("unknown variable HERALD_listen"), "{e}");
        let e = env(&[("HERALD_NAMESPACES", "x")]).unwrap_err();
        assert!(e.contains("configuration file"), "{e}");
        // The tools' own variables are not settings, and not errors.
        env(&[("HERALD_LOG", "debug"), ("HERALD_FUZZ_SECONDS", "5")]).unwrap();
    }

    #[test]
    fn errors_name_the_variable_and_the_format() {
        let e = env(&[("HERALD_LISTEN", "8080")]).unwrap_err();
        assert!(e.starts_with("HERALD_LISTEN=8080: "), "{e}");
        assert!(e.contains("expected host:port, like 127.0.0.1:8080"), "{e}");
        let e = ServerConfig::from_toml("listen = \"8080\"").unwrap_err();
        assert!(e.contains("expected host:port, like 127.0.0.1:8080"), "{e}");
        let e = env(&[("HERALD_MAX_CONNECTIONS", "many")]).unwrap_err();
        assert_eq!(
            e,
            "HERALD_MAX_CONNECTIONS=many: not a number (expected a whole number, like 100)"
        );
        let e = env(&[("HERALD_MAX_CONNECTIONS", "-1")]).unwrap_err();
        assert!(
            e.contains("HERALD_MAX_CONNECTIONS=-1: invalid value"),
            "{e}"
        );
        let e = env(&[("HERALD_PING_INTERVAL", "soon")]).unwrap_err();
        assert!(e.contains("a number of seconds"), "{e}");
        let e = env(&[("HERALD_DEMOS", "yes")]).unwrap_err();
        assert!(e.contains("HERALD_DEMOS=yes: not true or false"), "{e}");
    }

    #[test]
    fn secrets_are_not_echoed_and_not_empty() {
        let e = env(&[("HERALD_TOKEN_SECRET", "")]).unwrap_err();
        assert_eq!(
            e,
            "HERALD_TOKEN_SECRET is empty: give it a value or unset it"
        );
        assert!(env(&[("HERALD_LISTEN", "")]).is_err());
    }

    #[test]
    fn misspellings() {
        assert_eq!(edit_distance("SECERT", "SECRET"), 1);
        assert_eq!(edit_distance("LISTN", "LISTEN"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        let known = ["HERALD_LISTEN".to_string(), "HERALD_DEMOS".to_string()];
        assert_eq!(
            nearest("HERALD_LISTNE", known.iter().cloned()).as_deref(),
            Some("HERALD_LISTEN")
        );
        assert_eq!(nearest("HERALD_ZZZZZZ", known.iter().cloned()), None);
    }
}
