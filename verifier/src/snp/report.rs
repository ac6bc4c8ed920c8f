//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP ABI specification 56860, "Attestation
//! Report" table): a strict parser for report versions 2, 3 and 5 and the matching encoder.
//!
//! Strict means: the input is exactly 0x4A0 bytes; a version this parser does not know is an
//! error (never read as the newest layout); reserved ranges are zero; the signature algorithm
//! is 1 (ECDSA P-384 with SHA-384); `SIGNING_KEY` is a VCEK or a VLEK. `TCB_VERSION` fields are kept
//! raw ([`RawTcb`]) because their byte layout depends on the product (Turin moved the fields to
//! make room for FMC), which a version 2 report does not say; [`RawTcb::decode`] takes it.

use crate::claims::{SnpCpuid, SnpFirmwareVersion, SnpProduct, SnpSigningKey, SnpTcb};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;

/// Size of every report version this crate reads.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `0x000..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// ECDSA P-384 with SHA-384, the only `SIGNATURE_ALGO` defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Offsets of the signature's r and s components (72-byte little-endian each).
pub const SIGNATURE_R_OFFSET: usize = 0x2A0;
pub const SIGNATURE_S_OFFSET: usize = 0x2E8;
/// Offset of `CHIP_ID`.
pub const CHIP_ID_OFFSET: usize = 0x1A0;

const WHAT: &str = "SNP attestation report";

/// A `TCB_VERSION` as its 8 raw bytes (little-endian u64 in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawTcb(pub [u8; 8]);

/// TCB byte layout: Milan and Genoa `[bl, tee, 0, 0, 0, 0, snp, ucode]`; Turin
/// `[fmc, bl, tee, snp, 0, 0, 0, ucode]`.
fn is_turin_layout(product: SnpProduct) -> bool {
    matches!(product, SnpProduct::Turin)
}

impl RawTcb {
    /// Decodes the SPL fields for `product`, checking that the bytes reserved in that layout
    /// are zero.
    pub fn decode(self, what: &'static str, product: SnpProduct) -> Result<SnpTcb, Reason> {
        let [b0, b1, b2, b3, b4, b5, b6, b7] = self.0;
        if is_turin_layout(product) {
            if b4 != 0 || b5 != 0 || b6 != 0 {
                return Err(Reason::InvalidValue { what, why: "reserved TCB bytes 4..7 not zero" });
            }
            Ok(SnpTcb { fmc: Some(b0), bootloader: b1, tee: b2, snp: b3, microcode: b7 })
        } else {
            if b2 != 0 || b3 != 0 || b4 != 0 || b5 != 0 {
                return Err(Reason::InvalidValue { what, why: "reserved TCB bytes 2..6 not zero" });
            }
            Ok(SnpTcb { fmc: None, bootloader: b0, tee: b1, snp: b6, microcode: b7 })
        }
    }

    /// Encodes SPL fields in `product`'s layout. `fmc` must be present exactly on Turin.
    pub fn encode(tcb: &SnpTcb, product: SnpProduct) -> Result<Self, Reason> {
        let what = "TCB version";
        match (is_turin_layout(product), tcb.fmc) {
            (true, Some(fmc)) => {
                Ok(Self([fmc, tcb.bootloader, tcb.tee, tcb.snp, 0, 0, 0, tcb.microcode]))
            }
            (false, None) => {
                Ok(Self([tcb.bootloader, tcb.tee, 0, 0, 0, 0, tcb.snp, tcb.microcode]))
            }
            (true, None) => Err(Reason::Missing { what: "FMC SPL of a Turin TCB version" }),
            (false, Some(_)) => {
                Err(Reason::InvalidValue { what, why: "FMC SPL exists on Turin only" })
            }
        }
    }
}

/// The `KEY_INFO` field (offset 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// `AUTHOR_KEY_EN` (bit 0).
    pub author_key_en: bool,
    /// `MASK_CHIP_KEY` (bit 1): when set the firmware did not sign the report.
    pub mask_chip_key: bool,
    /// `SIGNING_KEY` (bits 4:2): 0 VCEK, 1 VLEK. Other values are rejected by the parser.
    pub signing_key: SnpSigningKey,
}

