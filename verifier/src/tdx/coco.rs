//! guest-components' TDX evidence: this module owns decoding the JSON the confidential-containers
//! TDX attester sends, `{"quote": base64, "cc_eventlog": base64 | null}`, where `cc_eventlog` is
//! the content of the ACPI CCEL area (`/sys/firmware/acpi/tables/data/CCEL`). Both are standard
//! base64 with padding, as the attester writes them. No log (absent or `null`) is allowed: the
//! RTMRs then stay opaque claims.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Reason, Step, VerifyError};

/// Decoded guest-components TDX evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoTdxEvidence {
    pub quote: Vec<u8>,
    /// The CCEL bytes, when the attester sent them.
    pub cc_eventlog: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Json {
    quote: String,
    #[serde(default)]
    cc_eventlog: Option<String>,
}

/// Decodes the evidence JSON. Failures are [`Step::Parse`] (the quote) or [`Step::EventLog`].
pub fn tdx_from_coco_evidence(json: &[u8]) -> Result<CocoTdxEvidence, VerifyError> {
    from_json(serde_json::from_slice(json))
}

/// [`tdx_from_coco_evidence`] for evidence that is already a JSON value (the broker gets it
/// inside the KBS `Attestation` body).
pub fn tdx_from_coco_value(value: &serde_json::Value) -> Result<CocoTdxEvidence, VerifyError> {
    from_json(Json::deserialize(value))
}

fn from_json(j: Result<Json, serde_json::Error>) -> Result<CocoTdxEvidence, VerifyError> {
    let malformed = |step, what| VerifyError::new(step, Reason::Malformed { what });
    let j =
        j.map_err(|_| malformed(Step::Parse, "TDX evidence JSON (needs a \"quote\" member)"))?;
    let quote = STANDARD
        .decode(j.quote.trim())
        .map_err(|_| malformed(Step::Parse, "TDX evidence quote (base64)"))?;
    let cc_eventlog = j
        .cc_eventlog
        .map(|l| STANDARD.decode(l.trim()))
        .transpose()
        .map_err(|_| malformed(Step::EventLog, "TDX evidence cc_eventlog (base64)"))?;
    Ok(CocoTdxEvidence { quote, cc_eventlog })
}
