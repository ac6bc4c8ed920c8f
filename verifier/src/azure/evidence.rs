//! The evidence JSON confidential-containers guest-components' Azure attesters send as
//! `primary_evidence` for the `az-snp-vtpm` and `az-tdx-vtpm` TEEs, in every version they have
//! emitted. This module owns decoding it (and writing it, for simulated guests); nothing here
//! is verified yet.
//!
//! - version 0 (no `version` member): SNP `{"quote": Q0, "report": [bytes], "vcek": "PEM"}`, TDX
//!   `{"tpm_quote": Q0, "hcl_report": [bytes], "td_quote": [bytes]}`, where `Q0` is
//!   `{"signature": [bytes], "message": [bytes], "pcrs": [[32 bytes], ...]}` (JSON arrays of
//!   numbers);
//! - versions 1 and 2: `{"version": n, "tpm_quote": Q, "hcl_report": b64url, "vcek": b64url}`
//!   (SNP, the VCEK as DER) or `... "td_quote": b64url` (TDX), where `Q` is
//!   `{"signature": hex, "message": hex, "pcrs": [hex, ...]}`. Version 2 has the same shape; its
//!   HCL runtime data carries the nonce in `user-data` as well.
//!
//! base64url is accepted padded (as the attester writes it) or not. Unknown members and unknown
//! versions are refused ([`Step::Parse`]).

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, URL_SAFE as URL_SAFE_PADDED,
};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Reason, Step, VerifyError};

/// base64url, padding optional (the attester pads; other encoders may not).
const B64URL_ANY: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The newest evidence version this verifier reads.
pub const LATEST_VERSION: u32 = 2;

/// The TPM quote as the attester sends it: the signature (raw RSASSA bytes, not a
/// TPMT_SIGNATURE), the marshalled TPMS_ATTEST it signs, and the PCR values it covers in
/// selection order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    pub signature: Vec<u8>,
    pub message: Vec<u8>,
    pub pcrs: Vec<Vec<u8>>,
}

/// The hardware-specific part of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureHardware {
    /// `az-snp-vtpm`: the VCEK, DER (versions 1, 2) or PEM (version 0), as sent.
    Snp { vcek: Vec<u8> },
    /// `az-tdx-vtpm`: the TD quote the Azure quoting service made from the HCL's TD report.
    Tdx { td_quote: Vec<u8> },
}

/// Decoded Azure vTPM evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEvidence {
    /// 0, 1 or 2.
    pub version: u32,
    pub tpm_quote: TpmQuote,
    /// The HCL report as read from vTPM NV index 0x01400001, padding included.
    pub hcl_report: Vec<u8>,
    pub hardware: AzureHardware,
}