impl KeyInfo {
    pub(crate) fn from_u32(raw: u32) -> Result<Self, Reason> {
        if raw >> 5 != 0 {
            return Err(Reason::ReservedNonZero { what: "KEY_INFO bits 31:5", offset: 0x48 });
        }
        let signing_key = match (raw >> 2) & 0b111 {
            0 => SnpSigningKey::Vcek,
            1 => SnpSigningKey::Vlek,
            7 => {
                return Err(Reason::InvalidValue {
                    what: "KEY_INFO.SIGNING_KEY",
                    why: "report is not signed (NONE)",
                })
            }
            _ => {
                return Err(Reason::InvalidValue {
                    what: "KEY_INFO.SIGNING_KEY",
                    why: "reserved value",
                })
            }
        };
        Ok(Self { author_key_en: raw & 1 != 0, mask_chip_key: raw & 2 != 0, signing_key })
    }

    #[must_use]
    pub fn to_u32(self) -> u32 {
        let key = match self.signing_key {
            SnpSigningKey::Vcek => 0,
            SnpSigningKey::Vlek => 1,
        };
        u32::from(self.author_key_en) | (u32::from(self.mask_chip_key) << 1) | (key << 2)
    }
}

/// A parsed attestation report. Every field of the structure, named as in the ABI spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// 2, 3 or 5.
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: RawTcb,
    pub platform_info: u64,
    pub key_info: KeyInfo,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: RawTcb,
    /// Version 3 and later.
    pub cpuid: Option<SnpCpuid>,
    pub chip_id: [u8; 64],
    pub committed_tcb: RawTcb,
    pub current_version: SnpFirmwareVersion,
    pub committed_version: SnpFirmwareVersion,
    pub launch_tcb: RawTcb,
    /// Version 5 and later.
    pub launch_mit_vector: Option<u64>,
    /// Version 5 and later.
    pub current_mit_vector: Option<u64>,
    /// Signature r, 72 bytes little-endian (P-384 uses the low 48).
    pub signature_r: [u8; 72],
    /// Signature s, 72 bytes little-endian (P-384 uses the low 48).
    pub signature_s: [u8; 72],
}

/// Parses a report strictly. Failures are [`Step::Parse`].
pub fn parse_report(bytes: &[u8]) -> Result<AttestationReport, VerifyError> {
    parse(bytes).at(Step::Parse)
}

/// The product a CPUID family/model belongs to (version 3+ reports carry it).
#[must_use]
pub fn product_from_cpuid(family: u8, model: u8) -> Option<SnpProduct> {
    match (family, model) {
        (0x19, 0x00..=0x0F) => Some(SnpProduct::Milan),
        (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(SnpProduct::Genoa),
        (0x1A, 0x00..=0x11) => Some(SnpProduct::Turin),
        _ => None,
    }
}

/// A representative CPUID (family, model, stepping) for each product, as the simulator writes.
#[must_use]
pub fn cpuid_for(product: SnpProduct) -> SnpCpuid {
    match product {
        SnpProduct::Milan => SnpCpuid { family: 0x19, model: 0x01, stepping: 0x01 },
        SnpProduct::Genoa => SnpCpuid { family: 0x19, model: 0x11, stepping: 0x01 },
        SnpProduct::Turin => SnpCpuid { family: 0x1A, model: 0x02, stepping: 0x01 },
    }
}

fn parse(bytes: &[u8]) -> Result<AttestationReport, Reason> {
    if bytes.len() < REPORT_LEN {
        return Err(Reason::Truncated { what: WHAT, needed: REPORT_LEN, available: bytes.len() });
    }
    if bytes.len() > REPORT_LEN {
        return Err(Reason::TrailingData { what: WHAT, extra: bytes.len() - REPORT_LEN });
    }
    let mut r = Reader::new(WHAT, bytes);
    let version = r.u32_le()?;
    if !matches!(version, 2 | 3 | 5) {
        return Err(Reason::UnsupportedVersion { what: WHAT, version });
    }
    let guest_svn = r.u32_le()?;
    let policy = r.u64_le()?;
    let family_id = r.take_array()?;
    let image_id = r.take_array()?;
    let vmpl = r.u32_le()?;
    let signature_algo = r.u32_le()?;
    if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(Reason::UnsupportedAlgorithm { what: "SNP report SIGNATURE_ALGO" });
    }
    let current_tcb = raw_tcb(&mut r)?;
    let platform_info = r.u64_le()?;
    let key_info = KeyInfo::from_u32(r.u32_le()?)?;
    r.reserved_zero("reserved 0x4C", 4)?;
    let report_data = r.take_array()?;
    let measurement = r.take_array()?;
    let host_data = r.take_array()?;
    let id_key_digest = r.take_array()?;
    let author_key_digest = r.take_array()?;
    let report_id = r.take_array()?;
    let report_id_ma = r.take_array()?;
    let reported_tcb = raw_tcb(&mut r)?;
    let cpuid = if version >= 3 {
        let cpuid = SnpCpuid { family: r.u8()?, model: r.u8()?, stepping: r.u8()? };
        if product_from_cpuid(cpuid.family, cpuid.model).is_none() {
            return Err(Reason::InvalidValue {
                what: "CPUID family/model",
                why: "not a known SEV-SNP product (Milan, Genoa, Turin)",
            });
        }
        r.reserved_zero("reserved 0x18B", 0x15)?;
        Some(cpuid)
    } else {
        r.reserved_zero("reserved 0x188", 0x18)?;
        None
    };
    let chip_id = r.take_array()?;
    let committed_tcb = raw_tcb(&mut r)?;
    let current_version = firmware_version(&mut r, "reserved 0x1EB")?;
    let committed_version = firmware_version(&mut r, "reserved 0x1EF")?;
    let launch_tcb = raw_tcb(&mut r)?;
    let (launch_mit_vector, current_mit_vector) =
        if version >= 5 { (Some(r.u64_le()?), Some(r.u64_le()?)) } else { (None, None) };
    r.reserved_zero("reserved before SIGNATURE", SIGNED_LEN - r.offset())?;
    let signature_r = r.take_array()?;
    let signature_s = r.take_array()?;
    r.reserved_zero("reserved SIGNATURE tail", REPORT_LEN - r.offset())?;
    r.expect_end()?;
    let report = AttestationReport {
        version,
        guest_svn,
        policy,
        family_id,
        image_id,
        vmpl,
        signature_algo,
        current_tcb,
        platform_info,
        key_info,
        report_data,
        measurement,
        host_data,
        id_key_digest,
        author_key_digest,
        report_id,
        report_id_ma,
        reported_tcb,
        cpuid,
        chip_id,
        committed_tcb,
        current_version,
        committed_version,
        launch_tcb,
        launch_mit_vector,
        current_mit_vector,
        signature_r,
        signature_s,
    };
    // On version 3+ the product is known: the TCB layouts must decode now.
    if let Some(product) = report.product() {
        report.tcbs(product)?;
    }
    Ok(report)
}

