//! The vTPM quote: TPMS_ATTEST (TPM 2.0 Library Part 2, 10.12.12) as `TPM2_Quote` returns it,
//! its RSASSA-PKCS1-v1_5 SHA-256 signature by the attestation key, and the PCR values it
//! covers. This module owns parsing and encoding that structure (big-endian, as the TPM
//! marshals it) and the checks on it; it never decides where the key comes from.
//!
//! Layout: `magic` u32 (TPM_GENERATED_VALUE 0xFF544347), `type` u16 (TPM_ST_ATTEST_QUOTE
//! 0x8018), `qualifiedSigner` TPM2B_NAME, `extraData` TPM2B_DATA (the caller's nonce, at most 64
//! bytes), `clockInfo` (clock u64, resetCount u32, restartCount u32, safe u8),
//! `firmwareVersion` u64, then TPMS_QUOTE_INFO: `pcrSelect` TPML_PCR_SELECTION (count u32, then
//! per bank hash u16, sizeofSelect u8, a bitmap where byte i bit j is PCR 8i+j) and
//! `pcrDigest` TPM2B_DIGEST: the hash of the selected PCR values concatenated in selection
//! order. Nothing may follow.

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use sha2::{Digest, Sha256};

use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::reader::Reader;

use super::hcl::AkPublicKey;

/// TPM_GENERATED_VALUE: the TPM made this structure.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ALG_SHA256.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// Largest TPM2B_NAME (a TPMT_HA with a SHA-512 digest).
const MAX_NAME: usize = 66;
/// Largest TPM2B_DATA / TPM2B_DIGEST buffer the verifier accepts (a SHA-512 digest).
const MAX_DATA: usize = 64;
/// At most this many banks in a TPML_PCR_SELECTION (TPM's HASH_COUNT is far below).
const MAX_BANKS: u32 = 16;
/// PCR_SELECT_MIN and PCR_SELECT_MAX for a 24/32-PCR TPM.
const SELECT_SIZES: std::ops::RangeInclusive<u8> = 3..=4;

/// One bank of a PCR selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// TPM_ALG_ID of the bank.
    pub hash: u16,
    /// The selected PCR indices, ascending.
    pub pcrs: Vec<u8>,
    /// sizeofSelect as marshalled (3 for 24 PCRs).
    pub size_of_select: u8,
}

/// A parsed TPMS_ATTEST of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmsAttest {
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    pub pcr_select: Vec<PcrSelection>,
    pub pcr_digest: Vec<u8>,
}

fn invalid(what: &'static str, why: &'static str) -> Reason {
    Reason::InvalidValue { what, why }
}

fn tpm2b<'a>(r: &mut Reader<'a>, what: &'static str, max: usize) -> Result<&'a [u8], Reason> {
    let n = usize::from(r.u16_be()?);
    if n > max {
        return Err(invalid(what, "longer than the TPM allows"));
    }
    r.take(n)
}