/// Which Azure TEE the evidence is for: the JSON shapes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureTee {
    Snp,
    Tdx,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteV0 {
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteHex {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpV0 {
    quote: QuoteV0,
    report: Vec<u8>,
    vcek: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxV0 {
    tpm_quote: QuoteV0,
    hcl_report: Vec<u8>,
    td_quote: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpV1 {
    version: u32,
    tpm_quote: QuoteHex,
    hcl_report: String,
    vcek: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxV1 {
    version: u32,
    tpm_quote: QuoteHex,
    hcl_report: String,
    td_quote: String,
}

fn malformed(what: &'static str) -> VerifyError {
    VerifyError::new(Step::Parse, Reason::Malformed { what })
}

fn from_hex(what: &'static str, s: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s).map_err(|_| malformed(what))
}

fn from_b64url(what: &'static str, s: &str) -> Result<Vec<u8>, VerifyError> {
    B64URL_ANY.decode(s).map_err(|_| malformed(what))
}

impl QuoteHex {
    fn decode(&self) -> Result<TpmQuote, VerifyError> {
        Ok(TpmQuote {
            signature: from_hex("tpm_quote.signature (hex)", &self.signature)?,
            message: from_hex("tpm_quote.message (hex)", &self.message)?,
            pcrs: self
                .pcrs
                .iter()
                .map(|p| from_hex("tpm_quote.pcrs (hex)", p))
                .collect::<Result<_, _>>()?,
        })
    }

    fn encode(q: &TpmQuote) -> Self {
        Self {
            signature: hex::encode(&q.signature),
            message: hex::encode(&q.message),
            pcrs: q.pcrs.iter().map(hex::encode).collect(),
        }
    }
}

impl From<QuoteV0> for TpmQuote {
    fn from(q: QuoteV0) -> Self {
        Self { signature: q.signature, message: q.message, pcrs: q.pcrs }
    }
}

impl AzureEvidence {
    /// Decodes evidence JSON of `tee`, any version. Every failure is [`Step::Parse`].
    pub fn from_json(tee: AzureTee, json: &[u8]) -> Result<Self, VerifyError> {
        let what = match tee {
            AzureTee::Snp => "az-snp-vtpm evidence JSON",
            AzureTee::Tdx => "az-tdx-vtpm evidence JSON",
        };
        let value: Value = serde_json::from_slice(json).map_err(|_| malformed(what))?;
        let version = match value.get("version") {
            None => 0,
            Some(v) => match v.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v @ 1..=LATEST_VERSION) => v,
                Some(v) => {
                    return Err(VerifyError::new(
                        Step::Parse,
                        Reason::UnsupportedVersion { what, version: v },
                    ))
                }
                None => return Err(malformed("evidence version (an integer)")),
            },
        };
        match (tee, version) {
            (AzureTee::Snp, 0) => {
                let e: SnpV0 = serde_json::from_value(value).map_err(|_| malformed(what))?;
                Ok(Self {
                    version,
                    tpm_quote: e.quote.into(),
                    hcl_report: e.report,
                    hardware: AzureHardware::Snp { vcek: e.vcek.into_bytes() },
                })
            }
            (AzureTee::Tdx, 0) => {
                let e: TdxV0 = serde_json::from_value(value).map_err(|_| malformed(what))?;
                Ok(Self {
                    version,
                    tpm_quote: e.tpm_quote.into(),
                    hcl_report: e.hcl_report,
                    hardware: AzureHardware::Tdx { td_quote: e.td_quote },
                })
            }
            (AzureTee::Snp, _) => {
                let e: SnpV1 = serde_json::from_value(value).map_err(|_| malformed(what))?;
                Ok(Self {
                    version,
                    tpm_quote: e.tpm_quote.decode()?,
                    hcl_report: from_b64url("hcl_report (base64url)", &e.hcl_report)?,
                    hardware: AzureHardware::Snp {
                        vcek: from_b64url("vcek (base64url)", &e.vcek)?,
                    },
                })
            }
            (AzureTee::Tdx, _) => {
                let e: TdxV1 = serde_json::from_value(value).map_err(|_| malformed(what))?;
                Ok(Self {
                    version,
                    tpm_quote: e.tpm_quote.decode()?,
                    hcl_report: from_b64url("hcl_report (base64url)", &e.hcl_report)?,
                    hardware: AzureHardware::Tdx {
                        td_quote: from_b64url("td_quote (base64url)", &e.td_quote)?,
                    },
                })
            }
        }
    }

    /// The TEE this evidence is for.
    #[must_use]
    pub fn tee(&self) -> AzureTee {
        match self.hardware {
            AzureHardware::Snp { .. } => AzureTee::Snp,
            AzureHardware::Tdx { .. } => AzureTee::Tdx,
        }
    }

    /// Writes the evidence as guest-components' attester does for versions 1 and 2 (padded
    /// base64url, lowercase hex). Version 0 is read, never written: it is refused here.
    pub fn to_json(&self) -> Result<Vec<u8>, VerifyError> {
        if !(1..=LATEST_VERSION).contains(&self.version) {
            return Err(VerifyError::new(
                Step::Parse,
                Reason::UnsupportedVersion {
                    what: "written Azure evidence",
                    version: self.version,
                },
            ));
        }
        let tpm_quote = QuoteHex::encode(&self.tpm_quote);
        let hcl_report = URL_SAFE_PADDED.encode(&self.hcl_report);
        let json = match &self.hardware {
            AzureHardware::Snp { vcek } => serde_json::to_vec(&SnpV1 {
                version: self.version,
                tpm_quote,
                hcl_report,
                vcek: URL_SAFE_PADDED.encode(vcek),
            }),
            AzureHardware::Tdx { td_quote } => serde_json::to_vec(&TdxV1 {
                version: self.version,
                tpm_quote,
                hcl_report,
                td_quote: URL_SAFE_PADDED.encode(td_quote),
            }),
        };
        json.map_err(|_| malformed("Azure evidence JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: u32, hardware: AzureHardware) -> AzureEvidence {
        AzureEvidence {
            version,
            tpm_quote: TpmQuote {
                signature: vec![1, 2, 3],
                message: vec![0xff, 0x54],
                pcrs: vec![vec![7; 32], vec![8; 32]],
            },
            hcl_report: vec![9; 10],
            hardware,
        }
    }

    #[test]
    fn azure_evidence_round_trips_versions_1_and_2() {
        for v in [1, 2] {
            let snp = sample(v, AzureHardware::Snp { vcek: vec![0x30, 0x82] });
            let back = AzureEvidence::from_json(AzureTee::Snp, &snp.to_json().unwrap()).unwrap();
            assert_eq!(back, snp);
            let tdx = sample(v, AzureHardware::Tdx { td_quote: vec![4; 5] });
            let back = AzureEvidence::from_json(AzureTee::Tdx, &tdx.to_json().unwrap()).unwrap();
            assert_eq!(back, tdx);
        }
    }

    #[test]
    fn azure_evidence_refuses_unknown_versions_members_and_shapes() {
        let json = sample(1, AzureHardware::Snp { vcek: vec![1] }).to_json().unwrap();
        let mut v: Value = serde_json::from_slice(&json).unwrap();
        v["version"] = 3.into();
        let e = AzureEvidence::from_json(AzureTee::Snp, v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.step, Step::Parse);
        assert!(matches!(e.reason, Reason::UnsupportedVersion { version: 3, .. }), "{e}");
        v["version"] = 1.into();
        v["extra"] = 1.into();
        assert!(AzureEvidence::from_json(AzureTee::Snp, v.to_string().as_bytes()).is_err());
        // SNP evidence is not TDX evidence.
        assert!(AzureEvidence::from_json(AzureTee::Tdx, &json).is_err());
        assert!(AzureEvidence::from_json(AzureTee::Snp, b"[]").is_err());
        assert!(AzureEvidence::from_json(AzureTee::Snp, b"{\"version\":\"1\"}").is_err());
    }

    #[test]
    fn azure_evidence_version_0_is_never_written() {
        assert!(sample(0, AzureHardware::Snp { vcek: vec![] }).to_json().is_err());
    }
}
