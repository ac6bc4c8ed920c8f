//! The evidence confidential-containers' guest-components attesters send, decoded once per
//! attestation whatever the TEE: the broker's collateral lookup and every trust domain it tries
//! read this decoded form, never the JSON again (Azure evidence included: [`DecodedAzure`]). Each TEE's format is its own module's
//! ([`crate::snp::report_from_coco_value`], [`crate::tdx::tdx_from_coco_value`]).

use crate::azure::{AzureTee, DecodedAzure};
use crate::snp::{report_from_coco_value, CocoSnpEvidence};
use crate::tdx::{tdx_from_coco_value, CocoTdxEvidence};
use crate::{Reason, Step, Tee, VerifyError};

/// A guest's primary evidence, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CocoEvidence {
    Snp(CocoSnpEvidence),
    Tdx(CocoTdxEvidence),
    AzSnpVtpm(DecodedAzure),
    AzTdxVtpm(DecodedAzure),
}

impl CocoEvidence {
    /// Decodes `primary` as `tee`'s evidence. Failures are the format's own ([`Step::Parse`],
    /// or [`Step::EventLog`] for an undecodable TDX event log); the unsigned `sample` TEE has no
    /// hardware evidence to decode.
    pub fn from_value(tee: Tee, primary: &serde_json::Value) -> Result<Self, VerifyError> {
        match tee {
            Tee::Snp => report_from_coco_value(primary).map(Self::Snp),
            Tee::Tdx => tdx_from_coco_value(primary).map(Self::Tdx),
            Tee::AzSnpVtpm | Tee::AzTdxVtpm => {
                let json = serde_json::to_vec(primary).map_err(|_| {
                    VerifyError::new(Step::Parse, Reason::Malformed { what: "Azure evidence JSON" })
                })?;
                Ok(if tee == Tee::AzSnpVtpm {
                    Self::AzSnpVtpm(DecodedAzure::from_json(AzureTee::Snp, &json)?)
                } else {
                    Self::AzTdxVtpm(DecodedAzure::from_json(AzureTee::Tdx, &json)?)
                })
            }
            Tee::Sample => Err(VerifyError::new(
                Step::Parse,
                Reason::Malformed { what: "sample evidence (no hardware evidence to decode)" },
            )),
        }
    }

    /// The TEE the evidence is from.
    #[must_use]
    pub fn tee(&self) -> Tee {
        match self {
            Self::Snp(_) => Tee::Snp,
            Self::Tdx(_) => Tee::Tdx,
            Self::AzSnpVtpm(_) => Tee::AzSnpVtpm,
            Self::AzTdxVtpm(_) => Tee::AzTdxVtpm,
        }
    }
}
