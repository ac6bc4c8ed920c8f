//! Azure vTPM evidence verification as numbered steps, each naming its [`Step`]:
//!
//! 1. the evidence JSON decodes (any version; [`Step::Parse`]);
//! 2. the HCL report parses and carries the expected hardware report type
//!    ([`Step::HclReport`]);
//! 3. the hardware report's REPORT_DATA is SHA-256(runtime data) followed by 32 zero bytes
//!    ([`Step::RuntimeData`]): the runtime data, and so the AK, is bound to the hardware;
//! 4. the hardware report verifies exactly as a bare one: for SEV-SNP through
//!    [`SnpVerifier`] (VCEK chain to the pinned ARK, validity, CRLs when given, TCB, CHIP_ID,
//!    signature; the VCEK from the evidence, else the caller's); for TDX through
//!    [`TdxVerifier`] with its collateral, and the TD quote's TD report must be the HCL's
//!    ([`Step::HclReport`]; checked first, so that without collateral everything else is);
//! 5. the HCL asked at VMPL 0 (SNP; [`Step::HclReport`]);
//! 6. the runtime data carries exactly one RSA attestation key ([`Step::RuntimeData`]); the AK
//!    is taken from there and from nowhere else;
//! 7. the TPM quote signature verifies under the AK (RSASSA-PKCS1-v1_5 SHA-256) and the message
//!    is a TPMS_ATTEST quote ([`Step::TpmQuote`]);
//! 8. the quote's extraData is exactly the expected nonce, and with evidence version 2 the
//!    runtime data's `user-data` starts with it and is zero after it ([`Step::ReportData`]);
//! 9. the PCR values sent are the quote's SHA-256 selection and hash to its pcrDigest
//!    ([`Step::Pcrs`]).
//!
//! The nonce is what the attester passed to `TPM2_Quote`: for the KBS protocol, the 48-byte
//! SHA-384 binding of nonce and tee-pubkey, unpadded (guest-components' Azure attesters pass
//! the runtime-data hash as is).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::claims::{AzureClaims, Claims, Tee};
use crate::error::{Reason, Step, VerifyError};
use crate::snp::{parse_report, SnpEndorsements, SnpRevocation, SnpVerifier};
use crate::tdx::{parse_quote, TdxCollateral, TdxVerifier};
use crate::{HexBytes, Now};

use super::evidence::{AzureEvidence, AzureHardware, AzureTee};
use super::hcl::{parse_hcl_report, parse_runtime_data, HclReport, HclReportType, RuntimeData};
use super::tdreport;
use super::tpm::{check_pcrs, verify_quote_signature, TpmsAttest};

/// The VMPL Azure's HCL requests its SNP report at.
const HCL_VMPL: u32 = 0;

/// What an `az-snp-vtpm` verification needs besides the evidence.
#[derive(Debug, Clone, Copy)]
pub struct AzSnpInputs<'a> {
    /// Used only when the evidence carries no VCEK.
    pub fallback: Option<&'a SnpEndorsements>,
    /// AMD CRLs to check the chain against (step 4 of the SNP path), when given.
    pub revocation: Option<&'a SnpRevocation>,
}

/// Azure evidence after step 1, with the SHA-256 of the JSON it was decoded from (the claims'
/// `evidence_sha256`): decode once, verify under as many trust domains as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedAzure {
    pub evidence: AzureEvidence,
    pub json_sha256: [u8; 32],
}

impl DecodedAzure {
    /// Step 1: decodes `json` as `tee`'s evidence, any version ([`Step::Parse`]).
    pub fn from_json(tee: AzureTee, json: &[u8]) -> Result<Self, VerifyError> {
        Ok(Self {
            evidence: AzureEvidence::from_json(tee, json)?,
            json_sha256: Sha256::digest(json).into(),
        })
    }
}

