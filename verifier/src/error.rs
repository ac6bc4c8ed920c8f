//! Verification errors: which step failed and why. Every failure in this crate is one
//! [`VerifyError`]; its `Display` is the one-line `step: reason` that reaches operators and
//! clients. Reasons carry static context and numbers, never secrets or unbounded input.

use std::fmt;

/// The verification step that failed. Stable kebab-case names: they appear in CLI output,
/// client error bodies and audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Step {
    /// The evidence bytes are not a well-formed report or quote.
    Parse,
    /// A certificate (VCEK, VLEK, ASK, ASVK, ARK, PCK, PCK CA, Intel root) is malformed, not
    /// valid at `now`, not issued by its parent, or the root is not a pinned one.
    Chain,
    /// The report or quote signature does not verify under the endorsed key.
    Signature,
    /// The TCB in the endorsement does not match the evidence, or no TCB level applies.
    Tcb,
    /// The endorsement's hardware ID does not match the report's CHIP_ID.
    ChipId,
    /// The collateral (TCB info, QE identity, CRLs) is malformed, badly signed or not valid at `now`.
    Collateral,
    /// The quoting enclave report does not match the signed QE identity, or does not bind the
    /// attestation key.
    QeIdentity,
    /// REPORT_DATA differs from what the caller expected (nonce and key binding).
    ReportData,
    /// The TDX event log (CCEL) is malformed, or replaying it does not give the quote's RTMRs.
    EventLog,
    /// Azure: the HCL report (the paravisor's envelope around the hardware report) is
    /// malformed, of the wrong type, or its hardware report is not the one the HCL produces.
    HclReport,
    /// Azure: the HCL runtime data is not what the hardware report's REPORT_DATA commits to,
    /// or does not carry exactly one RSA attestation key.
    RuntimeData,
    /// Azure: the TPM quote (TPMS_ATTEST) is malformed, not a quote, or not signed by the
    /// attestation key from the runtime data.
    TpmQuote,
    /// Azure: the PCR values sent do not hash to the quote's PCR digest, or do not match its
    /// selection.
    Pcrs,
}

impl Step {
    /// The stable name of this step.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::Chain => "chain",
            Self::Signature => "signature",
            Self::Tcb => "tcb",
            Self::ChipId => "chip-id",
            Self::Collateral => "collateral",
            Self::QeIdentity => "qe-identity",
            Self::ReportData => "report-data",
            Self::EventLog => "event-log",
            Self::HclReport => "hcl-report",
            Self::RuntimeData => "runtime-data",
            Self::TpmQuote => "tpm-quote",
            Self::Pcrs => "pcrs",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed. `what` names the object (a field, a certificate, a collateral item).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Fewer bytes than the structure needs.
    Truncated { what: &'static str, needed: usize, available: usize },
    /// Bytes left over after a complete structure.
    TrailingData { what: &'static str, extra: usize },
    /// A version this verifier does not implement (never guessed at).
    UnsupportedVersion { what: &'static str, version: u32 },
    /// A reserved field that the specification requires to be zero is not.
    ReservedNonZero { what: &'static str, offset: usize },
    /// A field holds a value the specification does not allow.
    InvalidValue { what: &'static str, why: &'static str },
    /// An encoded object (DER, PEM, JSON, hex) does not decode.
    Malformed { what: &'static str },
    /// Something required is absent.
    Missing { what: &'static str },
    /// A signature does not verify.
    BadSignature { what: &'static str },
    /// A signature or key algorithm this verifier does not accept.
    UnsupportedAlgorithm { what: &'static str },
    /// A certificate or collateral item is not yet valid at `now` (Unix seconds).
    NotYetValid { what: &'static str, not_before: i64, now: i64 },
    /// A certificate or collateral item has expired at `now` (Unix seconds).
    Expired { what: &'static str, not_after: i64, now: i64 },
    /// A root certificate whose SHA-256 is not among the pinned ones.
    UntrustedRoot { what: &'static str, sha256: String },
    /// A certificate is on its issuer's revocation list.
    Revoked { what: &'static str },
    /// A certificate's serial number (hex) is listed by a CRL (named, with its thisUpdate).
    RevokedBy { what: &'static str, serial: String, crl: &'static str, this_update: i64 },
    /// Two values that must be equal differ (hex or decimal renderings).
    Mismatch { what: &'static str, expected: String, actual: String },
    /// No entry of a list (TCB levels, products) applies.
    NoMatch { what: &'static str },
}

fn unix_to_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, needed, available } => {
                write!(f, "{what} truncated: needs {needed} bytes, has {available}")
            }
            Self::TrailingData { what, extra } => {
                write!(f, "{extra} unexpected bytes after {what}")
            }
            Self::UnsupportedVersion { what, version } => {
                write!(f, "unsupported {what} version {version}")
            }
            Self::ReservedNonZero { what, offset } => {
                write!(f, "reserved field {what} at offset {offset:#x} is not zero")
            }
            Self::InvalidValue { what, why } => write!(f, "invalid {what}: {why}"),
            Self::Malformed { what } => write!(f, "malformed {what}"),
            Self::Missing { what } => write!(f, "missing {what}"),
            Self::BadSignature { what } => write!(f, "{what} signature does not verify"),
            Self::UnsupportedAlgorithm { what } => write!(f, "unsupported algorithm for {what}"),
            Self::NotYetValid { what, not_before, now } => write!(
                f,
                "{what} not valid before {}, now is {}",
                unix_to_rfc3339(*not_before),
                unix_to_rfc3339(*now)
            ),
            Self::Expired { what, not_after, now } => write!(
                f,
                "{what} expired at {}, now is {}",
                unix_to_rfc3339(*not_after),
                unix_to_rfc3339(*now)
            ),
            Self::UntrustedRoot { what, sha256 } => {
                write!(f, "{what} is not a pinned root (sha256 {sha256})")
            }
            Self::Revoked { what } => write!(f, "{what} is revoked"),
            Self::RevokedBy { what, serial, crl, this_update } => write!(
                f,
                "{what} serial {serial} is revoked by the {crl} of {}",
                unix_to_rfc3339(*this_update)
            ),
            Self::Mismatch { what, expected, actual } => {
                write!(f, "{what} mismatch: expected {expected}, got {actual}")
            }
            Self::NoMatch { what } => write!(f, "no {what} applies"),
        }
    }
}

impl std::error::Error for Reason {}

/// A verification failure: the step and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct VerifyError {
    pub step: Step,
    pub reason: Reason,
}

impl VerifyError {
    #[must_use]
    pub fn new(step: Step, reason: Reason) -> Self {
        Self { step, reason }
    }
}

/// Attach a step to a bare [`Reason`] result: `parse_x().at(Step::Parse)?`.
pub trait AtStep<T> {
    fn at(self, step: Step) -> Result<T, VerifyError>;
}

impl<T> AtStep<T> for Result<T, Reason> {
    fn at(self, step: Step) -> Result<T, VerifyError> {
        self.map_err(|reason| VerifyError { step, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_step_colon_reason() {
        let e = VerifyError::new(
            Step::Chain,
            Reason::Expired { what: "VLEK certificate", not_after: 0, now: 1 },
        );
        assert_eq!(
            e.to_string(),
            "chain: VLEK certificate expired at 1970-01-01T00:00:00Z, now is 1970-01-01T00:00:01Z"
        );
    }
}
