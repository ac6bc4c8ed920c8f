//! The simulator: a simulation PKI standing in for AMD's and Intel's, and evidence minted under
//! it in the real binary formats. Simulated evidence goes through exactly the same parsing,
//! chain, signature and TCB code as hardware evidence; only the pinned roots differ, and the
//! anchors built from a [`SimPki`] mark every claim set `simulated: true`. Hardware roots never
//! accept simulated evidence, and simulation anchors never accept hardware evidence.
//!
//! [`snp`] owns the AMD side (ARK, ASK, ASVK, VCEKs minted per chip and TCB, a VLEK), [`tdx`]
//! the Intel side (root CA, PCK CA, PCK leaf, TCB signing key, signed collateral), [`ccel`] a
//! TD's event log and the RTMRs that go with it, [`azure`] the HCL report of an Azure
//! confidential VM around a sim SNP report. This module
//! joins them into one PKI that is saved as a directory of PEM files by the caller (the crate
//! does no I/O itself).
//!
//! Evidence is signed with aws-lc-rs (the provider the verifier checks with), so a simulated
//! guest costs the broker and the sim what a real one would; keys are still stored as the
//! RustCrypto PKCS#8 PEM files they always were.

pub mod azure;
pub mod ccel;
pub mod snp;
pub mod tdx;

use aws_lc_rs::signature::{EcdsaKeyPair, EcdsaSigningAlgorithm};
use rand_core::CryptoRngCore;

use crate::snp::SnpTrustAnchors;
use crate::tdx::TdxTrustAnchors;
use crate::VerifyError;

/// A simulation failure on either side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimPkiError {
    #[error("SEV-SNP simulation: {0}")]
    Snp(#[from] snp::SimSnpError),
    #[error("TDX simulation: {0}")]
    Tdx(#[from] tdx::SimError),
    #[error("simulation anchors: {0}")]
    Anchors(#[from] VerifyError),
}

/// The whole simulation PKI: both vendors.
#[derive(Debug)]
pub struct SimPki {
    pub amd: snp::SimAmdPki,
    pub intel: tdx::SimIntelPki,
}

impl SimPki {
    /// Generates fresh simulation roots, intermediates and signing keys.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self, SimPkiError> {
        Ok(Self { amd: snp::SimAmdPki::generate(rng)?, intel: tdx::SimIntelPki::generate(rng)? })
    }

    /// Every file of the PKI as (relative name, contents): PEM certificates and PKCS#8 PEM keys.
    /// Names start with `amd-` or `intel-`; names containing `key` hold private keys.
    pub fn to_files(&self) -> Result<Vec<(String, Vec<u8>)>, SimPkiError> {
        let mut files = self.amd.to_files()?;
        files.extend(self.intel.to_files());
        Ok(files)
    }

    /// Loads a PKI saved by [`SimPki::to_files`]; `get` returns a file's contents by name.
    pub fn from_files(get: impl Fn(&str) -> Option<Vec<u8>>) -> Result<Self, SimPkiError> {
        Ok(Self {
            amd: snp::SimAmdPki::from_files(&get)?,
            intel: tdx::SimIntelPki::from_files(&get)?,
        })
    }

    /// The trust anchors that accept this PKI's evidence (and only it), marked simulated.
    pub fn anchors(&self) -> Result<(SnpTrustAnchors, TdxTrustAnchors), SimPkiError> {
        Ok((self.amd.anchors()?, self.intel.anchors()))
    }
}

/// The aws-lc-rs signing key pair for a PKCS#8 (DER) EC private key, signing fixed-width
/// `r || s` with `algorithm`. `None` when the key does not decode or is of another curve.
pub(crate) fn ecdsa_key_pair(
    algorithm: &'static EcdsaSigningAlgorithm,
    pkcs8_der: &[u8],
) -> Option<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(algorithm, pkcs8_der).ok()
}

/// Signs `message` with `key`: a fixed-width `r || s` signature.
pub(crate) fn ecdsa_sign(key: &EcdsaKeyPair, message: &[u8]) -> Option<Vec<u8>> {
    key.sign(&aws_lc_rs::rand::SystemRandom::new(), message).ok().map(|s| s.as_ref().to_vec())
}
