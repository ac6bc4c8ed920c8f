//! RFC 8785 JSON Canonicalization Scheme over `serde_json::Value`: object members sorted by
//! their names' UTF-16 code units, no whitespace, strings escaped as ECMAScript's
//! `JSON.stringify` does, numbers as ECMAScript's `Number.prototype.toString` (via `ryu-js`).
//!
//! Written here rather than taken from `serde_jcs` so that the sort order and escaping rules are
//! visible in forty lines and pinned by the RFC's own examples in the tests.

use std::fmt::Write as _;

use serde_json::Value;

use crate::WireError;

/// The canonical form of `value`.
pub fn canonicalize(value: &Value) -> Result<String, WireError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), WireError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // reason: JCS numbers are IEEE doubles by definition
fn write_number(out: &mut String, n: &serde_json::Number) -> Result<(), WireError> {
    let f = if let Some(u) = n.as_u64() {
        u as f64
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_f64().ok_or(WireError::Jcs("number out of range"))?
    };
    if !f.is_finite() {
        return Err(WireError::Jcs("non-finite number"));
    }
    if f == 0.0 {
        // -0 serializes as 0 in ECMAScript.
        out.push('0');
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(f));
    }
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(s: &str) -> String {
        canonicalize(&serde_json::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn matches_rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
             \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_as_rfc8785_section_3_2_3() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = jcs(input);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 7);
        // The RFC's order: \r, 1, \u0080, \u00f6, \u20ac, 😀 (D83D surrogate), \ufb33.
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
            \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
            \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(out, expected);
    }

    #[test]
    fn formats_numbers_as_ecmascript() {
        // RFC 8785 Appendix B samples (IEEE-754 hex → expected text) that JSON can express.
        for (text, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("9007199254740992", "9007199254740992"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("-1.5", "-1.5"),
            ("295147905179352830000", "295147905179352830000"),
        ] {
            assert_eq!(jcs(text), expected, "{text}");
        }
    }

    #[test]
    fn escapes_controls_lowercase_and_leaves_slash_and_unicode() {
        assert_eq!(jcs(r#""\u001f/é\u0007""#), "\"\\u001f/é\\u0007\"");
    }
}
