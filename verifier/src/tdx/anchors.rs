//! Trust anchors for TDX: which Intel SGX root CA this verifier accepts, pinned by the SHA-256
//! of its DER, and whether that root is the simulation PKI's.

use crate::error::Reason;
use crate::x509::Certificate;

/// SHA-256 of the DER of Intel's production "Intel SGX Root CA".
const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// The root a [`super::TdxVerifier`] trusts. The root certificate itself travels in the quote's
/// PCK chain and the collateral's issuer chains; it is accepted only when it is self-signed
/// and its fingerprint is this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxTrustAnchors {
    root_sha256: [u8; 32],
    simulated: bool,
}

impl TdxTrustAnchors {
    /// Intel's production SGX root CA.
    #[must_use]
    pub fn production() -> Self {
        Self { root_sha256: INTEL_SGX_ROOT_CA_SHA256, simulated: false }
    }

    /// A simulation root (see [`crate::sim::tdx::SimIntelPki::anchors`]); claims say
    /// `simulated: true`.
    pub(crate) fn simulated(root_sha256: [u8; 32]) -> Self {
        Self { root_sha256, simulated: true }
    }

    #[must_use]
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// The pinned root's SHA-256 (of its DER).
    #[must_use]
    pub fn root_sha256(&self) -> &[u8; 32] {
        &self.root_sha256
    }

    /// Accepts `root` only if it is the pinned root and signed by its own key.
    pub(crate) fn check_root(&self, what: &'static str, root: &Certificate) -> Result<(), Reason> {
        if root.sha256() != &self.root_sha256 {
            return Err(Reason::UntrustedRoot { what, sha256: hex::encode(root.sha256()) });
        }
        root.verify_self_signed(what)
    }
}
