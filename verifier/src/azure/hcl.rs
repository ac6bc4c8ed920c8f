//! The HCL report: what Azure's paravisor (the HCL) writes into vTPM NV index 0x01400001. This
//! module owns its byte layout (parse and encode) and the runtime data JSON inside it, the only
//! place the vTPM attestation key (AK) is taken from.
//!
//! # Layout (all integers little-endian)
//! - `0x000` header, 32 bytes: signature `"HCLA"` (0x414C4348), version (1 or 2: a Milan SNP
//!   report has 1, a Genoa SNP and a TDX report 2), report size
//!   (header through the end of the runtime data), request type (2), status (0), 12 reserved
//!   zero bytes;
//! - `0x020` the hardware report, 1184 bytes: an SEV-SNP attestation report, or a 1024-byte TDX
//!   TDREPORT followed by 160 zero bytes;
//! - `0x4C0` the IGVM request data, 20 bytes: data size (20 + runtime data size), version (1),
//!   report type (2 = SNP, 4 = TDX), REPORT_DATA hash type (1 = SHA-256), runtime data size;
//! - `0x4D4` the runtime data (JSON), then zero padding to the NV index size.
//!
//! The hardware report's REPORT_DATA is SHA-256(runtime data) followed by 32 zero bytes.
//! Anything else (another signature, version, type or hash, a size that does not add up,
//! non-zero padding) fails closed at [`Step::HclReport`].
//!
//! # Runtime data
//! `{"keys": [JWK, ...], "vm-configuration": {...}, "user-data": hex}`. The AK is the RSA JWK
//! whose `kid` is `HCLAkPub`; exactly one must be present ([`Step::RuntimeData`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::claims::AzureVmConfiguration;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;

/// `"HCLA"` read as a little-endian u32.
pub const HCL_SIGNATURE: u32 = 0x414C_4348;
/// Offset of the hardware report.
pub const HW_REPORT_OFFSET: usize = 0x20;
/// Room for the hardware report (an SNP report; a TD report is zero-padded to it).
pub const HW_REPORT_LEN: usize = 1184;
/// A TDX TDREPORT.
pub const TD_REPORT_LEN: usize = 1024;
/// Offset of the runtime data.
pub const RUNTIME_DATA_OFFSET: usize = 0x4D4;
/// The size of vTPM NV index 0x01400001 on Azure, to which the encoder pads.
pub const NV_INDEX_LEN: usize = 2600;
/// The `kid` of the attestation key in the runtime data.
pub const AK_KID: &str = "HCLAkPub";

const REQUEST_TYPE: u32 = 2;
/// HCL header versions seen in real reports (1 and 2, on both SNP and TDX); others are refused.
const HEADER_VERSIONS: [u32; 2] = [1, 2];
const IGVM_VERSION: u32 = 1;
const IGVM_HEADER_LEN: u32 = 20;
const HASH_SHA256: u32 = 1;
/// The largest runtime data accepted: the NV index is 2600 bytes; a tenfold margin.
const MAX_RUNTIME_DATA: usize = 32 * 1024;

/// Which hardware report the HCL report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HclReportType {
    Snp,
    Tdx,
}

impl HclReportType {
    fn code(self) -> u32 {
        match self {
            Self::Snp => 2,
            Self::Tdx => 4,
        }
    }

    /// The header version the encoder writes for this type (as in the real Milan SNP and TDX
    /// reports).
    fn header_version(self) -> u32 {
        match self {
            Self::Snp => 1,
            Self::Tdx => 2,
        }
    }

    fn hw_len(self) -> usize {
        match self {
            Self::Snp => HW_REPORT_LEN,
            Self::Tdx => TD_REPORT_LEN,
        }
    }
}

/// A parsed HCL report, borrowing the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    pub version: u32,
    pub report_type: HclReportType,
    /// The hardware report: 1184 bytes (SNP) or 1024 (TDX).
    pub hw_report: &'a [u8],
    /// The runtime data JSON, exactly as hashed into REPORT_DATA.
    pub runtime_data: &'a [u8],
}

impl HclReport<'_> {
    /// The REPORT_DATA the hardware report must carry: SHA-256(runtime data), then zeros.
    #[must_use]
    pub fn expected_report_data(&self) -> [u8; 64] {
        report_data_for(self.runtime_data)
    }
}

/// SHA-256(`runtime_data`) followed by 32 zero bytes, as the HCL fills REPORT_DATA.
#[must_use]
pub fn report_data_for(runtime_data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.iter_mut().zip(Sha256::digest(runtime_data)).for_each(|(o, d)| *o = d);
    out
}

