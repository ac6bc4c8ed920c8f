//! RFC 8785 JSON Canonicalization Scheme (JCS) over `serde_json::Value`: object members sorted by
//! the UTF-16 code units of their names, no whitespace, strings escaped exactly as ECMAScript's
//! `JSON.stringify` does. This is the one canonicalizer of the workspace; other crates call
//! `canonicalize`.
//!
//! Numbers: RFC 8785 serializes numbers as ECMAScript does. Keylatch documents contain only
//! integers, which both agree on when they are exact in an IEEE-754 double (|n| <= 2^53), so those
//! are written in decimal and every other number (fractions, larger integers) is refused rather
//! than risk a second, diverging float formatter. (`serde_jcs` was not used: it is unmaintained
//! and pulls a float formatter we do not need.)

use serde::Serialize;
use serde_json::Value;

/// Largest integer magnitude a double represents exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// A number that is not an integer of magnitude at most 2^53.
    #[error("number {0} is not an integer of magnitude at most 2^53")]
    UnsupportedNumber(String),
    /// The value could not be turned into JSON.
    #[error("serialize: {0}")]
    Serialize(String),
}

/// Canonical bytes of any serializable value.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(value).map_err(|e| JcsError::Serialize(e.to_string()))?;
    canonicalize(&value)
}

/// Canonical bytes of a JSON value.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        if u <= MAX_EXACT_INTEGER {
            out.extend_from_slice(u.to_string().as_bytes());
            return Ok(());
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_EXACT_INTEGER {
            out.extend_from_slice(i.to_string().as_bytes());
            return Ok(());
        }
    }
    Err(JcsError::UnsupportedNumber(n.to_string()))
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0C}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonicalize(v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_members_by_utf16_code_units() {
        // The sorting example of RFC 8785 §3.2.3 and its expected member order.
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let keys_in_order: Vec<&str> =
            vec!["\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"];
        let text = canon(&v);
        let mut last = 0;
        for k in keys_in_order {
            let needle = String::from_utf8(canonicalize(&json!(k)).unwrap()).unwrap();
            let at = text.find(&needle).unwrap();
            assert!(at >= last, "{k:?} out of order in {text}");
            last = at;
        }
    }

    #[test]
    fn escapes_like_ecmascript() {
        let v = json!({"s": "\u{0}\u{1f}\"\\\n\t\u{8}\u{c}\r/\u{7f}é"});
        assert_eq!(canon(&v), "{\"s\":\"\\u0000\\u001f\\\"\\\\\\n\\t\\b\\f\\r/\u{7f}é\"}");
    }

    #[test]
    fn writes_nested_structures_without_whitespace() {
        let v = json!({"b": [1, true, null, {"y": -5, "x": "a"}], "a": {}});
        assert_eq!(canon(&v), r#"{"a":{},"b":[1,true,null,{"x":"a","y":-5}]}"#);
    }

    #[test]
    fn refuses_fractions_and_inexact_integers() {
        assert_eq!(canonicalize(&json!(1.5)), Err(JcsError::UnsupportedNumber("1.5".into())));
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_993_u64)),
            Err(JcsError::UnsupportedNumber("9007199254740993".into()))
        );
        assert_eq!(canon(&json!(9_007_199_254_740_992_u64)), "9007199254740992");
        assert_eq!(canon(&json!(-9_007_199_254_740_992_i64)), "-9007199254740992");
    }
}
