//! Keeps `server/ERRORS.md` and `broker/CONFIG.md` from drifting: every `ErrorKind` is documented
//! with its status (and nothing else is), every key the configuration structs accept is
//! documented and present in CONFIG.md's full example (which must parse), and the file
//! `keylatch init` writes carries the same defaults as the structs.

// reason: test code fails loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use keylatch_broker::config::Config;
use keylatch_broker::ErrorKind;

fn doc(name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn every_error_type_is_documented_with_its_status_and_nothing_else_is() {
    let text = doc("ERRORS.md");
    let rows: Vec<(String, u16)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| {
            let (id, rest) = l.split_once("` | ").unwrap();
            let status = rest.split(' ').next().unwrap().parse().unwrap();
            (id.to_owned(), status)
        })
        .collect();
    let kinds: Vec<(String, u16)> = ErrorKind::ALL
        .iter()
        .map(|k| (k.type_id().to_owned(), keylatch_server::error::status(*k).as_u16()))
        .collect();
    assert_eq!(rows, kinds, "ERRORS.md rows must list ErrorKind::ALL in order");
    assert_eq!(kinds.len(), 34);
    assert!(rows.contains(&("rate-limited".to_owned(), 429)));
}

/// CONFIG.md's full example (the one ```toml block).
fn example_text() -> String {
    toml_block(1)
}

/// The `n`th ```toml block of CONFIG.md (0: the PostgreSQL example under `[store]`; 1: the
/// full example at the end).
fn toml_block(n: usize) -> String {
    let text = doc("../broker/CONFIG.md");
    let mut rest = text.as_str();
    for _ in 0..n {
        let start = rest.find("```toml\n").expect("toml block") + "```toml\n".len();
        rest = &rest[start..];
    }
    let start = rest.find("```toml\n").expect("toml block") + "```toml\n".len();
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_owned()
}

/// The keys serde accepts at `path` inside the example, read from its own "unknown field,
/// expected ..." message (so the list comes from the structs, not from this test).
fn accepted_keys(path: &[&str]) -> Vec<String> {
    let mut value: toml::Table = toml::from_str(&example_text()).unwrap();
    let mut table = &mut value;
    for p in path {
        table = match table.get_mut(*p).unwrap() {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => a[0].as_table_mut().unwrap(),
            other => panic!("{p} is {other:?}"),
        };
    }
    table.insert("zz_not_a_key".into(), toml::Value::Integer(1));
    let err = toml::from_str::<Config>(&toml::to_string(&value).unwrap()).unwrap_err().to_string();
    let expected = err.split_once("expected").unwrap_or_else(|| panic!("{err}")).1;
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn every_config_key_is_documented_and_in_the_full_example() {
    let text = doc("../broker/CONFIG.md");
    let example: toml::Table = toml::from_str(&example_text()).unwrap();
    let sections: [&[&str]; 12] = [
        &[],
        &["tls"],
        &["store"],
        &["keystore"],
        &["keystore", "pkcs11"],
        &["lifecycle"],
        &["log"],
        &["rate_limit"],
        &["metrics"],
        &["reference_values"],
        &["audit"],
        &["collateral"],
    ];
    // A SQLite and a PostgreSQL `[store]` cannot both be in one valid file: the PostgreSQL keys
    // are in the second example, which must be a valid configuration too.
    let postgres: toml::Table = toml::from_str(&toml_block(0)).unwrap();
    let postgres_config: Config = toml::from_str(&toml_block(0)).unwrap();
    postgres_config.check().unwrap();
    let mut total = 0;
    for path in sections {
        let keys = accepted_keys(path);
        assert!(!keys.is_empty(), "{path:?}");
        for key in keys {
            let qualified =
                path.iter().copied().chain([key.as_str()]).collect::<Vec<_>>().join(".");
            // Top-level tables and arrays of tables are sections with a heading of their own.
            let section =
                path.is_empty() && example.get(&key).is_some_and(|v| v.is_table() || v.is_array());
            let documented = if section {
                text.contains(&format!("## `[{key}]`")) || text.contains(&format!("## `[[{key}]]`"))
            } else {
                text.contains(&format!("| `{qualified}` |"))
            };
            assert!(documented, "{qualified} not in CONFIG.md");
            let in_postgres = path == ["store"] && postgres["store"].get(&key).is_some();
            let mut v =
                toml::Value::Table(if in_postgres { postgres.clone() } else { example.clone() });
            for p in path.iter().copied().chain([key.as_str()]) {
                v = match v {
                    toml::Value::Array(a) => a[0].get(p).cloned(),
                    other => other.get(p).cloned(),
                }
                .unwrap_or_else(|| panic!("{qualified} missing from the full example"));
            }
            total += 1;
        }
    }
    // The top level's sections are keys too; the count pins that the scan saw them all.
    assert_eq!(total, 62);
    let config: Config = toml::from_str(&example_text()).unwrap();
    config.check().unwrap();
    assert_eq!(config.log.format, keylatch_broker::config::LogFormat::Json);
}

#[test]
fn init_writes_the_documented_defaults() {
    let written: Config = toml::from_str(&keylatch_cli::init::config_text(
        false,
        "127.0.0.1:8443",
        &keylatch_cli::init::KeystoreChoice::Soft,
        None,
    ))
    .unwrap();
    let minimal: Config = toml::from_str(
        "listen = \"x\"\ntoken_signing_key = \"k\"\n[store]\nbackend = \"sqlite\"\npath = \"db\"\n[keystore]\nbackend = \"soft\"\n",
    )
    .unwrap();
    assert_eq!(written.max_body_bytes, minimal.max_body_bytes);
    assert_eq!(written.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(written.session_lifetime_s, minimal.session_lifetime_s);
    assert_eq!(written.token_lifetime_s, minimal.token_lifetime_s);
    assert_eq!(written.lifecycle.rotation_warning_days, minimal.lifecycle.rotation_warning_days);
    assert_eq!(written.log, minimal.log);
    assert_eq!(written.rate_limit, minimal.rate_limit);
    assert_eq!(written.metrics, minimal.metrics);
    assert_eq!((written.rate_limit.per_second, written.rate_limit.burst), (50, 300));
    let text = doc("../broker/CONFIG.md");
    for row in [
        "| `max_body_bytes` | integer (bytes) | `2097152` (2 MiB) |",
        "| `rate_limit.per_second` | integer | `50` |",
        "| `rate_limit.burst` | integer | `300` |",
        "| `log.format` | `\"text\"` \\| `\"json\"` | `\"text\"` |",
        "| `log.level` | string | `\"info\"` |",
        "| `metrics.enabled` | bool | `true` |",
        "| `lifecycle.rotation_warning_days` | integer (days) | `30` |",
    ] {
        assert!(text.contains(row), "{row}");
    }
}