impl TpmsAttest {
    /// Parses a quote's TPMS_ATTEST strictly. Every failure is [`Step::TpmQuote`].
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        Self::parse_reason(bytes).at(Step::TpmQuote)
    }

    fn parse_reason(bytes: &[u8]) -> Result<Self, Reason> {
        let mut r = Reader::new("TPMS_ATTEST", bytes);
        if r.u32_be()? != TPM_GENERATED_VALUE {
            return Err(invalid("TPMS_ATTEST magic", "not TPM_GENERATED_VALUE"));
        }
        if r.u16_be()? != TPM_ST_ATTEST_QUOTE {
            return Err(invalid("TPMS_ATTEST type", "not TPM_ST_ATTEST_QUOTE"));
        }
        let qualified_signer = tpm2b(&mut r, "qualifiedSigner", MAX_NAME)?.to_vec();
        let extra_data = tpm2b(&mut r, "extraData", MAX_DATA)?.to_vec();
        let clock = r.u64_be()?;
        let reset_count = r.u32_be()?;
        let restart_count = r.u32_be()?;
        let safe = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(invalid("clockInfo.safe", "not a TPMI_YES_NO")),
        };
        let firmware_version = r.u64_be()?;
        let count = r.u32_be()?;
        if count > MAX_BANKS {
            return Err(invalid("TPML_PCR_SELECTION count", "more banks than a TPM has"));
        }
        let mut pcr_select = Vec::new();
        for _ in 0..count {
            let hash = r.u16_be()?;
            let size_of_select = r.u8()?;
            if !SELECT_SIZES.contains(&size_of_select) {
                return Err(invalid("sizeofSelect", "not 3 or 4"));
            }
            let bitmap = r.take(usize::from(size_of_select))?;
            let pcrs = bitmap
                .iter()
                .enumerate()
                .flat_map(|(i, byte)| {
                    (0..8u8)
                        .filter(move |bit| byte & (1 << bit) != 0)
                        .map(move |bit| i as u8 * 8 + bit)
                })
                .collect();
            pcr_select.push(PcrSelection { hash, pcrs, size_of_select });
        }
        let pcr_digest = tpm2b(&mut r, "pcrDigest", MAX_DATA)?.to_vec();
        r.expect_end()?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// A quote as a vTPM makes one over SHA-256 PCRs 0..`pcrs.len()` (at most 24), with
    /// `extra_data` as the nonce; the other fields are fixed plausible values.
    pub fn quote_sha256(extra_data: &[u8], pcrs: &[[u8; 32]]) -> Result<Self, Reason> {
        if extra_data.len() > MAX_DATA || pcrs.len() > 24 {
            return Err(invalid("simulated quote", "nonce over 64 bytes or over 24 PCRs"));
        }
        let mut digest = Sha256::new();
        for p in pcrs {
            digest.update(p);
        }
        let mut qualified_signer = TPM_ALG_SHA256.to_be_bytes().to_vec();
        qualified_signer.extend_from_slice(&[0x5A; 32]);
        Ok(Self {
            qualified_signer,
            extra_data: extra_data.to_vec(),
            clock: 0x1234_5678,
            reset_count: 2,
            restart_count: 0,
            safe: true,
            firmware_version: 0x2020_0312_0012_0003,
            pcr_select: vec![PcrSelection {
                hash: TPM_ALG_SHA256,
                pcrs: (0..pcrs.len() as u8).collect(),
                size_of_select: 3,
            }],
            pcr_digest: digest.finalize().to_vec(),
        })
    }

    /// Marshals the structure as the TPM does (the bytes the AK signs).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        out.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        let b2 = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            out.extend_from_slice(b);
        };
        b2(&mut out, &self.qualified_signer);
        b2(&mut out, &self.extra_data);
        out.extend_from_slice(&self.clock.to_be_bytes());
        out.extend_from_slice(&self.reset_count.to_be_bytes());
        out.extend_from_slice(&self.restart_count.to_be_bytes());
        out.push(u8::from(self.safe));
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        out.extend_from_slice(&(self.pcr_select.len() as u32).to_be_bytes());
        for s in &self.pcr_select {
            out.extend_from_slice(&s.hash.to_be_bytes());
            out.push(s.size_of_select);
            let mut bitmap = vec![0u8; usize::from(s.size_of_select)];
            for p in &s.pcrs {
                if let Some(b) = bitmap.get_mut(usize::from(p / 8)) {
                    *b |= 1 << (p % 8);
                }
            }
            out.extend_from_slice(&bitmap);
        }
        b2(&mut out, &self.pcr_digest);
        out
    }
}

/// Verifies `signature` (RSASSA-PKCS1-v1_5 with SHA-256, as a vTPM AK with the null scheme
/// signs) over `message` with `ak` ([`Step::TpmQuote`]).
pub fn verify_quote_signature(
    ak: &AkPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let key = RsaPublicKeyComponents { n: ak.modulus.as_slice(), e: ak.exponent.as_slice() };
    key.verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .map_err(|_| Reason::BadSignature { what: "TPM quote (attestation key)" })
        .at(Step::TpmQuote)
}

/// Checks that `values` are the SHA-256 PCRs the quote selects, in selection order, and that
/// they hash to its `pcrDigest` ([`Step::Pcrs`]). Returns (index, value) pairs.
pub fn check_pcrs(
    quote: &TpmsAttest,
    values: &[Vec<u8>],
) -> Result<Vec<(u8, [u8; 32])>, VerifyError> {
    pcrs(quote, values).at(Step::Pcrs)
}

