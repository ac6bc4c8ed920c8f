//! Simulated Azure confidential VM evidence: the HCL report a paravisor would write into vTPM
//! NV index 0x01400001, around an SNP report minted by the sim AMD PKI. The runtime data is
//! built exactly as Azure's HCL writes it (the `HCLAkPub` JWK of the given attestation key, a
//! `vm-configuration`, `user-data`), and the SNP report's REPORT_DATA is SHA-256 of it followed
//! by 32 zero bytes, so the evidence goes through the same HCL, runtime-data and SNP checks as a
//! real Azure VM's. The TPM quote is the vTPM's business (a software TPM, or a test that signs a
//! TPMS_ATTEST with the AK it generated).

use rand_core::CryptoRngCore;

use crate::azure::hcl::{
    encode_hcl_report, encode_runtime_data, report_data_for, AkPublicKey, HclReportType,
};
use crate::claims::AzureVmConfiguration;

use super::snp::{SimAmdPki, SimSnpError, SimSnpReport};

/// What to put into a simulated HCL report besides the SNP report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimHcl {
    /// The vTPM attestation key (RSA modulus and exponent, big-endian, as the TPM gives them).
    pub ak: AkPublicKey,
    /// `user-data` (Azure writes what the guest put into NV index 0x01400002, zero-padded;
    /// all zero when nothing was written).
    pub user_data: [u8; 64],
    pub vm_configuration: AzureVmConfiguration,
}

impl SimHcl {
    /// An HCL for `ak` with Azure's usual configuration (secure boot and TPM on, console on)
    /// and no user data.
    #[must_use]
    pub fn new(ak: AkPublicKey) -> Self {
        Self {
            ak,
            user_data: [0; 64],
            vm_configuration: AzureVmConfiguration {
                console_enabled: Some(true),
                secure_boot: Some(true),
                tpm_enabled: Some(true),
                vm_unique_id: Some("5A1B0C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D".into()),
                ..AzureVmConfiguration::default()
            },
        }
    }

    /// The runtime data JSON this HCL writes.
    #[must_use]
    pub fn runtime_data(&self) -> Vec<u8> {
        encode_runtime_data(&self.ak, &self.vm_configuration, &self.user_data)
    }
}

/// Mints an Azure SEV-SNP HCL report: `report` (its `report_data` is replaced by
/// SHA-256(runtime data) || 32 zero bytes; Azure's HCL asks at VMPL 0) signed by a VCEK of
/// `pki`, wrapped with `hcl`'s runtime data. Returns (HCL report bytes, 2600 long; VCEK DER).
pub fn mint_snp_hcl_report(
    pki: &SimAmdPki,
    report: &SimSnpReport,
    hcl: &SimHcl,
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, Vec<u8>), SimSnpError> {
    let runtime_data = hcl.runtime_data();
    let spec = SimSnpReport { report_data: report_data_for(&runtime_data), ..report.clone() };
    let (snp_report, vcek) = pki.mint(&spec, rng)?;
    let bytes = encode_hcl_report(HclReportType::Snp, &snp_report, &runtime_data)
        .map_err(|_| SimSnpError::Encoding("HCL report"))?;
    Ok((bytes, vcek))
}