fn invalid(what: &'static str, why: &'static str) -> Reason {
    Reason::InvalidValue { what, why }
}

/// Parses an HCL report strictly. Every failure is [`Step::HclReport`].
pub fn parse_hcl_report(bytes: &[u8]) -> Result<HclReport<'_>, VerifyError> {
    parse(bytes).at(Step::HclReport)
}

fn parse(bytes: &[u8]) -> Result<HclReport<'_>, Reason> {
    let mut r = Reader::new("HCL report", bytes);
    if r.u32_le()? != HCL_SIGNATURE {
        return Err(invalid("HCL report signature", "not \"HCLA\""));
    }
    let version = r.u32_le()?;
    let report_size = r.u32_le()? as usize;
    if r.u32_le()? != REQUEST_TYPE {
        return Err(invalid("HCL request type", "not 2 (attestation report)"));
    }
    if r.u32_le()? != 0 {
        return Err(invalid("HCL status", "not 0 (success)"));
    }
    r.reserved_zero("HCL header reserved", 12)?;
    let hw = r.take(HW_REPORT_LEN)?;
    let data_size = r.u32_le()?;
    let igvm_version = r.u32_le()?;
    if igvm_version != IGVM_VERSION {
        return Err(Reason::UnsupportedVersion {
            what: "IGVM request data",
            version: igvm_version,
        });
    }
    let report_type = match r.u32_le()? {
        2 => HclReportType::Snp,
        4 => HclReportType::Tdx,
        _ => return Err(invalid("HCL report type", "neither 2 (SEV-SNP) nor 4 (TDX)")),
    };
    if !HEADER_VERSIONS.contains(&version) {
        return Err(Reason::UnsupportedVersion { what: "HCL report header", version });
    }
    if r.u32_le()? != HASH_SHA256 {
        return Err(Reason::UnsupportedAlgorithm { what: "HCL REPORT_DATA hash (only SHA-256)" });
    }
    let runtime_len = r.u32_le()? as usize;
    if runtime_len > MAX_RUNTIME_DATA {
        return Err(invalid("HCL runtime data size", "larger than 32 KiB"));
    }
    if data_size as usize != runtime_len + IGVM_HEADER_LEN as usize {
        return Err(invalid("IGVM data size", "not 20 + runtime data size"));
    }
    if report_size != RUNTIME_DATA_OFFSET + runtime_len {
        return Err(invalid("HCL report size", "not header through runtime data"));
    }
    let runtime_data = r.take(runtime_len)?;
    r.reserved_zero("HCL report padding", r.remaining())?;
    let (hw_report, hw_padding) = hw.split_at(report_type.hw_len());
    if hw_padding.iter().any(|b| *b != 0) {
        return Err(Reason::ReservedNonZero {
            what: "padding after the TD report",
            offset: HW_REPORT_OFFSET + TD_REPORT_LEN,
        });
    }
    Ok(HclReport { version, report_type, hw_report, runtime_data })
}

/// Writes an HCL report as the paravisor does, zero-padded to [`NV_INDEX_LEN`] (or longer when
/// the runtime data needs it). `hw_report` is 1184 bytes (SNP) or 1024 (TDX).
pub fn encode_hcl_report(
    report_type: HclReportType,
    hw_report: &[u8],
    runtime_data: &[u8],
) -> Result<Vec<u8>, Reason> {
    if hw_report.len() != report_type.hw_len() {
        return Err(invalid("hardware report", "wrong length for its type"));
    }
    let runtime_len = u32::try_from(runtime_data.len())
        .ok()
        .filter(|n| *n as usize <= MAX_RUNTIME_DATA)
        .ok_or(invalid("HCL runtime data size", "larger than 32 KiB"))?;
    let report_size = RUNTIME_DATA_OFFSET as u32 + runtime_len;
    let mut out = Vec::with_capacity(NV_INDEX_LEN);
    for v in [HCL_SIGNATURE, report_type.header_version(), report_size, REQUEST_TYPE, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(hw_report);
    out.resize(RUNTIME_DATA_OFFSET - IGVM_HEADER_LEN as usize, 0);
    for v in
        [IGVM_HEADER_LEN + runtime_len, IGVM_VERSION, report_type.code(), HASH_SHA256, runtime_len]
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(runtime_data);
    if out.len() < NV_INDEX_LEN {
        out.resize(NV_INDEX_LEN, 0);
    }
    Ok(out)
}

/// The vTPM attestation key: an RSA public key as the TPM gives it (big-endian, no leading
/// zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkPublicKey {
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

/// What the runtime data says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeData {
    pub ak: AkPublicKey,
    pub vm_configuration: AzureVmConfiguration,
    /// `user-data` as written (hex), when present.
    pub user_data: Option<String>,
}

