//! From a parsed, verified report to the normalized [`SnpClaims`]: policy and platform-info
//! bits decoded with their ABI names, TCB versions decoded in the product's layout.

use crate::claims::{SnpClaims, SnpPlatformInfo, SnpPolicy, SnpProduct, SnpSigningKey};
use crate::HexBytes;

use super::report::{AttestationReport, DecodedTcbs};

fn bit(raw: u64, n: u32) -> bool {
    raw >> n & 1 == 1
}

/// Decodes `GUEST_POLICY` (ABI spec "Guest Policy Structure").
#[must_use]
pub fn decode_policy(raw: u64) -> SnpPolicy {
    SnpPolicy {
        raw,
        abi_minor: (raw & 0xFF) as u8,
        abi_major: (raw >> 8 & 0xFF) as u8,
        smt: bit(raw, 16),
        migrate_ma: bit(raw, 18),
        debug: bit(raw, 19),
        single_socket: bit(raw, 20),
        cxl_allow: bit(raw, 21),
        mem_aes_256_xts: bit(raw, 22),
        rapl_dis: bit(raw, 23),
        ciphertext_hiding: bit(raw, 24),
        page_swap_disable: bit(raw, 25),
    }
}

/// Decodes `PLATFORM_INFO`.
#[must_use]
pub fn decode_platform_info(raw: u64) -> SnpPlatformInfo {
    SnpPlatformInfo {
        raw,
        smt_enabled: bit(raw, 0),
        tsme_enabled: bit(raw, 1),
        ecc_enabled: bit(raw, 2),
        rapl_disabled: bit(raw, 3),
        ciphertext_hiding_enabled: bit(raw, 4),
        alias_check_complete: bit(raw, 5),
        tio_enabled: bit(raw, 7),
    }
}

pub(crate) fn snp_claims(
    report: &AttestationReport,
    product: SnpProduct,
    signing_key: SnpSigningKey,
    tcbs: &DecodedTcbs,
) -> SnpClaims {
    SnpClaims {
        version: report.version,
        product,
        signing_key,
        guest_svn: report.guest_svn,
        policy: decode_policy(report.policy),
        family_id: HexBytes(report.family_id),
        image_id: HexBytes(report.image_id),
        vmpl: report.vmpl,
        signature_algo: report.signature_algo,
        current_tcb: tcbs.current,
        platform_info: decode_platform_info(report.platform_info),
        author_key_en: report.key_info.author_key_en,
        mask_chip_key: report.key_info.mask_chip_key,
        measurement: HexBytes(report.measurement),
        host_data: HexBytes(report.host_data),
        id_key_digest: HexBytes(report.id_key_digest),
        author_key_digest: HexBytes(report.author_key_digest),
        report_id: HexBytes(report.report_id),
        report_id_ma: HexBytes(report.report_id_ma),
        reported_tcb: tcbs.reported,
        cpuid: report.cpuid,
        chip_id: HexBytes(report.chip_id),
        committed_tcb: tcbs.committed,
        current_version: report.current_version,
        committed_version: report.committed_version,
        launch_tcb: tcbs.launch,
        launch_mit_vector: report.launch_mit_vector,
        current_mit_vector: report.current_mit_vector,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn debug_policy_bit_is_19() {
        let p = decode_policy(0xb0000);
        assert!(p.debug);
        assert!(p.smt);
        assert!(!p.migrate_ma);
        let p = decode_policy(0x30000);
        assert!(!p.debug);
        assert!(p.smt);
    }

    #[test]
    fn abi_version_is_low_two_bytes() {
        let p = decode_policy(0x3_1F02);
        assert_eq!((p.abi_major, p.abi_minor), (0x1F, 0x02));
    }

    #[test]
    fn platform_info_bits() {
        let i = decode_platform_info(0x25);
        assert!(i.smt_enabled && i.ecc_enabled && i.alias_check_complete);
        assert!(!i.tsme_enabled && !i.tio_enabled);
    }
}