fn pcrs(quote: &TpmsAttest, values: &[Vec<u8>]) -> Result<Vec<(u8, [u8; 32])>, Reason> {
    let [selection] = quote.pcr_select.as_slice() else {
        return Err(invalid("PCR selection", "not exactly one bank"));
    };
    if selection.hash != TPM_ALG_SHA256 {
        return Err(Reason::UnsupportedAlgorithm { what: "PCR bank (only SHA-256)" });
    }
    if values.len() != selection.pcrs.len() {
        return Err(Reason::Mismatch {
            what: "number of PCR values",
            expected: selection.pcrs.len().to_string(),
            actual: values.len().to_string(),
        });
    }
    let mut digest = Sha256::new();
    let mut out = Vec::with_capacity(values.len());
    for (index, value) in selection.pcrs.iter().zip(values) {
        let v: [u8; 32] =
            value.as_slice().try_into().map_err(|_| invalid("PCR value", "not 32 bytes"))?;
        digest.update(v);
        out.push((*index, v));
    }
    let actual: [u8; 32] = digest.finalize().into();
    if actual[..] != quote.pcr_digest[..] {
        return Err(Reason::Mismatch {
            what: "PCR digest",
            expected: hex::encode(&quote.pcr_digest),
            actual: hex::encode(actual),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TpmsAttest {
        TpmsAttest::quote_sha256(b"challenge", &[[1; 32], [2; 32], [3; 32]]).unwrap()
    }

    #[test]
    fn azure_tpms_attest_round_trips() {
        let q = sample();
        assert_eq!(TpmsAttest::parse(&q.to_bytes()).unwrap(), q);
        assert_eq!(q.pcr_select[0].pcrs, vec![0, 1, 2]);
    }

    #[test]
    fn azure_tpms_attest_every_truncation_and_extension_fails() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            assert_eq!(TpmsAttest::parse(&bytes[..n]).unwrap_err().step, Step::TpmQuote);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            TpmsAttest::parse(&long).unwrap_err().reason,
            Reason::TrailingData { extra: 1, .. }
        ));
    }

    #[test]
    fn azure_tpms_attest_refuses_absurd_sizes_and_wrong_types() {
        let bytes = sample().to_bytes();
        let with = |off: usize, v: &[u8]| {
            let mut b = bytes.clone();
            b[off..off + v.len()].copy_from_slice(v);
            TpmsAttest::parse(&b).unwrap_err().reason
        };
        assert!(matches!(with(0, &[0, 0, 0, 0]), Reason::InvalidValue { .. }));
        // TPM_ST_ATTEST_CERTIFY is not a quote.
        assert!(matches!(with(4, &[0x80, 0x17]), Reason::InvalidValue { .. }));
        assert!(matches!(with(6, &[0xFF, 0xFF]), Reason::InvalidValue { .. }));
        let extra = 6 + 2 + 34;
        assert!(matches!(with(extra, &[0xFF, 0xFF]), Reason::InvalidValue { .. }));
        let count = extra + 2 + 9 + 17 + 8;
        assert!(matches!(with(count, &[0xFF, 0xFF, 0xFF, 0xFF]), Reason::InvalidValue { .. }));
        assert!(matches!(with(count + 6, &[200]), Reason::InvalidValue { .. }));
    }

    #[test]
    fn azure_pcrs_must_hash_to_the_digest_in_selection_order() {
        let q = sample();
        let values: Vec<Vec<u8>> = vec![vec![1; 32], vec![2; 32], vec![3; 32]];
        assert_eq!(check_pcrs(&q, &values).unwrap()[2], (2, [3; 32]));
        let mut swapped = values.clone();
        swapped.swap(0, 1);
        let e = check_pcrs(&q, &swapped).unwrap_err();
        assert_eq!(e.step, Step::Pcrs);
        assert!(matches!(e.reason, Reason::Mismatch { what: "PCR digest", .. }));
        let e = check_pcrs(&q, &values[..2]).unwrap_err();
        assert!(matches!(e.reason, Reason::Mismatch { what: "number of PCR values", .. }));
        let mut short = values.clone();
        short[1].pop();
        assert!(matches!(check_pcrs(&q, &short).unwrap_err().reason, Reason::InvalidValue { .. }));
        let mut sha1 = q.clone();
        sha1.pcr_select[0].hash = 0x0004;
        let e = check_pcrs(&sha1, &values).unwrap_err();
        assert!(matches!(e.reason, Reason::UnsupportedAlgorithm { .. }));
    }

    #[test]
    fn azure_quote_signature_needs_a_sane_rsa_key() {
        let tiny = AkPublicKey { modulus: vec![0xC3; 64], exponent: vec![1, 0, 1] };
        let e = verify_quote_signature(&tiny, b"m", &[0; 64]).unwrap_err();
        assert_eq!(e.step, Step::TpmQuote);
    }
}