#[derive(Deserialize)]
struct RuntimeJson {
    keys: Vec<JwkJson>,
    #[serde(rename = "vm-configuration", default)]
    vm_configuration: Option<VmConfigurationJson>,
    #[serde(rename = "user-data", default)]
    user_data: Option<String>,
}

#[derive(Deserialize)]
struct JwkJson {
    #[serde(default)]
    kid: Option<String>,
    kty: String,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct VmConfigurationJson {
    #[serde(rename = "secure-boot", default)]
    secure_boot: Option<bool>,
    #[serde(rename = "tpm-enabled", default)]
    tpm_enabled: Option<bool>,
    #[serde(rename = "tpm-persisted", default)]
    tpm_persisted: Option<bool>,
    #[serde(rename = "console-enabled", default)]
    console_enabled: Option<bool>,
    #[serde(rename = "vmUniqueId", default)]
    vm_unique_id: Option<String>,
    #[serde(rename = "root-cert-thumbprint", default)]
    root_cert_thumbprint: Option<String>,
}

/// Parses the runtime data JSON and takes the AK from it. Every failure is
/// [`Step::RuntimeData`].
pub fn parse_runtime_data(json: &[u8]) -> Result<RuntimeData, VerifyError> {
    runtime_data(json).at(Step::RuntimeData)
}

fn runtime_data(json: &[u8]) -> Result<RuntimeData, Reason> {
    let j: RuntimeJson = serde_json::from_slice(json)
        .map_err(|_| Reason::Malformed { what: "HCL runtime data JSON" })?;
    let mut aks = j.keys.iter().filter(|k| k.kid.as_deref() == Some(AK_KID));
    let ak = aks.next().ok_or(Reason::Missing { what: "HCLAkPub key in the runtime data" })?;
    if aks.next().is_some() {
        return Err(invalid("runtime data keys", "more than one HCLAkPub"));
    }
    if ak.kty != "RSA" {
        return Err(Reason::UnsupportedAlgorithm { what: "HCLAkPub (only RSA)" });
    }
    let b64 = |what: &'static str, v: Option<&String>| {
        let v = v.ok_or(Reason::Missing { what })?;
        URL_SAFE_NO_PAD.decode(v).map_err(|_| Reason::Malformed { what })
    };
    let modulus = b64("HCLAkPub n", ak.n.as_ref())?;
    let exponent = b64("HCLAkPub e", ak.e.as_ref())?;
    if let Some(u) = &j.user_data {
        hex::decode(u).map_err(|_| Reason::Malformed { what: "runtime data user-data (hex)" })?;
    }
    let vm_configuration =
        j.vm_configuration.map_or_else(AzureVmConfiguration::default, |c| AzureVmConfiguration {
            secure_boot: c.secure_boot,
            tpm_enabled: c.tpm_enabled,
            tpm_persisted: c.tpm_persisted,
            console_enabled: c.console_enabled,
            vm_unique_id: c.vm_unique_id,
            root_cert_thumbprint: c.root_cert_thumbprint,
        });
    Ok(RuntimeData {
        ak: AkPublicKey { modulus, exponent },
        vm_configuration,
        user_data: j.user_data,
    })
}

