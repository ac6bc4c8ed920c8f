//! Normalized claims: what verified evidence says, in one JSON shape for every TEE. Release
//! policies, reference-value appraisal and audit entries all read these names, which follow the
//! AMD SEV-SNP ABI and Intel TDX specifications. A `Claims` value is only ever built by a
//! verifier in this crate after every check passed (or by the broker for the unsigned `sample`
//! TEE, which says so in `tee`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::HexBytes;

/// The kind of trusted execution environment that produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    Snp,
    Tdx,
    /// An Azure confidential VM on SEV-SNP: a paravisor's HCL report (an SNP report inside)
    /// binds a vTPM attestation key, whose TPM quote covers the PCRs and the nonce.
    #[serde(rename = "az-snp-vtpm")]
    AzSnpVtpm,
    /// An Azure confidential VM on TDX: as [`Tee::AzSnpVtpm`] with a TD report and its TD quote.
    #[serde(rename = "az-tdx-vtpm")]
    AzTdxVtpm,
    /// Trustee's unsigned sample TEE: no hardware, no signature. Accepted only when enabled.
    Sample,
}

impl Tee {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snp => "snp",
            Self::Tdx => "tdx",
            Self::AzSnpVtpm => "az-snp-vtpm",
            Self::AzTdxVtpm => "az-tdx-vtpm",
            Self::Sample => "sample",
        }
    }

    /// Parses a KBS TEE name (`snp`, `tdx`, `az-snp-vtpm`, `az-tdx-vtpm`, `sample`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Snp, Self::Tdx, Self::AzSnpVtpm, Self::AzTdxVtpm, Self::Sample]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// The claims of one verified piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub tee: Tee,
    /// True when the evidence chains to the simulation PKI rather than a hardware root.
    pub simulated: bool,
    /// The 64-byte REPORT_DATA the evidence carries.
    pub report_data: HexBytes<64>,
    /// SHA-256 of the evidence bytes exactly as verified (report or quote).
    pub evidence_sha256: HexBytes<32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpClaims>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxClaims>,
    /// Azure vTPM evidence only: the PCRs the TPM quote covers and the HCL's runtime claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureClaims>,
}

/// What an Azure confidential VM's vTPM evidence says beyond the hardware report
/// (`azure.*` in the claims). Every field is bound to the hardware report: the runtime data by
/// REPORT_DATA, the PCRs by the quote the runtime data's attestation key signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureClaims {
    /// The evidence JSON version the attester sent (0, 1 or 2).
    pub evidence_version: u32,
    /// SHA-256 PCR values by index (`azure.pcrs.7`), exactly the PCRs the quote selects.
    pub pcrs: BTreeMap<u8, HexBytes<32>>,
    /// The HCL's `vm-configuration` object from the runtime data.
    pub vm_configuration: AzureVmConfiguration,
    /// The runtime data's `user-data` (hex, as the HCL wrote it); evidence version 2 binds the
    /// nonce here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// SHA-256 of the attestation key's modulus (big-endian, as the TPM gives it): the vTPM's
    /// identity for audit.
    pub ak_modulus_sha256: HexBytes<32>,
}

/// The HCL runtime data's `vm-configuration` (field names as Azure writes them, in snake case).
/// A member the HCL did not write is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_field_names)] // reason: the names are Azure's
pub struct AzureVmConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_persisted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_unique_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cert_thumbprint: Option<String>,
}

/// AMD product line (the ARK a report chains to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnpProduct {
    Milan,
    Genoa,
    Turin,
}

impl SnpProduct {
    pub const ALL: [SnpProduct; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Milan => "milan",
            Self::Genoa => "genoa",
            Self::Turin => "turin",
        }
    }

    /// The name as AMD writes it in KDS paths and certificate names ("Milan").
    #[must_use]
    pub fn kds_name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// Parses a product name case-insensitively ("Milan", "genoa", ...).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(name))
    }
}

/// Which AMD key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnpSigningKey {
    /// Versioned Chip Endorsement Key: per chip and TCB, chains ASK → ARK.
    Vcek,
    /// Versioned Loaded Endorsement Key: per cloud provider, chains ASVK → ARK.
    Vlek,
}

/// A TCB version as its SPL components. `fmc` exists on Turin and later only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SnpTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

/// The guest policy the VM was launched with (report offset 0x08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // reason: one bool per policy bit, named as in the ABI
pub struct SnpPolicy {
    /// The raw 64-bit policy, as a `0x`-prefixed hex string in JSON.
    #[serde(with = "hex_u64")]
    pub raw: u64,
    pub abi_minor: u8,
    pub abi_major: u8,
    pub smt: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
    pub cxl_allow: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_dis: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disable: bool,
}

/// Platform information (report offset 0x40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // reason: one bool per platform bit, named as in the ABI
pub struct SnpPlatformInfo {
    #[serde(with = "hex_u64")]
    pub raw: u64,
    pub smt_enabled: bool,
    pub tsme_enabled: bool,
    pub ecc_enabled: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding_enabled: bool,
    pub alias_check_complete: bool,
    pub tio_enabled: bool,
}

