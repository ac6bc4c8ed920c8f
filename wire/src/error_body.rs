//! The body of every non-200 KBS reply: `{"type": "<URI or stable id>", "detail": "<text>"}`.
//! Upstream clients fail to parse anything else.

use serde::{Deserialize, Serialize};

/// `{"type": .., "detail": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub error_type: String,
    pub detail: String,
}

impl ErrorBody {
    #[must_use]
    pub fn new(error_type: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error_type: error_type.into(), detail: detail.into() }
    }

    /// Parses a reply body; `None` when it is not an error body.
    #[must_use]
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_type_and_detail() {
        let b = ErrorBody::new("https://keylatch.invalid/policy-denied", "rule 2: debug");
        let s = serde_json::to_string(&b).unwrap();
        assert_eq!(
            s,
            r#"{"type":"https://keylatch.invalid/policy-denied","detail":"rule 2: debug"}"#
        );
        assert_eq!(ErrorBody::parse(s.as_bytes()), Some(b));
        assert_eq!(ErrorBody::parse(b"not json"), None);
    }
}