/// Verifies `az-snp-vtpm` evidence JSON (as the attester sent it) with `snp`.
pub fn verify_az_snp(
    snp: &SnpVerifier,
    evidence_json: &[u8],
    inputs: AzSnpInputs<'_>,
    expected_nonce: Option<&[u8]>,
    now: Now,
) -> Result<Claims, VerifyError> {
    let decoded = DecodedAzure::from_json(AzureTee::Snp, evidence_json)?; // 1
    verify_decoded_az_snp(snp, &decoded, inputs, expected_nonce, now)
}

/// [`verify_az_snp`] from step 2 on, for evidence decoded once.
pub fn verify_decoded_az_snp(
    snp: &SnpVerifier,
    decoded: &DecodedAzure,
    inputs: AzSnpInputs<'_>,
    expected_nonce: Option<&[u8]>,
    now: Now,
) -> Result<Claims, VerifyError> {
    let evidence = &decoded.evidence;
    let hcl = hcl_of(evidence, HclReportType::Snp)?; // 2
    let report = parse_report(hcl.hw_report)?;
    let expected_rd = check_runtime_binding(&hcl, &report.report_data)?; // 3
    let endorsements = match &evidence.hardware {
        AzureHardware::Snp { vcek } if !vcek.is_empty() => SnpEndorsements::new(vcek.clone()),
        _ => inputs.fallback.cloned().ok_or(VerifyError::new(
            Step::Chain,
            Reason::Missing { what: "VCEK (the evidence carries none)" },
        ))?,
    };
    let mut claims = match inputs.revocation {
        Some(r) => {
            snp.verify_with_revocation(hcl.hw_report, &endorsements, Some(&expected_rd), now, r)
        }
        None => snp.verify(hcl.hw_report, &endorsements, Some(&expected_rd), now),
    }?; // 4
    if report.vmpl != HCL_VMPL {
        return Err(VerifyError::new(
            Step::HclReport,
            Reason::Mismatch {
                what: "VMPL of the HCL's SNP report",
                expected: HCL_VMPL.to_string(),
                actual: report.vmpl.to_string(),
            },
        )); // 5
    }
    claims.tee = Tee::AzSnpVtpm;
    finish(claims, decoded, &hcl, expected_nonce)
}

/// Verifies `az-tdx-vtpm` evidence JSON with `tdx` and `collateral`. Without collateral the
/// TD quote cannot be judged: every step that needs none still runs (and may fail first), and
/// then verification stops at [`Step::Collateral`]; it never passes.
pub fn verify_az_tdx(
    tdx: &TdxVerifier,
    evidence_json: &[u8],
    collateral: Option<&TdxCollateral>,
    expected_nonce: Option<&[u8]>,
    now: Now,
) -> Result<Claims, VerifyError> {
    let decoded = DecodedAzure::from_json(AzureTee::Tdx, evidence_json)?; // 1
    verify_decoded_az_tdx(tdx, &decoded, collateral, expected_nonce, now)
}

/// [`verify_az_tdx`] from step 2 on, for evidence decoded once.
pub fn verify_decoded_az_tdx(
    tdx: &TdxVerifier,
    decoded: &DecodedAzure,
    collateral: Option<&TdxCollateral>,
    expected_nonce: Option<&[u8]>,
    now: Now,
) -> Result<Claims, VerifyError> {
    let evidence = &decoded.evidence;
    let hcl = hcl_of(evidence, HclReportType::Tdx)?; // 2
    let td_report = tdreport::parse_td_report(hcl.hw_report)?;
    let expected_rd = check_runtime_binding(&hcl, &td_report.report_data)?; // 3
    let AzureHardware::Tdx { td_quote } = &evidence.hardware else {
        return Err(VerifyError::new(Step::Parse, Reason::Missing { what: "td_quote" }));
    };
    tdreport::check_matches_quote(&td_report, &parse_quote(td_quote)?.report)?;
    let Some(collateral) = collateral else {
        check_vtpm(evidence, &hcl, expected_nonce)?;
        return Err(VerifyError::new(
            Step::Collateral,
            Reason::Missing {
                what: "Intel collateral for the TD quote (TCB info, QE identity, CRLs)",
            },
        ));
    };
    let mut claims = tdx.verify(td_quote, collateral, Some(&expected_rd), now)?; // 4
    claims.tee = Tee::AzTdxVtpm;
    finish(claims, decoded, &hcl, expected_nonce)
}