/// CPUID family, model and stepping (report version 3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpCpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// A firmware version (major.minor, build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpFirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

/// Claims of an SEV-SNP attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpClaims {
    pub version: u32,
    pub product: SnpProduct,
    pub signing_key: SnpSigningKey,
    pub guest_svn: u32,
    pub policy: SnpPolicy,
    pub family_id: HexBytes<16>,
    pub image_id: HexBytes<16>,
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: SnpTcb,
    pub platform_info: SnpPlatformInfo,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    pub measurement: HexBytes<48>,
    pub host_data: HexBytes<32>,
    pub id_key_digest: HexBytes<48>,
    pub author_key_digest: HexBytes<48>,
    pub report_id: HexBytes<32>,
    pub report_id_ma: HexBytes<32>,
    pub reported_tcb: SnpTcb,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuid: Option<SnpCpuid>,
    /// All zero when MASK_CHIP_ID is set (as VLEK-signed reports commonly have).
    pub chip_id: HexBytes<64>,
    pub committed_tcb: SnpTcb,
    pub current_version: SnpFirmwareVersion,
    pub committed_version: SnpFirmwareVersion,
    pub launch_tcb: SnpTcb,
    /// Report version 5 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_mit_vector: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_mit_vector: Option<u64>,
}

/// The TD report body layout inside a TDX quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TdxBody {
    /// TDX 1.0 TD report (quote v4, or v5 body type 2).
    Tdx10,
    /// TDX 1.5 TD report (quote v5 body type 3): adds TEE_TCB_SVN2 and MRSERVICETD.
    Tdx15,
}

/// TD_ATTRIBUTES, raw and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // reason: one bool per attribute bit, named as in the spec
pub struct TdAttributes {
    /// The 8 bytes as they appear in the quote.
    pub raw: HexBytes<8>,
    /// TUD.DEBUG (bit 0): the TD runs in debug mode; its memory is readable by the host.
    pub debug: bool,
    /// SEPT_VE_DISABLE (bit 28).
    pub sept_ve_disable: bool,
    /// PKS (bit 30).
    pub pks: bool,
    /// KL (bit 31).
    pub kl: bool,
    /// PERFMON (bit 63).
    pub perfmon: bool,
}

/// Intel TCB status of the platform as evaluated against the TCB info collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// TDX 1.5 only: the TD launched on an out-of-date TCB, but its current TCB (after a
    /// TD-preserving module update, `TEE_TCB_SVN2`) is not out of date; relaunching fixes it.
    TDRelaunchAdvised,
    /// [`TcbStatus::TDRelaunchAdvised`] where the launch or current TCB also needs configuration.
    TDRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// Parses the status string used in Intel's TCB info JSON.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "UpToDate" => Self::UpToDate,
            "SWHardeningNeeded" => Self::SWHardeningNeeded,
            "ConfigurationNeeded" => Self::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => Self::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => Self::OutOfDate,
            "OutOfDateConfigurationNeeded" => Self::OutOfDateConfigurationNeeded,
            "Revoked" => Self::Revoked,
            "TDRelaunchAdvised" => Self::TDRelaunchAdvised,
            "TDRelaunchAdvisedConfigurationNeeded" => Self::TDRelaunchAdvisedConfigurationNeeded,
            _ => return None,
        })
    }
}

/// Claims of a TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxClaims {
    pub quote_version: u16,
    pub body: TdxBody,
    pub tee_tcb_svn: HexBytes<16>,
    pub mr_seam: HexBytes<48>,
    pub mr_signer_seam: HexBytes<48>,
    pub seam_attributes: HexBytes<8>,
    pub td_attributes: TdAttributes,
    pub xfam: HexBytes<8>,
    pub mr_td: HexBytes<48>,
    pub mr_config_id: HexBytes<48>,
    pub mr_owner: HexBytes<48>,
    pub mr_owner_config: HexBytes<48>,
    pub rtmr: [HexBytes<48>; 4],
    /// TDX 1.5 bodies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<HexBytes<16>>,
    /// TDX 1.5 bodies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_service_td: Option<HexBytes<48>>,
    /// Platform TCB status from the TCB info collateral (combined with the QE's).
    pub tcb_status: TcbStatus,
    /// Intel security advisories that apply: the matched platform level's, the TDX module
    /// level's and the QE level's, merged, sorted, without duplicates.
    pub advisory_ids: Vec<String>,
    /// `tcbDate` of the matched platform TCB level (RFC 3339, as in Intel's TCB info).
    pub tcb_date: String,
    /// `tcbEvaluationDataNumber` of the TCB info the quote was evaluated against: Intel raises
    /// it with every TCB recovery, so a minimum says "judged by data at least this recent".
    pub tcb_evaluation_data_number: u32,
    /// The platform's FMSPC (from the PCK certificate): its identity for audit.
    pub fmspc: HexBytes<6>,
    /// The PCE SVN from the PCK certificate.
    pub pce_svn: u16,
    /// What the TD's event log (CCEL) says was measured; present only when the evidence
    /// carried a log and replaying it gave exactly the quote's RTMRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogClaims>,
}

