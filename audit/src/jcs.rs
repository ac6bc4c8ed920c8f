//! Canonical entry bytes: RFC 8785 JCS as the workspace computes it everywhere, through
//! `keylatch_wire::jcs` (the one canonicalizer of the workspace; the REPORT_DATA binding uses the
//! same code). This module only adapts it to bytes and to this crate's error type.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// The value has no RFC 8785 form (e.g. a number JSON cannot carry).
    #[error("canonicalize: {0}")]
    Canonicalize(String),
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
    keylatch_wire::jcs::canonicalize(value)
        .map(String::into_bytes)
        .map_err(|e| JcsError::Canonicalize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_canonicalize_sorted_and_without_whitespace() {
        let v = json!({"b": [1, true, null, {"y": -5, "x": "a"}], "a": {}});
        assert_eq!(canonicalize(&v).unwrap(), br#"{"a":{},"b":[1,true,null,{"x":"a","y":-5}]}"#);
    }
}
