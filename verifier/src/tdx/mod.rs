//! Intel TDX quote verification: this module owns the question "is this TDX quote genuine, on
//! what TCB, and what does the TD report say?". Submodules: [`quote`] (the binary format),
//! `collateral` (Intel's signed TCB info, QE identity and CRLs), `pck` (the PCK chain and its
//! SGX extension), `tcb` (TCB level rules), `dcap` (the steps and caches TDX and SGX quotes
//! share), `pcs` (what a quote needs fetched, assembling fetched items), `fields` (decoders of
//! collateral JSON fields), `coco` (guest-components' evidence JSON), [`eventlog`] (the CCEL
//! event log and its replay into the RTMRs) and `verify` (the numbered TDX steps).
//!
//! Written here rather than by calling the `dcap-qvl` crate for two reasons: the broker must
//! verify collateral once and reuse it (dcap-qvl re-verifies every certificate, CRL and
//! collateral signature on every quote, while our warm path costs two ECDSA verifications), and
//! every failure must name our [`Step`](crate::Step). dcap-qvl and Intel's specifications were
//! read to learn layouts and rules; no code was taken.
//!
//! # Quote layout and what is signed
//! Version 4: header (48 bytes) then a TDX 1.0 TD report (584 bytes). Version 5: header, body
//! type (u16: 2 = TDX 1.0, 3 = TDX 1.5), body size (u32, must equal 584 or 648) and the body.
//! Attestation key type must be 2 (ECDSA-256-with-P-256), TEE type 0x81. Then the signature
//! data length (u32) and the signature data: quote signature (64 bytes, r||s big-endian),
//! attestation key (64 bytes), certification data type 6 (QE report certification data: QE
//! report 384 bytes, its signature 64 bytes, QE auth data as u16 size + bytes, and nested
//! certification data type 5: the PEM PCK chain leaf, PCK CA, root). Every length must match
//! exactly; anything else is [`Step::Parse`](crate::Step::Parse). The attestation key signs the
//! quote prefix before the signature data length, exactly as it appears: the header and the
//! body, and for version 5 the body type and size fields between them.
//!
//! # Trailing bytes
//! The signature data length must cover the signature data exactly. After it, only zero bytes
//! may follow. Reason: the real v4 vector (dcap-qvl's sample, from real hardware) carries 70 zero
//! bytes after the signature data: quote-generation buffers are fixed-size and zero-filled, and
//! verifiers in the field (Intel QVL, dcap-qvl) ignore the tail. Zero padding carries no
//! information, while any non-zero trailing byte would be unsigned data riding along with a
//! signed quote, so it is rejected ([`Reason::TrailingData`](crate::Reason::TrailingData)).
//! `evidence_sha256` is over the bytes as given, padding included.

mod anchors;
mod coco;
mod collateral;
pub(crate) mod dcap;
pub mod eventlog;
mod fields;
mod pck;
mod pcs;
pub mod quote;
pub(crate) mod tcb;
mod verify;

pub use anchors::TdxTrustAnchors;
pub use coco::{tdx_from_coco_evidence, tdx_from_coco_value, CocoTdxEvidence};
pub use collateral::TdxCollateral;
pub use pck::SgxExtensions;
pub use pcs::{CollateralNeed, PckCa, TdxCollateralParts};
pub use quote::{parse_quote, QeCertification, Quote, QuoteSignature, SgxReportBody, TdReport};
pub use verify::TdxVerifier;

/// OID of the Intel SGX extension in PCK certificates (1.2.840.113741.1.13.1).
#[must_use]
pub const fn pck_sgx_extension_oid() -> const_oid::ObjectIdentifier {
    pck::SGX_EXTENSION
}