/// Claims of a verified SGX quote (version 3). Not a [`Claims`]: keys are released to
/// confidential VMs (SNP, TDX) only, so no release policy or bundle reads these; they are what
/// `keylatch evidence verify --tee sgx` prints. Field names follow Intel's `sgx_report_body_t`;
/// the TCB fields mean what they mean in [`TdxClaims`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxClaims {
    /// Always `sgx`.
    pub tee: SgxTee,
    /// True when the quote chains to the simulation PKI (never, today: the simulator mints
    /// TDX quotes only).
    pub simulated: bool,
    /// The enclave's 64-byte REPORT_DATA.
    pub report_data: HexBytes<64>,
    /// SHA-256 of the quote bytes exactly as verified.
    pub evidence_sha256: HexBytes<32>,
    pub sgx: SgxReportClaims,
}

/// The `tee` tag of [`SgxClaims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgxTee {
    Sgx,
}

/// The enclave report and TCB verdict of an SGX quote (`sgx` in [`SgxClaims`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxReportClaims {
    pub quote_version: u16,
    pub cpu_svn: HexBytes<16>,
    pub misc_select: u32,
    pub isv_ext_prod_id: HexBytes<16>,
    /// The 16-byte ATTRIBUTES (flags, then XFRM).
    pub attributes: HexBytes<16>,
    /// ATTRIBUTES.DEBUG (flags bit 1): the enclave's memory is readable by a debugger.
    pub debug: bool,
    pub mr_enclave: HexBytes<32>,
    pub mr_signer: HexBytes<32>,
    pub config_id: HexBytes<64>,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: HexBytes<16>,
    /// Platform TCB status from the SGX TCB info (combined with the QE's).
    pub tcb_status: TcbStatus,
    /// The matched platform level's and the QE level's advisories, merged, sorted, unique.
    pub advisory_ids: Vec<String>,
    /// `tcbDate` of the matched platform TCB level.
    pub tcb_date: String,
    /// `tcbEvaluationDataNumber` of the TCB info the quote was evaluated against.
    pub tcb_evaluation_data_number: u32,
    /// The platform's FMSPC (from the PCK certificate).
    pub fmspc: HexBytes<6>,
    /// The PCE SVN from the PCK certificate.
    pub pce_svn: u16,
}

/// What a replayed TDX event log says was measured (`tdx.event_log` in the claims). The
/// digests are bound to the quote by the replay; see `verifier::tdx::eventlog` for which
/// fields come from event data and when that data is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogClaims {
    /// Every event extended into an RTMR, in log order.
    pub events: Vec<MeasuredEvent>,
    /// The kernel file grub loaded (the file event after a `grub_cmd: linux ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_sha384: Option<HexBytes<48>>,
    /// The kernel OVMF/TDVF booted directly (QEMU `-kernel`): its PE/COFF Authenticode
    /// SHA-384, as the firmware measures boot applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_authenticode_sha384: Option<HexBytes<48>>,
    /// The first initrd (grub's file event after `grub_cmd: initrd ...`, or the Linux EFI
    /// stub's tagged initrd event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_sha384: Option<HexBytes<48>>,
    /// The kernel command line, when the log carries it as text its digest covers (grub's
    /// `kernel_cmdline:` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Digest of the command line event (grub's, or the Linux EFI stub's load options: UTF-16LE
    /// with its NUL, as the firmware passed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_sha384: Option<HexBytes<48>>,
    /// EFI configuration and boot variables (`SecureBoot`, `PK`, `KEK`, `db`, `dbx`,
    /// `BootOrder`, ...) by name, each the SHA-384 of its `UEFI_VARIABLE_DATA`. A name
    /// measured twice with different digests is left out.
    pub efi_variables: BTreeMap<String, HexBytes<48>>,
    /// The value of the `SecureBoot` variable as measured (1 = enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
}

/// One measured event of a TDX event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredEvent {
    /// 0..3.
    pub rtmr: u8,
    /// The TCG event type name (`EV_IPL`, `EV_EFI_VARIABLE_DRIVER_CONFIG`, ...) or its number.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The SHA-384 digest extended into the RTMR.
    pub digest: HexBytes<48>,
    /// What the log says the event is (informational; not covered by the digest in general).
    pub description: String,
}

/// Serde for a u64 as a `0x`-prefixed lowercase hex string, as policies are written by people.
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // reason: serde's `with` requires `&T`
    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s.strip_prefix("0x").unwrap_or(&s);
        u64::from_str_radix(digits, 16).map_err(serde::de::Error::custom)
    }
}
