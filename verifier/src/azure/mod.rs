//! Azure confidential VMs (`az-snp-vtpm`, `az-tdx-vtpm`): this module owns the question "is this
//! vTPM evidence from an Azure confidential VM genuine, and what does it say?". On Azure a
//! paravisor (the HCL) owns the hardware report; the guest reads an HCL report from a vTPM NV
//! index and proves its boot state with a TPM quote signed by the vTPM's attestation key (AK).
//!
//! - [`evidence`]: the evidence JSON guest-components' attesters send (versions 0, 1, 2);
//! - [`hcl`]: the HCL report (header, the hardware report inside, the runtime data JSON that
//!   carries the AK) and its encoder;
//! - [`tdreport`]: the TDX TDREPORT inside a TDX HCL report, matched to the TD quote;
//! - [`tpm`]: TPMS_ATTEST (the quote message), its RSASSA signature and the PCR digest;
//! - `verify`: [`AzureVerifier`], the numbered steps; the hardware report goes through the
//!   bare SNP or TDX verifier unchanged.

pub mod evidence;
pub mod hcl;
pub mod tdreport;
pub mod tpm;
mod verify;

pub use evidence::{AzureEvidence, AzureHardware, AzureTee, TpmQuote};
pub use hcl::{
    parse_hcl_report, parse_runtime_data, AkPublicKey, HclReport, HclReportType, RuntimeData,
};
pub use tpm::{check_pcrs, verify_quote_signature, PcrSelection, TpmsAttest};
pub use verify::{
    check_vtpm, verify_az_snp, verify_az_tdx, verify_decoded_az_snp, verify_decoded_az_tdx,
    AzSnpInputs, DecodedAzure,
};