/// Reads a `TCB_VERSION`, checking bytes 4 and 5, which are reserved in every layout.
fn raw_tcb(r: &mut Reader<'_>) -> Result<RawTcb, Reason> {
    let offset = r.offset();
    let raw = RawTcb(r.take_array()?);
    if raw.0.get(4..6).is_some_and(|b| b.iter().any(|x| *x != 0)) {
        return Err(Reason::ReservedNonZero { what: "TCB_VERSION bytes 4..6", offset: offset + 4 });
    }
    Ok(raw)
}

fn firmware_version(
    r: &mut Reader<'_>,
    reserved: &'static str,
) -> Result<SnpFirmwareVersion, Reason> {
    let build = r.u8()?;
    let minor = r.u8()?;
    let major = r.u8()?;
    r.reserved_zero(reserved, 1)?;
    Ok(SnpFirmwareVersion { major, minor, build })
}

/// The four TCB versions of a report decoded for one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedTcbs {
    pub current: SnpTcb,
    pub reported: SnpTcb,
    pub committed: SnpTcb,
    pub launch: SnpTcb,
}

impl AttestationReport {
    /// The product named by CPUID (version 3+); `None` for version 2, whose product comes
    /// from the signing certificate.
    #[must_use]
    pub fn product(&self) -> Option<SnpProduct> {
        self.cpuid.and_then(|c| product_from_cpuid(c.family, c.model))
    }

    /// Decodes all four TCB versions in `product`'s layout.
    pub fn tcbs(&self, product: SnpProduct) -> Result<DecodedTcbs, Reason> {
        Ok(DecodedTcbs {
            current: self.current_tcb.decode("CURRENT_TCB", product)?,
            reported: self.reported_tcb.decode("REPORTED_TCB", product)?,
            committed: self.committed_tcb.decode("COMMITTED_TCB", product)?,
            launch: self.launch_tcb.decode("LAUNCH_TCB", product)?,
        })
    }