/// Writes runtime data in the shape and member order the HCL uses: the AK JWK, a
/// `vm-configuration` and `user-data` (64 bytes, uppercase hex).
#[must_use]
pub fn encode_runtime_data(
    ak: &AkPublicKey,
    vm: &AzureVmConfiguration,
    user_data: &[u8; 64],
) -> Vec<u8> {
    let mut config = Vec::new();
    let mut flag = |name: &str, v: Option<bool>| {
        if let Some(v) = v {
            config.push(format!("\"{name}\":{v}"));
        }
    };
    flag("console-enabled", vm.console_enabled);
    flag("secure-boot", vm.secure_boot);
    flag("tpm-enabled", vm.tpm_enabled);
    flag("tpm-persisted", vm.tpm_persisted);
    if let Some(id) = &vm.vm_unique_id {
        config.push(format!("\"vmUniqueId\":{}", serde_json::Value::from(id.as_str())));
    }
    format!(
        "{{\"keys\":[{{\"kid\":\"{AK_KID}\",\"key_ops\":[\"sign\"],\"kty\":\"RSA\",\"e\":\"{}\",\"n\":\"{}\"}}],\"vm-configuration\":{{{}}},\"user-data\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode(&ak.exponent),
        URL_SAFE_NO_PAD.encode(&ak.modulus),
        config.join(","),
        hex::encode_upper(user_data),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ak() -> AkPublicKey {
        AkPublicKey { modulus: vec![0xC5; 256], exponent: vec![1, 0, 1] }
    }

    fn vm() -> AzureVmConfiguration {
        AzureVmConfiguration {
            secure_boot: Some(true),
            tpm_enabled: Some(true),
            console_enabled: Some(false),
            vm_unique_id: Some("00000000-0000-0000-0000-000000000001".into()),
            ..AzureVmConfiguration::default()
        }
    }

    fn sample() -> Vec<u8> {
        let rt = encode_runtime_data(&ak(), &vm(), &[0xAB; 64]);
        encode_hcl_report(HclReportType::Snp, &[0x11; HW_REPORT_LEN], &rt).unwrap()
    }

    #[test]
    fn azure_hcl_report_round_trips() {
        let bytes = sample();
        assert_eq!(bytes.len(), NV_INDEX_LEN);
        let hcl = parse_hcl_report(&bytes).unwrap();
        assert_eq!(hcl.report_type, HclReportType::Snp);
        assert_eq!(hcl.hw_report, &[0x11; HW_REPORT_LEN][..]);
        let rt = parse_runtime_data(hcl.runtime_data).unwrap();
        assert_eq!(rt.ak, ak());
        assert_eq!(rt.vm_configuration, vm());
        assert_eq!(rt.user_data.unwrap(), "AB".repeat(64));
    }

    #[test]
    fn azure_hcl_report_every_truncation_fails_at_hcl_report() {
        let bytes = sample();
        let end = RUNTIME_DATA_OFFSET + parse_hcl_report(&bytes).unwrap().runtime_data.len();
        for n in 0..end {
            let e = parse_hcl_report(&bytes[..n]).unwrap_err();
            assert_eq!(e.step, Step::HclReport, "prefix {n}");
        }
    }

    #[test]
    fn azure_hcl_report_refuses_absurd_sizes_and_wrong_fields() {
        let set = |off: usize, v: u32| {
            let mut b = sample();
            b[off..off + 4].copy_from_slice(&v.to_le_bytes());
            parse_hcl_report(&b).unwrap_err()
        };
        let e = set(0x4D0, u32::MAX);
        assert_eq!(e.reason, invalid("HCL runtime data size", "larger than 32 KiB"));
        assert!(matches!(set(0x4D0, 2000).reason, Reason::InvalidValue { .. }));
        assert!(matches!(set(0x08, 5000).reason, Reason::InvalidValue { .. }));
        assert!(matches!(set(0x00, 0).reason, Reason::InvalidValue { .. }));
        assert!(matches!(set(0x04, 3).reason, Reason::UnsupportedVersion { .. }));
        assert!(matches!(set(0x4C8, 3).reason, Reason::InvalidValue { .. }));
        assert!(matches!(set(0x4CC, 2).reason, Reason::UnsupportedAlgorithm { .. }));
        assert!(matches!(set(0x10, 1).reason, Reason::InvalidValue { .. }));
        let mut b = sample();
        *b.last_mut().unwrap() = 1;
        assert!(matches!(parse_hcl_report(&b).unwrap_err().reason, Reason::ReservedNonZero { .. }));
    }

    #[test]
    fn azure_runtime_data_needs_exactly_one_rsa_ak() {
        let fail = |j: &str| parse_runtime_data(j.as_bytes()).unwrap_err();
        assert_eq!(fail("{\"keys\":[]}").step, Step::RuntimeData);
        assert!(matches!(fail("{\"keys\":[]}").reason, Reason::Missing { .. }));
        let ec = r#"{"keys":[{"kid":"HCLAkPub","kty":"EC","x":"AA","y":"AA"}]}"#;
        assert!(matches!(fail(ec).reason, Reason::UnsupportedAlgorithm { .. }));
        let two = r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"},
                              {"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"}]}"#;
        assert!(matches!(fail(two).reason, Reason::InvalidValue { .. }));
        assert!(matches!(fail("not json").reason, Reason::Malformed { .. }));
        let bad_hex =
            r#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"}],"user-data":"zz"}"#;
        assert!(matches!(fail(bad_hex).reason, Reason::Malformed { .. }));
    }
}