fn hcl_of(evidence: &AzureEvidence, want: HclReportType) -> Result<HclReport<'_>, VerifyError> {
    let hcl = parse_hcl_report(&evidence.hcl_report)?;
    if hcl.report_type != want {
        return Err(VerifyError::new(
            Step::HclReport,
            Reason::InvalidValue {
                what: "HCL report type",
                why: "not the hardware of the TEE the evidence was sent for",
            },
        ));
    }
    Ok(hcl)
}

/// Step 3: returns the REPORT_DATA the hardware report must carry.
fn check_runtime_binding(hcl: &HclReport<'_>, actual: &[u8; 64]) -> Result<[u8; 64], VerifyError> {
    let expected = hcl.expected_report_data();
    if &expected != actual {
        return Err(VerifyError::new(
            Step::RuntimeData,
            Reason::Mismatch {
                what: "REPORT_DATA (SHA-256 of the HCL runtime data, then zeros)",
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            },
        ));
    }
    Ok(expected)
}

fn finish(
    mut claims: Claims,
    decoded: &DecodedAzure,
    hcl: &HclReport<'_>,
    expected_nonce: Option<&[u8]>,
) -> Result<Claims, VerifyError> {
    claims.azure = Some(check_vtpm(&decoded.evidence, hcl, expected_nonce)?);
    claims.evidence_sha256 = HexBytes(decoded.json_sha256);
    Ok(claims)
}

/// Steps 6 to 9, which depend only on the HCL report (whose binding to verified hardware is
/// steps 3 and 4, the caller's) and the TPM quote: the Azure claims.
pub fn check_vtpm(
    evidence: &AzureEvidence,
    hcl: &HclReport<'_>,
    expected_nonce: Option<&[u8]>,
) -> Result<AzureClaims, VerifyError> {
    let runtime = parse_runtime_data(hcl.runtime_data)?; // 6
    let quote = &evidence.tpm_quote;
    verify_quote_signature(&runtime.ak, &quote.message, &quote.signature)?; // 7
    let attest = TpmsAttest::parse(&quote.message)?;
    if let Some(nonce) = expected_nonce {
        check_nonce(&attest, &runtime, evidence.version, nonce)?; // 8
    }
    let pcrs = check_pcrs(&attest, &quote.pcrs)?; // 9
    Ok(AzureClaims {
        evidence_version: evidence.version,
        pcrs: pcrs.into_iter().map(|(i, v)| (i, HexBytes(v))).collect::<BTreeMap<_, _>>(),
        vm_configuration: runtime.vm_configuration,
        user_data: runtime.user_data,
        ak_modulus_sha256: HexBytes(Sha256::digest(&runtime.ak.modulus).into()),
    })
}

fn check_nonce(
    attest: &TpmsAttest,
    runtime: &RuntimeData,
    version: u32,
    nonce: &[u8],
) -> Result<(), VerifyError> {
    let mismatch = |what, actual: &[u8]| {
        VerifyError::new(
            Step::ReportData,
            Reason::Mismatch { what, expected: hex::encode(nonce), actual: hex::encode(actual) },
        )
    };
    if attest.extra_data != nonce {
        return Err(mismatch("TPM quote extraData (nonce)", &attest.extra_data));
    }
    if version >= 2 {
        let user = runtime.user_data.as_deref().and_then(|u| hex::decode(u).ok()).ok_or(
            VerifyError::new(
                Step::ReportData,
                Reason::Missing { what: "runtime data user-data (evidence version 2)" },
            ),
        )?;
        let (head, tail) = user.split_at(nonce.len().min(user.len()));
        if head != nonce || tail.iter().any(|b| *b != 0) {
            return Err(mismatch("runtime data user-data (evidence version 2)", &user));
        }
    }
    Ok(())
}