    /// Encodes the report into its 0x4A0-byte layout (reserved bytes zero). Optional fields
    /// are written only where the version has them.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPORT_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.guest_svn.to_le_bytes());
        out.extend_from_slice(&self.policy.to_le_bytes());
        out.extend_from_slice(&self.family_id);
        out.extend_from_slice(&self.image_id);
        out.extend_from_slice(&self.vmpl.to_le_bytes());
        out.extend_from_slice(&self.signature_algo.to_le_bytes());
        out.extend_from_slice(&self.current_tcb.0);
        out.extend_from_slice(&self.platform_info.to_le_bytes());
        out.extend_from_slice(&self.key_info.to_u32().to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.report_data);
        out.extend_from_slice(&self.measurement);
        out.extend_from_slice(&self.host_data);
        out.extend_from_slice(&self.id_key_digest);
        out.extend_from_slice(&self.author_key_digest);
        out.extend_from_slice(&self.report_id);
        out.extend_from_slice(&self.report_id_ma);
        out.extend_from_slice(&self.reported_tcb.0);
        match self.cpuid {
            Some(c) if self.version >= 3 => out.extend_from_slice(&[c.family, c.model, c.stepping]),
            _ => out.extend_from_slice(&[0; 3]),
        }
        out.resize(CHIP_ID_OFFSET, 0);
        out.extend_from_slice(&self.chip_id);
        out.extend_from_slice(&self.committed_tcb.0);
        for v in [self.current_version, self.committed_version] {
            out.extend_from_slice(&[v.build, v.minor, v.major, 0]);
        }
        out.extend_from_slice(&self.launch_tcb.0);
        if self.version >= 5 {
            out.extend_from_slice(&self.launch_mit_vector.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&self.current_mit_vector.unwrap_or(0).to_le_bytes());
        }
        out.resize(SIGNED_LEN, 0);
        out.extend_from_slice(&self.signature_r);
        out.extend_from_slice(&self.signature_s);
        out.resize(REPORT_LEN, 0);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn milan_tcb_layout_puts_snp_and_microcode_last() {
        let raw = RawTcb([3, 0, 0, 0, 0, 0, 8, 115]);
        let tcb = raw.decode("t", SnpProduct::Milan).unwrap();
        assert_eq!(tcb, SnpTcb { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: None });
        assert_eq!(RawTcb::encode(&tcb, SnpProduct::Milan).unwrap(), raw);
    }

    #[test]
    fn turin_tcb_layout_starts_with_fmc() {
        let raw = RawTcb([1, 2, 3, 4, 0, 0, 0, 5]);
        let tcb = raw.decode("t", SnpProduct::Turin).unwrap();
        assert_eq!(tcb, SnpTcb { fmc: Some(1), bootloader: 2, tee: 3, snp: 4, microcode: 5 });
        assert_eq!(RawTcb::encode(&tcb, SnpProduct::Turin).unwrap(), raw);
    }

    #[test]
    fn tcb_reserved_bytes_depend_on_layout() {
        // Byte 3 is SNP on Turin but reserved on Milan/Genoa.
        let raw = RawTcb([0, 0, 0, 9, 0, 0, 0, 0]);
        assert!(raw.decode("t", SnpProduct::Genoa).is_err());
        assert_eq!(raw.decode("t", SnpProduct::Turin).unwrap().snp, 9);
    }

    #[test]
    fn cpuid_maps_to_products() {
        assert_eq!(product_from_cpuid(0x19, 0x01), Some(SnpProduct::Milan));
        assert_eq!(product_from_cpuid(0x19, 0x11), Some(SnpProduct::Genoa));
        assert_eq!(product_from_cpuid(0x19, 0xA0), Some(SnpProduct::Genoa));
        assert_eq!(product_from_cpuid(0x1A, 0x02), Some(SnpProduct::Turin));
        assert_eq!(product_from_cpuid(0x17, 0x31), None);
        assert_eq!(product_from_cpuid(0x1A, 0x50), None);
    }

    #[test]
    fn key_info_round_trips_and_rejects_reserved_bits() {
        let k = KeyInfo::from_u32(0b0_0101).unwrap();
        assert_eq!(k.signing_key, SnpSigningKey::Vlek);
        assert!(k.author_key_en);
        assert!(!k.mask_chip_key);
        assert_eq!(k.to_u32(), 0b0_0101);
        assert!(KeyInfo::from_u32(1 << 5).is_err());
        assert!(KeyInfo::from_u32(7 << 2).is_err());
        assert!(KeyInfo::from_u32(2 << 2).is_err());
    }

    #[test]
    fn rejects_unknown_version_without_fallback() {
        let mut bytes = vec![0u8; REPORT_LEN];
        bytes[0] = 4;
        assert_eq!(
            parse_report(&bytes).unwrap_err(),
            VerifyError::new(Step::Parse, Reason::UnsupportedVersion { what: WHAT, version: 4 })
        );
    }
}
